"""Near-duplicate grouping and leak-free, stratified splits with enough urgent examples in test."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from healthai.errors import StageError
from healthai.data.splitting import assign_splits, group_near_duplicates, normalise_text
from merge_helpers import real_questions

QUESTIONS = real_questions(60)


def test_paraphrases_and_normalised_copies_share_a_group():
    base = QUESTIONS[0]
    texts = [
        base,
        base.replace("Hello doctor,", "Hi doctor,") + " Thanks.",  # a light paraphrase of 0
        base.upper().replace(",", " ;"),                           # same text after normalisation
        QUESTIONS[1],
        QUESTIONS[2],
    ]
    groups = group_near_duplicates(texts, threshold=0.7, shingle_words=3, num_perm=128, seed=42)
    assert groups[0] == groups[1] == groups[2] == 0
    assert len({groups[0], groups[3], groups[4]}) == 3
    assert normalise_text("Hello, Doctor!  I'm ok") == "hello doctor i m ok"


def test_grouping_is_transitive_and_threshold_one_means_exact_only():
    words = QUESTIONS[3].split()
    a = " ".join(words)
    b = " ".join(words[:-4])  # drops the end of a
    c = " ".join(words[4:-4])  # drops the start of b: close to b, further from a
    groups = group_near_duplicates([a, b, c], threshold=0.75, seed=1)
    assert groups == [0, 0, 0]
    assert group_near_duplicates([a, b, a.lower()], threshold=1.0) == [0, 1, 0]


def _planted(n_groups: int = 120):
    """Items from real questions with 15 planted near-duplicate trios; categories in turn, 1 in 5 urgent."""
    texts, categories, urgent = [], [], []
    for i, q in enumerate(real_questions(n_groups)):
        copies = 3 if i % 8 == 0 else 1
        for k in range(copies):
            texts.append(q + (" Please help me." * k))
            categories.append(["pediatric", "mild symptoms", "other", "urgent symptoms"][i % 4])
            urgent.append(i % 5 == 0)
    return texts, categories, urgent


def test_no_near_duplicate_group_crosses_splits_and_categories_are_stratified():
    texts, categories, urgent = _planted()
    groups = group_near_duplicates(texts, threshold=0.7, seed=42)
    assert len(set(groups)) == 120  # every planted trio found, nothing else merged
    splits = assign_splits(categories, urgent, groups, val_ratio=0.1, test_ratio=0.2, min_test_urgent=5, seed=7)
    split_of_group = defaultdict(set)
    for g, s in zip(groups, splits):
        split_of_group[g].add(s)
    assert all(len(s) == 1 for s in split_of_group.values())
    for category in set(categories):
        n = categories.count(category)
        got = Counter(s for c, s in zip(categories, splits) if c == category)
        assert abs(got["test"] - 0.2 * n) <= 3 and abs(got["val"] - 0.1 * n) <= 3, (category, got)
    assert splits == assign_splits(categories, urgent, groups, 0.1, 0.2, 5, 7)  # deterministic


def test_test_split_keeps_the_minimum_of_urgent_examples():
    texts, categories, urgent = _planted()
    groups = group_near_duplicates(texts, threshold=0.7, seed=42)
    natural = assign_splits(categories, urgent, groups, 0.1, 0.2, 0, 7)
    n_natural = sum(u for u, s in zip(urgent, natural) if s == "test")
    want = n_natural + 6
    splits = assign_splits(categories, urgent, groups, 0.1, 0.2, want, 7)
    assert sum(u for u, s in zip(urgent, splits) if s == "test") >= want
    # swaps, not growth: the test split keeps its size (all groups here are size 1 or 3 alike)
    assert abs(splits.count("test") - natural.count("test")) <= 2
    assert sum(urgent) < 40
    with pytest.raises(StageError, match="merge.min_test_urgent=40"):
        assign_splits(categories, urgent, groups, 0.1, 0.2, 40, 7)
