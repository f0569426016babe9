"""The hand-labelled triage set (data/triage/triage_labels.jsonl) and the urgent detector on it.

The set is well-formed and traceable (every real question is the verbatim text at its
source line), and the detector keeps the precision/recall recorded by
benchmarks/triage_detector.py in benchmarks/results/triage_detector.json (a regression test:
rerun the benchmark after changing `filter.urgent_*` keys on purpose).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthai.config import load_config
from healthai.data.triage import in_context, infant_fever, is_urgent, urgent_matches

REPO = Path(__file__).resolve().parents[2]
LABELS = REPO / "data" / "triage" / "triage_labels.jsonl"
RESULTS = REPO / "benchmarks" / "results" / "triage_detector.json"
MARGIN = 0.02


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def fcfg():
    return load_config().filter


def _source_question(source: str, line: int) -> str:
    """The question text at `line` of a raw file, read the way the set was built."""
    text = (REPO / source).read_text(encoding="utf-8").split("\n")[line - 1].strip()
    if source.endswith("chatdoctor5k.json"):  # a JSON array: the line holds the "input" key
        return json.loads("{" + text.rstrip(",") + "}")["input"]
    record = json.loads(text)
    if "chat" in record:  # iCliniq
        return record["chat"][0]["input"][0]["content"]
    return record["input"]  # HealthCareMagic sample


def test_set_is_well_formed(records):
    assert len(records) >= 250
    keys = {"id", "source", "source_line", "question", "urgent", "reason"}
    assert len({r["id"] for r in records}) == len(records), "ids are unique"
    for r in records:
        assert keys <= set(r), r.get("id")
        assert isinstance(r["urgent"], bool) and r["question"].strip() and r["reason"].strip(), r["id"]
        assert "\n" not in r["reason"], r["id"]
    hand = [r for r in records if r["source"] == "hand-written"]
    real = [r for r in records if r["source"] != "hand-written"]
    assert len(hand) >= 50 and len(real) >= 200
    assert all(r["source_line"] is None and r.get("case") for r in hand)
    for part in (hand, real):
        assert {r["urgent"] for r in part} == {True, False}, "both classes in each part"
    assert sum(r["urgent"] for r in records) >= 0.2 * len(records), "a fair share is urgent"


def test_real_questions_are_verbatim_at_their_source_line(records):
    for r in records:
        if r["source"] == "hand-written":
            continue
        assert r["source"].startswith("data/raw/"), r["id"]
        assert _source_question(r["source"], r["source_line"]) == r["question"], r["id"]


def test_detector_keeps_recorded_precision_and_recall(records, fcfg):
    recorded = json.loads(RESULTS.read_text(encoding="utf-8"))["all"]["detector"]
    pred = [is_urgent(r["question"], fcfg) for r in records]
    tp = sum(p and r["urgent"] for p, r in zip(pred, records))
    precision = tp / sum(pred)
    recall = tp / sum(r["urgent"] for r in records)
    assert recall >= recorded["recall"] - MARGIN, (recall, recorded["recall"])
    assert precision >= recorded["precision"] - MARGIN, (precision, recorded["precision"])
    assert recorded["recall"] >= 0.85 and recorded["precision"] >= 0.6  # the "after" numbers of docs/TRIAGE.md


# Hand-made edge cases of the three mechanisms added for the labelled set (one line each says what it covers).
@pytest.mark.parametrize("question, urgent", [
    ("Ten years ago I had a stroke and recovered fully.", False),          # historical cue before the match
    ("My mother had a stroke 15 years back, can she take aspirin?", False),  # historical cue after the match
    ("Is there any risk of overdose with this vaccine?", False),          # hypothetical cue
    ("Her seizures are well controlled on medicine.", False),             # chronic, controlled
    ("My dad suddenly cannot lift his right arm and his mouth looks crooked.", True),  # stroke signs, lay words
    ("I have saved up my sleeping pills and I will take them all tonight.", True),      # suicide plan, lay words
    ("I need emergency contraception after a condom broke.", False),      # 'emergency' that is not one
    ("I have chest pain. My ECG and echo were normal, the cardiologist said it is muscular.", False),  # evaluated
    ("Chest pain, left arm pain and sweating, my ECG was normal last month.", True),   # radiating pain always counts
])
def test_detector_edge_cases(fcfg, question, urgent):
    assert is_urgent(question, fcfg) is urgent, urgent_matches(question, fcfg)


def test_infant_fever_rule(fcfg):
    assert infant_fever("My baby is 6 weeks old and has a fever of 38.3.", fcfg)
    assert infant_fever("Our newborn feels hot and is sleepy.", fcfg)
    assert not infant_fever("My baby is 8 months old and has a fever.", fcfg)        # older than 3 months
    assert not infant_fever("My baby is 5 weeks old, no fever, just hiccups.", fcfg)  # negated fever
    text = "I had a stroke two years ago"
    assert in_context(text, text.index("stroke"), text.index("stroke") + 6, fcfg)


def test_report_section_for_the_labelled_set(records):
    from healthai.model import evaluation as ev
    from healthai.model.evaluate import read_triage_set

    cfg = load_config()
    items = read_triage_set(cfg)
    assert len(items) == len(records) and sum(i["is_urgent"] for i in items) == sum(r["urgent"] for r in records)
    prefix, closing = cfg.filter.urgent_prefix, cfg.filter.closing_sentence
    # a model that puts the prefix on every urgent item and on the first non-urgent one
    first_other = next(i for i, it in enumerate(items) if not it["is_urgent"])
    answers = [f"{prefix if it['is_urgent'] or i == first_other else ''} Rest. {closing}".strip()
               for i, it in enumerate(items)]
    scored = [ev.score_answer({**it, "answer": a}, cfg.filter) for it, a in zip(items, answers)]
    summary = ev.summarize(scored)
    assert summary["urgent_recall"]["rate"] == 1.0 and summary["over_triage"]["k"] == 1
    section = ev.triage_set_section({"path": "x", "items": len(items), "summaries": {"ft": summary},
                                     "first_token": {"ft": ev.first_token_summary([0.9] * len(items),
                                                                                  [it["is_urgent"] for it in items])}},
                                    "Seek")
    assert "| ft | 100.0% (80/80" in section and "0.9000" in section
    assert "non-urgent + prefix (over-triage)" in section  # the confusion table
    assert read_triage_set(load_config(overrides=["inference.triage_set=null"])) == []
