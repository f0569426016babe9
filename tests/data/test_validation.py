"""Post-generation validation: a table of good and bad rewrites, one rule broken at a time."""

from __future__ import annotations

import pytest

from healthai.config.filtering import FilterConfig
from healthai.data.validation import RULES, failed_rules, find_drugs, split_sentences, validate_answer

CFG = FilterConfig()
CLOSE = CFG.closing_sentence
URGENT = CFG.urgent_prefix
ORIGINAL = ("Hello. Your cough looks viral. Take paracetamol if you have fever, drink warm fluids and rest. "
            "See your doctor if it lasts more than a week.")


@pytest.mark.parametrize("answer, urgent, broken", [
    (f"Drink warm fluids and rest. {CLOSE}", False, []),                                     # good, 2 sentences
    (f"{URGENT} Call an ambulance now. {CLOSE}", True, []),                                  # good urgent
    (f"Take paracetamol if you have fever. Rest at home. {CLOSE}", False, []),               # drug from original
    (f"Dr. Smith said e.g. 2.5 days of rest is fine. {CLOSE}", False, []),                   # pysbd: 2 sentences
    ("", False, ["non_empty", "sentences", "closing_sentence"]),
    (f"Rest. Drink. Sleep. Eat. Walk. {CLOSE}", False, ["sentences"]),                       # 6 sentences
    ("Drink warm fluids and rest.", False, ["closing_sentence"]),                            # no closing
    (f"Drink warm fluids and rest. {CLOSE[:-1]}", False, ["closing_sentence"]),              # closing without "."
    (f"{CLOSE} Drink warm fluids.", False, ["closing_sentence"]),                            # closing not last
    (f"Drink warm fluids. please consult a doctor for more personalized medical advice.", False,
     ["closing_sentence"]),                                                                  # not exact (case)
    (f"Call an ambulance now. {CLOSE}", True, ["urgent_prefix"]),                           # urgent, no prefix
    (f"{URGENT} Rest at home. {CLOSE}", False, ["urgent_prefix"]),                          # over-triage
    (f"Don't worry, rest at home. {CLOSE}", False, ["no_forbidden_phrase"]),
    (f"Rest at home, hope this helps. {CLOSE}", False, ["no_forbidden_phrase"]),
    (f"Do this:\n- rest\n- drink fluids\n{CLOSE}", False, ["no_bullet_list"]),
    (f"Do this:\n1. rest at home\n{CLOSE}", False, ["no_bullet_list"]),
    (f"Take paracetamol 500 mg at night. {CLOSE}", False, ["no_dosage"]),
    (f"Rest and drink fluids twice daily. {CLOSE}", False, ["no_dosage"]),
    (f"Take ibuprofen for the pain. {CLOSE}", False, ["no_new_drug"]),                      # not in the original
    (f"Start amoxicillin now. {CLOSE}", False, ["no_new_drug"]),                            # DrugBank name
    (f"Drink water and eat a banana. {CLOSE}", False, []),                                  # stoplisted names
])
def test_validate_answer_table(answer, urgent, broken):
    checks = validate_answer(answer, ORIGINAL, urgent, CFG)
    assert list(checks) == list(RULES)
    assert failed_rules(checks) == broken


def test_sentence_limits_come_from_config():
    cfg = FilterConfig(max_sentences=3, rules_advice_sentences=1)
    assert validate_answer(f"A b c. D e f. {CLOSE}", ORIGINAL, False, cfg)["sentences"]
    assert not validate_answer(f"A b c. D e f. G h. {CLOSE}", ORIGINAL, False, cfg)["sentences"]


def test_drug_vocabulary():
    assert find_drugs("Take Paracetamol and AMOXICILLIN, not water.", CFG) == {"paracetamol", "amoxicillin"}
    assert find_drugs("Take paracetamol.", FilterConfig(drug_vocabulary=None)) == {"paracetamol"}  # extras only
    assert split_sentences("One. Two!  ") == ["One.", "Two!"]
