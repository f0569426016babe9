"""Stage 2 quality rules: structure, length, dosage table, forbidden phrases, rule order."""

from __future__ import annotations

import pytest

from healthai.config.filtering import FilterConfig
from healthai.data.filtering import check_structure, filter_record, find_dosages, find_forbidden, remove_forbidden

CFG = FilterConfig()
ADVICE = ("Drink plenty of fluids and rest at home for a few days. Avoid cold drinks and dusty places. "
          "You should see a doctor if the symptoms get worse or do not settle within a week.")  # 36 words


def rec(answer=ADVICE, question="Hello doctor, I have a cough for three days.", rid="r1", messages=None):
    return {"id": rid, "messages": messages if messages is not None else
            [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


# -- structure ------------------------------------------------------------------------------
@pytest.mark.parametrize("record, reason_part", [
    ({"id": "x", "messages": "text"}, "must be a list"),                                        # not a list
    (rec(messages=[{"role": "user", "content": "q"}]), "expected roles"),                        # one turn
    (rec(messages=[{"role": "assistant", "content": ADVICE}, {"role": "user", "content": "q"}]), "expected roles"),
    (rec(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": ADVICE},
                   {"role": "user", "content": "thanks"}]), "expected roles"),                   # three turns
    (rec(answer="   "), "empty assistant"),                                                      # blank answer
    (rec(answer=None), "must be a string"),                                                      # null answer
    (rec(messages=[{"role": "user", "content": ""}, {"role": "assistant", "content": ADVICE}]), "empty user"),
    ({"messages": rec()["messages"]}, "'id'"),                                                   # no id
    (rec(messages=["user", "assistant"]), "expected roles"),                                     # not dicts
])
def test_structure_rejects(record, reason_part):
    bad = check_structure(record)
    assert bad is not None and bad[0] == "bad_structure" and reason_part in bad[1]


def test_structure_accepts_user_then_assistant():
    assert check_structure(rec()) is None


# -- length ---------------------------------------------------------------------------------
def test_length_bounds_are_inclusive():
    words = lambda n: " ".join(["word"] * (n - 1)) + " end."  # noqa: E731
    assert filter_record(rec(words(25)), CFG).reason is None
    assert filter_record(rec(words(150)), CFG).reason is None
    assert filter_record(rec(words(24)), CFG).reason == "too_short"
    r = filter_record(rec(words(151)), CFG)
    assert r.reason == "too_long" and "151 words" in r.detail


# -- dosage table ---------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "500 mg", "Take 500mg at night", "take 2 tablets every 6 hours", "10 ml twice daily", "Tab. Ibuprofen 400mg",
    "vitamin D 60000 IU once a week", "1-2 tablets", "0.5 g", "apply it twice a day", "3 times a day",
    "250 mcg", "5 units of insulin", "Take one tablet daily", "half tablet at night", "two puffs",
    "every 4-6 hours", "20 drops", "one teaspoon", "q8h", "BID",
])
def test_dosage_positives(text):
    assert find_dosages(text, CFG), text


@pytest.mark.parametrize("text", [
    "in 2019", "a fever of 101.5°F", "blood pressure 120/80 mmHg", "for 2 weeks", "a 45 year old man",
    "sugar 120 mg/dL", "Hb 12 g/dl", "TSH 4.5", "take rest for 2-3 days", "I have one cough", "someone tablet",
    "she weighs 60 kg", "2 to 3 liters of water", "once in a while", "after 3 months", "sleep 8 hours",
])
def test_dosage_negatives(text):
    assert find_dosages(text, CFG) == [], text


# -- forbidden phrases -------------------------------------------------------------------------
def test_forbidden_found_case_and_apostrophe_insensitive():
    assert find_forbidden("DON’T WORRY, all is well. Hope this helps!", CFG) == ["DON'T WORRY", "Hope this helps"]
    assert find_forbidden("The worry is understandable.", CFG) == []


@pytest.mark.parametrize("text, expected", [
    ("Don't worry, rest and drink fluids.", "Rest and drink fluids."),          # phrase opens the sentence
    ("Take rest. Hope this helps.", "Take rest."),                             # a filler sentence
    ("Take rest. Let me know if you have questions. Bye.", "Take rest. Bye."),  # filler clause to its end
    ("It is nothing to worry about, it is common. Rest.", "Rest."),            # phrase inside: sentence dropped
    ("Don’t worry. No need to worry, it is fine.", "It is fine."),             # curly apostrophe, two phrases
    ("Rest well.", "Rest well."),                                              # nothing to remove
])
def test_remove_forbidden(text, expected):
    assert remove_forbidden(text, CFG) == expected


def test_forbidden_policy_remove_then_reject():
    answer = "Don't worry. " + ADVICE + " Hope this helps."
    kept = filter_record(rec(answer), CFG)
    assert kept.reason is None and kept.phrases_removed == 2 and kept.answer == ADVICE
    strict = FilterConfig(forbidden_policy="reject")
    r = filter_record(rec(answer), strict)
    assert r.reason == "forbidden_phrase" and "Don't worry" in r.detail


def test_rule_order_and_rejected_entry():
    # structure first, then phrases (removal can make an answer too short), then length, then dosage
    assert filter_record(rec("Hope this helps. " + " ".join(["x"] * 24) + "."), CFG).reason == "too_short"
    r = filter_record(rec(ADVICE + " Take 500 mg of paracetamol."), CFG)
    assert r.reason == "dosage" and "500 mg" in r.detail
    entry = r.rejected(rec(ADVICE + " Take 500 mg of paracetamol."))
    assert entry["id"] == "r1" and entry["reason"] == "dosage" and entry["record"]["messages"]
