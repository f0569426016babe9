"""PII scrubbing: recall/precision on the labelled synthetic fixture, each kind, ages kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthai.config.curation import CurationConfig
from healthai.data.pii import find_pii, measure, scrub_pii

CFG = CurationConfig()
CASES = [json.loads(line) for line in (Path(__file__).parents[1] / "fixtures" / "pii_cases.jsonl").open()]


def test_fixture_is_large_enough_and_labelled():
    assert len(CASES) >= 200
    assert sum(len(c["pii"]) for c in CASES) >= 200
    assert {p["type"] for c in CASES for p in c["pii"]} == {"NAME", "EMAIL", "PHONE", "URL", "ID"}


def test_recall_and_precision_on_the_fixture():
    result = measure(CASES, CFG)
    assert result["recall"] >= 0.95, result["misses"][:5]
    assert result["precision"] >= 0.95, result["false_positives"][:5]


@pytest.mark.parametrize("text, kind, value", [
    ("Hi Priya, rest for two days.", "NAME", "Priya"),
    ("My name is rahul kumar and I have a cough.", "NAME", "rahul"),
    ("Seen by Dr. A. Sharma yesterday.", "NAME", "A. Sharma"),
    ("Write to me at anna.silva@example.org today.", "EMAIL", "anna.silva@example.org"),
    ("Call +91 98765 43210 now.", "PHONE", "+91 98765 43210"),
    ("Call (555) 234-5678 now.", "PHONE", "(555) 234-5678"),
    ("See https://www.example.com/page?id=3 for details.", "URL", "https://www.example.com/page?id=3"),
    ("MRN: HX123456 attached.", "ID", "HX123456"),
])
def test_each_kind_is_found(text, kind, value):
    spans = find_pii(text, CFG)
    assert [(s.kind, s.text) for s in spans] == [(kind, value)]


@pytest.mark.parametrize("text", [
    "I am a 34 year old woman.", "He is 5 yrs old and weighs 18 kg.", "BP 140/90, sugar 180 mg/dl.",
    "Platelets 150000 cells.", "Scan on 12/05/2021 showed a cyst.", "Vitamin D 60000 IU weekly.",
    "Hello doctor, I have a headache.", "This is called Bell's palsy.", "I eat 1500-2000 calories a day.",
])
def test_ages_doses_dates_and_terms_are_kept(text):
    assert scrub_pii(text, CFG) == (text, [])


def test_scrub_replaces_with_placeholders():
    text, spans = scrub_pii("Dear John, mail john@x.com or call 9876543210.", CFG)
    assert text == "Dear [NAME], mail [EMAIL] or call [PHONE]."
    assert [s.kind for s in spans] == ["NAME", "EMAIL", "PHONE"]
