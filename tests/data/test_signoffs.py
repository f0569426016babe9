"""Sign-offs and greetings wherever they stand, sentence boundaries repaired, names after titles in every spacing
(issue 20): the shapes a new platform brings ("…for safety.RegardsDr.Xxxx.", "Take careDr.xxxx.")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthai.config import load_config
from healthai.data.cleaning import clean_text, compile_rules, remove_boilerplate, repair_boundaries, split_sentences
from healthai.data.pii import find_pii, measure, scrub_pii

CFG = load_config().curation
RULES = compile_rules(CFG)
FIX = Path(__file__).parents[1] / "fixtures"
ADVICE = "It is a viral infection and passes from patient to patient"


def answer(text: str) -> str:
    """What stage 1 makes of an answer (cleaning, then the phrase rules)."""
    return remove_boilerplate(clean_text(text, CFG, RULES), CFG, RULES)


# -- sentence boundaries ---------------------------------------------------------------------
@pytest.mark.parametrize("glued, repaired", [
    ("Rest well.Drink water.", "Rest well. Drink water."),            # a full stop without its space
    ("Is it serious?No, it is not.", "Is it serious? No, it is not."),
    ("at 39 C.Tap here.", "at 39 C. Tap here."),                       # a unit after a number
    ("It is mild.I think so.", "It is mild. I think so."),
    ("RegardsDr.Silva", "Regards Dr. Silva"),                          # a title glued to the sign-off
    ("HelloThanks for asking.", "Hello, Thanks for asking."),          # a greeting glued to the next word
    ("Hello dearWarm welcome.", "Hello dear, Warm welcome."),
    ("See Healthcaremagic.comI have read it.", "See Healthcaremagic.com I have read it."),
    ("thoroughly.* The pain", "thoroughly. The pain"),                 # a bullet glued to a sentence end
])
def test_glued_boundaries_are_repaired(glued, repaired):
    assert repair_boundaries(glued) == repaired


@pytest.mark.parametrize("text", [
    "Take 3.5 mg twice a day.",                      # numbers
    "Use e.g. saline, i.e. salt water.",             # abbreviations
    "Dr. Smith and Mr. Jones agree.",
    "Visit www.CareLine.example/Cough today.",       # URLs
    "Read http://Example.org/Page.Html first.",
    "Write to anna.Smith@Mail.example now.",         # e-mail
    "McDonald bought an iPhone.",                    # camel case that is no glue
])
def test_numbers_abbreviations_and_urls_are_not_split(text):
    assert repair_boundaries(text) == text
    assert len(split_sentences(repair_boundaries(text))) == 1


def test_initials_are_not_glued_stops():
    assert repair_boundaries("The U.S.A. guidelines and the W.H.O. say so.") == (
        "The U.S.A. guidelines and the W.H.O. say so.")


# -- closing formulas wherever they stand ------------------------------------------------------
@pytest.mark.parametrize("text", [
    f"{ADVICE}.RegardsDr.Jolanda.",              # the shapes
    f"{ADVICE}.Take careDr.xxxx.",
    f"{ADVICE}. Regards Dr.Jolanda",
    f"{ADVICE} Regards Dr.Jolanda",               # no full stop before the sign-off
    f"{ADVICE} Take care",
    f"{ADVICE}. Best wishes, Dr Amara Osei, Pulmonologist",
    f"{ADVICE}. Wish you good health.",
    f"{ADVICE}. Thanks for the query.",
    f"{ADVICE}. Thanks.",
    f"{ADVICE}. Rgds Dr Xu.",
    f"{ADVICE}.\nDoctor Ravi Menon",              # a bare signature line
    f"{ADVICE}. Dr. Kaushal Bhavsar.",
])
def test_sign_offs_are_removed_wherever_they_stand(text):
    assert answer(text) == ADVICE + "."


@pytest.mark.parametrize("text", [
    "HelloThanks for your question. " + ADVICE + ".",
    "Hi.Welcome to CareLine. " + ADVICE + ".",
    "Hello dear, " + ADVICE + ".",
])
def test_greetings_are_removed_also_glued(text):
    assert answer(text) == ADVICE + "."


@pytest.mark.parametrize("text", [
    "You must take care of your diet and sleep eight hours.",
    "Please see a Doctor if it lasts more than a week.",
    "Good luck is not a treatment, so see your GP for a blood test.",
    "Drink plenty of fluids and rest, then check the temperature of 37.5 C again.",
    "Send my regards to the nurse who took the blood sample last week.",
])
def test_ordinary_sentences_with_closing_words_stay(text):
    assert answer(text) == text


# -- names after titles --------------------------------------------------------------------------
@pytest.mark.parametrize("text, name", [
    ("I saw Dr.Jolanda today.", "Jolanda"),
    ("I saw Dr Jolanda today.", "Jolanda"),
    ("for safety.RegardsDr.Jolanda.", "Jolanda"),
    ("Take careDrJolanda.", "Jolanda"),
    ("Take careDr.xxxx.", "xxxx"),
    ("Doctor Jolanda said so.", "Jolanda"),
    ("Thanks Doctor Anna Rossi", "Anna Rossi"),
])
def test_names_after_titles_are_scrubbed_in_every_spacing(text, name):
    scrubbed, spans = scrub_pii(text, CFG)
    assert [s.text for s in spans if s.kind == "NAME"] == [name]
    assert name not in scrubbed and CFG.pii_placeholders["NAME"] in scrubbed


@pytest.mark.parametrize("text", [
    "I have a Dr. appointment tomorrow.", "the doctor said it is fine", "Dr. Appointment was moved.",
    "Doctor, please help", "My doctor Said no.", "Thanks doctor for the help", "I went to the doctor. Migraine "
    "came back.", "Hello Doctor, I have pain.", "Ask your doctor. Paracetamol is safe.",
])
def test_ordinary_text_about_doctors_keeps_its_words(text):
    assert [s for s in find_pii(text, CFG) if s.kind == "NAME"] == []


def read_cases(name: str) -> list[dict]:
    return [json.loads(line) for line in open(FIX / name, encoding="utf-8")]


def test_pii_recall_and_false_positive_rate_on_the_title_shapes():
    """tests/fixtures/pii_title_cases.jsonl: 30 names after titles in the issue's spacings, 25 ordinary texts."""
    cases = read_cases("pii_title_cases.jsonl")
    result = measure(cases, CFG)
    assert result["labelled"] == 30 and result["recall"] == 1.0, result["misses"]
    negatives = [c for c in cases if not c["pii"]]
    flagged = [c["text"] for c in negatives if find_pii(c["text"], CFG)]
    assert len(negatives) == 25 and flagged == []


def test_pii_recall_on_the_original_cases_still_holds():
    result = measure(read_cases("pii_cases.jsonl"), CFG)
    assert result["recall"] == 1.0 and result["precision"] == 1.0, (result["misses"][:3], result["false_positives"][:3])
