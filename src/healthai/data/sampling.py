"""Seeded stratified sampling by category weights, with proportional redistribution of shortfall.

    quotas = allocate(weights, available, total)          # {category: n}, sums to min(total, sum(available))
    plan = sample_stratified(ids_by_category, weights, 500, reserve=150, seed=42)
    plan.sample, plan.reserve, plan.rest, plan.table()

Quotas are rounded with the largest-remainder method. When a category has fewer records
than its quota, it gives everything it has and its shortfall is shared among the
categories that still have spare records, in proportion to their weights (repeated until
nothing is short or nothing is spare). Deterministic: the order inside a category is a
shuffle seeded by (seed, category name) over the records sorted by id, so it does not
depend on the input order or on the other categories.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass


def _largest_remainder(shares: dict[str, float], total: int) -> dict[str, int]:
    """Integers proportional to `shares` summing to `total` (ties: larger share, then name)."""
    mass = sum(shares.values())
    if total <= 0 or mass <= 0:
        return {k: 0 for k in shares}
    exact = {k: round(total * v / mass, 9) for k, v in shares.items()}  # 0.15/0.6*150 is 37.4999...
    out = {k: int(v) for k, v in exact.items()}
    left = total - sum(out.values())
    order = sorted(shares, key=lambda k: (-(exact[k] - out[k]), -shares[k], k))
    for k in order[:left]:
        out[k] += 1
    return out


def allocate(weights: dict[str, float], available: dict[str, int], total: int) -> dict[str, int]:
    """How many records to take per category: targets by weight, shortfall redistributed by weight."""
    total = min(total, sum(available.get(k, 0) for k in weights))
    quota = {k: 0 for k in weights}
    remaining = total
    open_cats = {k for k in weights if available.get(k, 0) > 0}
    while remaining > 0 and open_cats:
        shares = {k: weights[k] for k in open_cats}
        if sum(shares.values()) <= 0:  # only zero-weight categories have records left: share equally
            shares = {k: 1.0 for k in open_cats}
        step = _largest_remainder(shares, remaining)
        for k, n in step.items():
            take = min(n, available[k] - quota[k])
            quota[k] += take
            remaining -= take
        open_cats = {k for k in open_cats if quota[k] < available[k]}
    return quota


def _rng(seed: int, category: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{category}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass
class SamplePlan:
    """The outcome of `sample_stratified`: ids per role, and the numbers for the report."""

    sample: dict[str, list[str]]
    reserve: dict[str, list[str]]
    rest: dict[str, list[str]]
    targets: dict[str, int]
    available: dict[str, int]
    weights: dict[str, float]
    size: int

    def table(self) -> list[dict]:
        rows = []
        for k in self.weights:
            got = len(self.sample.get(k, []))
            rows.append({"category": k, "weight": self.weights[k], "available": self.available.get(k, 0),
                         "target": self.targets[k], "got": got, "diff": got - self.targets[k],
                         "reserve": len(self.reserve.get(k, []))})
        return rows


def sample_stratified(ids_by_category: dict[str, list[str]], weights: dict[str, float], size: int,
                      reserve: int = 0, seed: int = 42) -> SamplePlan:
    """Choose `size` ids by category weight (shortfall redistributed), then `reserve` more the same way."""
    available = {k: len(ids_by_category.get(k, [])) for k in weights}
    unknown = set(ids_by_category) - set(weights)
    if unknown:
        raise ValueError(f"records in categories that have no weight: {sorted(unknown)}")
    ordered = {}
    for k in weights:
        ids = sorted(ids_by_category.get(k, []))
        _rng(seed, k).shuffle(ids)
        ordered[k] = ids
    targets = _largest_remainder(weights, size)
    quota = allocate(weights, available, size)
    spare = {k: available[k] - quota[k] for k in weights}
    reserve_quota = allocate(weights, spare, reserve)
    sample = {k: ordered[k][:quota[k]] for k in weights}
    res = {k: ordered[k][quota[k]:quota[k] + reserve_quota[k]] for k in weights}
    rest = {k: ordered[k][quota[k] + reserve_quota[k]:] for k in weights}
    return SamplePlan(sample, res, rest, targets, available, dict(weights), size)


def format_table(rows: list[dict], title: str = "--- SAMPLING (target vs got) ---") -> str:
    """The achieved table as printed at the end of the stage."""
    lines = [title, f"{'category':<18}{'weight':>7}{'avail':>7}{'target':>7}{'got':>6}{'diff':>6}{'reserve':>8}"]
    for r in rows:
        lines.append(f"{r['category']:<18}{r['weight']:>7.2f}{r['available']:>7}{r['target']:>7}{r['got']:>6}"
                     f"{r['diff']:>+6}{r['reserve']:>8}")
    tot = {k: sum(r[k] for r in rows) for k in ("available", "target", "got", "reserve")}
    lines.append(f"{'total':<18}{'':>7}{tot['available']:>7}{tot['target']:>7}{tot['got']:>6}"
                 f"{tot['got'] - tot['target']:>+6}{tot['reserve']:>8}")
    return "\n".join(lines)
