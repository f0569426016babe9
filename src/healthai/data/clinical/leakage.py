"""Leakage prevention: drop test items whose mechanism of action ties to a train/dev active ingredient.

    seen = ingredients_in_splits(split_rows, ("train", "dev"))         # DrugBank ids present there
    kept, removed, per_task = remove_mechanism_leaks(test_items, seen)

The group split keeps product families apart, but an active ingredient (paracetamol, say)
appears under many brands. A test item whose ingredient has a DrugBank mechanism of action
(any task type: the mechanism is the knowledge the item tests, directly or not) is removed
when that ingredient also occurs in a train or dev product: the model could have learnt the
mechanism from there, so the item would not measure reasoning on unseen drugs.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable


def ingredients_in_splits(rows: Iterable[tuple[str, list[str]]], splits: tuple[str, ...] = ("train", "dev")) -> set[str]:
    """DrugBank ids of every product row whose split is in `splits` (rows: (split, ids) pairs)."""
    seen: set[str] = set()
    for split, ids in rows:
        if split in splits:
            seen.update(ids)
    return seen


def leak_reason(item: dict, seen_ids: set[str]) -> str | None:
    """Why `item` leaks (the tied ingredients), or None when it does not."""
    tied = [i for i in item["meta"].get("mechanism_ids", []) if i in seen_ids]
    if not tied:
        return None
    return "mechanism of action of " + ", ".join(tied) + " is tied to an active ingredient in train/dev"


def remove_mechanism_leaks(test_items: list[dict], seen_ids: set[str]) -> tuple[list[dict], list[dict],
                                                                                  dict[str, int]]:
    """Split test items into kept and removed (each removed item gets meta.leak_reason); count per task."""
    kept, removed = [], []
    per_task: Counter = Counter()
    for item in test_items:
        reason = leak_reason(item, seen_ids)
        if reason is None:
            kept.append(item)
            continue
        item["meta"]["leak_reason"] = reason
        removed.append(item)
        per_task[item["meta"]["task_type"]] += 1
    return kept, removed, dict(per_task)
