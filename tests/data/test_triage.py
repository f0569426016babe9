"""The urgent detector (table-driven, negation-aware) and the category of the sampling table."""

from __future__ import annotations

import pytest

from healthai.config.filtering import Category, FilterConfig
from healthai.data.triage import categorize, is_urgent, parse_ages, urgent_matches

CFG = FilterConfig()


@pytest.mark.parametrize("question", [
    "I have crushing chest pain since an hour.",
    "Sudden shortness of breath while walking.",
    "My father had a stroke this morning and cannot speak.",
    "I think I am having a heart attack",
    "She fainted twice today",
    "He has been coughing up blood",
    "I am having suicidal thoughts",
    "I do not have chest pain but I have shortness of breath",   # negation stops at "but"
    "I had no fever, but I have chest pain",                     # negation stops at the comma
    "I have no idea why I get chest pain",                        # pseudo-negation
    "CHEST PAIN and sweating",                                    # case-insensitive
])
def test_urgent_positives(question):
    assert is_urgent(question, CFG), question


@pytest.mark.parametrize("question", [
    "No chest pain, only a mild cough",
    "I have no chest pain or breathlessness",
    "denies any shortness of breath or chest pain",
    "without chest pain",
    "I never had a seizure in my life",
    "I have a headache and a runny nose",
    "My chest is fine, my knee hurts",
    "the strokes of my pen",                                      # whole words only (strokes != stroke)
    "",
])
def test_urgent_negatives(question):
    assert not is_urgent(question, CFG), question


def test_urgent_is_table_driven():
    cfg = FilterConfig(urgent_patterns=["fell off a ladder"])
    assert is_urgent("He fell off a ladder", cfg) and not is_urgent("chest pain", cfg)
    two = FilterConfig(urgent_patterns=["chest pain", "stroke", "seizure"])
    assert urgent_matches("chest pain and stroke", two) == ["chest pain", "stroke"]
    no_negation = FilterConfig(negation_cues=[])
    assert is_urgent("no chest pain", no_negation)


@pytest.mark.parametrize("text, ages", [
    ("My 45 year old husband", [45.0]),
    ("a 4-year-old boy", [4.0]),
    ("my six-month-old baby", [0.5]),
    ("I am 25 years old", [25.0]),
    ("2 yrs old", [2.0]),
    ("my son, three weeks old", [3 / 52]),
    ("no age here", []),
])
def test_parse_ages(text, ages):
    assert parse_ages(text) == pytest.approx(ages)


@pytest.mark.parametrize("question, category", [
    ("I have crushing chest pain", "urgent symptoms"),
    ("My 4 year old son has a cough", "pediatric"),               # pediatric before mild symptoms
    ("My 45 year old husband has a cough", "mild symptoms"),      # 45 is not pediatric
    ("I am a 17 year old girl with acne", "pediatric"),           # pediatric_max_age = 17
    ("I am an 18 year old girl with acne", "other"),
    ("my children have a fever", "pediatric"),                    # plural of a keyword
    ("I feel stress and anxiety", "mental health"),
    ("What is the dose of ibuprofen?", "medication"),
    ("I have diabetes and a headache", "chronic"),                # chronic before mild symptoms (config order)
    ("I have a HEADACHE", "mild symptoms"),
    ("No cough, just a rash", "other"),                           # negated keyword
    ("I have a rash on my leg", "other"),
    ("my baby has chest pain", "urgent symptoms"),                # urgent first
    ("I coughed", "other"),                                       # whole words: "coughed" is not "cough"
])
def test_categorize(question, category):
    assert categorize(question, CFG) == category


def test_category_priority_is_config_order():
    cfg = FilterConfig(categories=[Category("urgent symptoms", 0.5, ["chest pain"]), Category("mild symptoms", 0.2, ["cough"]),
                                   Category("pediatric", 0.2, ["child"]), Category("other", 0.1, [])])
    assert categorize("my child has a cough", cfg) == "mild symptoms"
    assert categorize("my child has a cough", CFG) == "pediatric"
