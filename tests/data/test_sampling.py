"""Seeded stratified sampling: quotas, shortfall redistribution, determinism, reserve."""

from __future__ import annotations

import random

from healthai.config.filtering import FilterConfig
from healthai.data.sampling import allocate, format_table, sample_stratified

WEIGHTS = {c.name: c.weight for c in FilterConfig().categories}  # the workshop table


def ids(available: dict[str, int]) -> dict[str, list[str]]:
    return {k: [f"{k[:3]}-{i:04d}" for i in range(n)] for k, n in available.items()}


def test_targets_match_the_workshop_table_when_nothing_is_short():
    plenty = {k: 1000 for k in WEIGHTS}
    assert allocate(WEIGHTS, plenty, 500) == {"urgent symptoms": 125, "pediatric": 75, "mental health": 50,
                                               "medication": 25, "chronic": 15, "mild symptoms": 200, "other": 10}


def test_shortfall_is_redistributed_in_proportion_to_weights():
    available = {k: 1000 for k in WEIGHTS} | {"mild symptoms": 50}        # 150 short
    quota = allocate(WEIGHTS, available, 500)
    assert quota["mild symptoms"] == 50 and sum(quota.values()) == 500
    # the others share 150 in proportion to their weights (0.60 of the mass): 62.5, 37.5, 25, 12.5, 7.5, 5;
    # the two spare units of the halves go to the largest weights
    assert quota == {"urgent symptoms": 125 + 63, "pediatric": 75 + 38, "mental health": 50 + 25,
                     "medication": 25 + 12, "chronic": 15 + 7, "mild symptoms": 50, "other": 10 + 5}


def test_redistribution_repeats_when_a_receiver_runs_out():
    available = {k: 1000 for k in WEIGHTS} | {"mild symptoms": 0, "urgent symptoms": 130}
    quota = allocate(WEIGHTS, available, 500)
    assert quota["mild symptoms"] == 0 and quota["urgent symptoms"] == 130 and sum(quota.values()) == 500


def test_fewer_records_than_the_sample_takes_everything():
    available = {k: 3 for k in WEIGHTS}
    assert allocate(WEIGHTS, available, 500) == available


def test_zero_weight_category_is_used_only_as_a_last_resort():
    w = {"a": 1.0, "b": 0.0}
    assert allocate(w, {"a": 10, "b": 10}, 5) == {"a": 5, "b": 0}
    assert allocate(w, {"a": 2, "b": 10}, 5) == {"a": 2, "b": 3}


def test_sample_is_deterministic_and_independent_of_input_order():
    available = {k: 40 for k in WEIGHTS}
    pool = ids(available)
    a = sample_stratified(pool, WEIGHTS, 50, reserve=20, seed=7)
    shuffled = {k: random.Random(1).sample(v, len(v)) for k, v in reversed(list(pool.items()))}
    b = sample_stratified(shuffled, WEIGHTS, 50, reserve=20, seed=7)
    assert a.sample == b.sample and a.reserve == b.reserve
    c = sample_stratified(pool, WEIGHTS, 50, reserve=20, seed=8)
    assert c.sample != a.sample                                  # the seed matters
    assert [len(c.sample[k]) for k in WEIGHTS] == [len(a.sample[k]) for k in WEIGHTS]


def test_sample_reserve_and_rest_partition_the_pool():
    available = {k: 30 for k in WEIGHTS} | {"mild symptoms": 12}
    plan = sample_stratified(ids(available), WEIGHTS, 100, reserve=25, seed=1)
    for k in WEIGHTS:
        parts = plan.sample[k] + plan.reserve[k] + plan.rest[k]
        assert sorted(parts) == sorted(ids(available)[k])        # disjoint and complete
    assert sum(map(len, plan.sample.values())) == 100 and sum(map(len, plan.reserve.values())) == 25
    rows = {r["category"]: r for r in plan.table()}
    assert rows["mild symptoms"]["target"] == 40 and rows["mild symptoms"]["got"] == 12
    assert rows["mild symptoms"]["diff"] == -28 and sum(r["diff"] for r in rows.values()) == 0
    text = format_table(plan.table())
    assert "target" in text and "mild symptoms" in text and text.splitlines()[-1].split()[-3:] == ["100", "+0", "25"]
