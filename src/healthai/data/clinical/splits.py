"""Group split: every product sharing [first word of the name] + [base composition] lands in one split.

    key = split_key("Augmentin 625 Duo Tablet", ["amoxycillin", "clavulanic acid"])
    # "augmentin|amoxycillin+clavulanic acid"
    assignment = assign_splits(keys, train_ratio=0.8, dev_ratio=0.1, seed=42)   # key -> split

Brand families ("Augmentin 375", "Augmentin 625 Duo") and strength variants share a key,
so a model cannot meet a test product's sibling during training.
"""

from __future__ import annotations

import random
import re
from collections import Counter

SPLITS = ("train", "dev", "test")


def split_key(medicine_name: str, ingredient_bases: list[str]) -> str:
    """"<first word of the name, lower-case>|<sorted ingredient names without strengths joined by +>"."""
    words = re.findall(r"[\w'-]+", medicine_name.lower())
    first = words[0] if words else ""
    return f"{first}|{'+'.join(sorted(set(b.lower().strip() for b in ingredient_bases)))}"


def assign_splits(keys: list[str], train_ratio: float, dev_ratio: float, seed: int) -> dict[str, str]:
    """Map each distinct key to train/dev/test so that row shares approach the ratios.

    Keys are shuffled with `seed` (sorted first, so the result does not depend on input
    order) and filled into train, then dev, by their row counts; the rest is test.
    """
    sizes = Counter(keys)
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    total = sum(sizes.values())
    targets = (train_ratio * total, (train_ratio + dev_ratio) * total)
    out: dict[str, str] = {}
    filled = 0
    for key in order:
        if filled < targets[0]:
            out[key] = "train"
        elif filled < targets[1]:
            out[key] = "dev"
        else:
            out[key] = "test"
        filled += sizes[key]
    return out
