"""Boilerplate mined from the corpus: counting, thresholds, the medical keep rule, veto, stripping; the stage on
CareLine, a synthetic platform none of the phrase lists was tuned on (tests/fixtures/careline.py); properties."""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthai.config import load_config
from healthai.config.curation import BoilerplateMiningConfig, CurationConfig
from healthai.data.boilerplate import OVERALL, BoilerplateMiner, MinedBoilerplate, edge_units, sentence_key
from healthai.data.cleaning import compile_rules, word_count
from healthai.data.curation import curate, curate_record, curated_entry, strip_mined
from healthai.data.readers import RawRecord

FIX = Path(__file__).parents[1] / "fixtures"
sys.path.insert(0, str(FIX))
import careline  # noqa: E402  (the synthetic platform's generator and its truth)

CFG = load_config().curation
RULES = compile_rules(CFG)
CTA = "Book a MediNest video call from the app for a same-day reply."
BODIES = [f"Your {part} pain for {d} days is most likely a {cause} and should settle with {care}."
          for part in ("knee", "back", "neck", "wrist", "hip", "ankle")
          for d, cause in ((3, "strain"), (5, "sprain"), (9, "tendon irritation"))
          for care in ("ice packs", "gentle stretching", "a short rest from sport", "a supportive bandage",
                       "warm baths", "a week of lighter training")]


class Miner(BoilerplateMiner):
    """The stage's counting, fed with answers (the stage feeds it the workers' `edge_units`)."""

    def count(self, source: str, answer: str) -> None:
        self.add(source, edge_units(answer, self.cfg.edge_sentences, self.cfg.min_words, tuple(self.cfg.positions)))


def miner(cfg: BoilerplateMiningConfig | None = None) -> Miner:
    return Miner(cfg or BoilerplateMiningConfig())


def corpus(n: int, closing: str | None, share: float, seed: int = 0) -> list[str]:
    """n answers of two distinct body sentences; `closing` appended to about `share` of them."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.sample(BODIES, 2)
        text = f"{a} {b}"
        if closing and rng.random() < share:
            text += " " + closing
        out.append(text)
    return out


# -- keys and counting ------------------------------------------------------------------
def test_sentence_key_ignores_case_punctuation_digits_and_apostrophes():
    assert sentence_key("Call us on 555-0101, today!") == sentence_key("call US on 555 0199 today")
    assert sentence_key("Don't wait.") == sentence_key("dont wait")
    assert sentence_key("Rest well.") != sentence_key("Rest more.")


def test_a_repeated_closing_sentence_is_mined_and_removed_from_every_answer():
    m = miner()
    answers = corpus(200, CTA, 0.4)
    for a in answers:
        m.count("medinest", a)
    mined = m.mine()
    assert [(c.position, c.action, c.sentence) for c in mined.candidates] == [("closing", "removed", CTA)]
    for a in answers:
        out, removed = mined.strip(a, "medinest")
        assert CTA not in out
        assert removed == ([CTA] if CTA in a else [])
        assert out == a.replace(" " + CTA, "")  # the rest untouched, byte for byte


def test_thresholds_are_share_and_count_per_source():
    cfg = BoilerplateMiningConfig(min_share_per_source=0.2, min_count_per_source=10)
    rare = miner(cfg)
    for a in corpus(200, CTA, 0.1):  # ~20 of 200: above the count, below the share
        rare.count("medinest", a)
    assert not rare.mine()
    small = miner(cfg)
    for a in corpus(20, CTA, 0.5):  # ~50 % of 20: above the share, below the count
        small.count("tiny", a)
    assert not small.mine()


def test_a_sentence_below_each_source_threshold_is_mined_over_all_sources():
    cfg = BoilerplateMiningConfig(min_share_per_source=0.5, min_count_per_source=60, min_share_overall=0.1,
                                  min_count_overall=50)
    m = miner(cfg)
    for source in ("a", "b", "c"):
        for a in corpus(100, CTA, 0.3, seed=ord(source)):
            m.count(source, a)
    mined = m.mine()
    assert [(c.source, c.sentence) for c in mined.candidates] == [(OVERALL, CTA)]
    assert ("closing", sentence_key(CTA)) in mined.removable("a")
    assert ("closing", sentence_key(CTA)) in mined.removable("z")  # mined overall: every source


def test_frequent_medical_sentences_are_reported_and_kept():
    m = miner()
    fluids, consult = "Drink plenty of fluids and rest.", "Please consult a doctor if it gets worse."
    answers = [f"{a} {fluids if i % 2 else consult}" for i, a in enumerate(corpus(200, None, 0))]
    for a in answers:
        m.count("s", a)
    mined = m.mine()
    assert {c.sentence: c.action for c in mined.candidates} == {fluids: "kept_medical", consult: "kept_medical"}
    assert not mined
    assert all(mined.strip(a, "s") == (a, []) for a in answers)


def test_remove_anyway_and_veto_are_configured_by_a_person():
    promo = "Ask a doctor on MediNest any time of day."  # medical words, but the platform's own advert
    cfg = BoilerplateMiningConfig(remove_anyway=[r"\bmedinest\b"], veto=[CTA.upper()])
    m = miner(cfg)
    for i, a in enumerate(corpus(200, None, 0)):
        m.count("s", f"{a} {promo if i % 2 else CTA}")
    actions = {c.sentence: c.action for c in m.mine().candidates}
    assert actions == {promo: "removed", CTA: "vetoed"}
    off = miner(BoilerplateMiningConfig(keep_medical=False))
    for a in corpus(100, "Drink plenty of fluids and rest.", 1.0):
        off.count("s", a)
    assert [c.action for c in off.mine().candidates] == ["removed"]


def test_short_sentences_and_middle_sentences_are_never_mined():
    m, rng = miner(), random.Random(5)
    for a in corpus(200, None, 0):
        first, second = a.split(". ", 1)
        own = ["".join(rng.choices("bcdfghklmnprstvz", k=6)) for _ in range(2)]
        m.count("s", f"{first}. Yes. Rest helps a lot here. {second} Another sentence on {own[0]}. Last one {own[1]}.")
    assert not m.mine().candidates


def test_opening_lines_and_run_on_sentences():
    opening = "MediNest answers within the hour."
    mined = MinedBoilerplate(2, {"s": frozenset({("opening", sentence_key(opening)),
                                                 ("closing", sentence_key(CTA))})})
    # a whole repeated first line
    assert mined.strip(f"{opening}\n{BODIES[0]}", "s") == (BODIES[0], [opening])
    # run on without a full stop: cut, the sentence before keeps its words and gets the stop
    text = f"{BODIES[0][:-1]} {CTA}"
    assert mined.strip(text, "s") == (BODIES[0], [CTA])
    # a run-on sentence longer than the window the workers split is still seen (the stage tests `hits` first)
    long = "You should rest " + "and drink water " * 30 + CTA
    assert mined.hits("s", edge_units(long, 2)) and mined.strip(long, "s")[1] == [CTA]
    # a lower-case continuation is part of the sentence, not a run-on
    lowered = f"{BODIES[0][:-1]} {CTA[0].lower()}{CTA[1:]}"
    assert mined.strip(lowered, "s") == (lowered, [])
    # the same sentence in the middle of an answer is not in an edge position
    middle = f"{BODIES[0]} {CTA} {BODIES[1]} {BODIES[2]} {BODIES[3]}"
    assert mined.strip(middle, "s") == (middle, [])


# -- the stage on CareLine ----------------------------------------------------------------
def run_careline(project_dir, tmp_path, overrides=()):
    truth = careline.write(tmp_path / "careline.csv")
    cfg = load_config(overrides=list(overrides))
    stats = curate(cfg, inputs=[str(tmp_path / "careline.csv")], show_progress=False)
    out = project_dir / "1.curation"
    kept = {e["meta"]["source_line"]: ("kept", e) for e in map(json.loads, open(out / "curated.jsonl"))}
    rejected = {r["source_line"]: ("rejected", r) for r in map(json.loads, open(out / "rejected.jsonl"))}
    rows = [v for _, v in sorted({**kept, **rejected}.items())]
    assert len(rows) == len(truth) == stats["total_lines_processed"]  # in = kept + rejected
    return truth, rows, stats, out


def test_the_fixture_file_is_what_the_generator_writes(tmp_path):
    careline.write(tmp_path / "careline.csv")
    assert (tmp_path / "careline.csv").read_bytes() == (FIX / "careline.csv").read_bytes()


def test_careline_platform_boilerplate_is_mined_and_medical_advice_kept(project_dir, tmp_path, capsys):
    truth, rows, stats, out = run_careline(project_dir, tmp_path)
    kept = 0
    for t, (kind, entry) in zip(truth, rows):
        if kind == "rejected":
            assert entry["reason"], entry
            continue
        kept += 1
        answer = entry["messages"][1]["content"]
        assert careline.CTA[:25] not in answer, answer
        assert careline.OPENING[:25] not in answer, answer
        assert not any(name in answer for name in careline.SURNAMES), answer  # glued sign-offs and their names
        for word in ("Regards", "Take care", "Best wishes", "Thanks", "Hello"):
            assert word not in answer, answer
        assert (careline.FLUIDS in answer) == t["fluids"], answer  # frequent, medical: kept where it was
        assert (careline.CONSULT in answer) == t["consult"], answer
        assert "[URL]" in answer or "CareLine.example" not in answer  # a URL, never split into sentences
    assert kept >= 0.9 * len(truth)
    mining = stats["boilerplate_mining"]
    top = {c["sentence"]: c for c in mining["top"]["careline"]}
    assert top[careline.CTA]["action"] == "removed" and top[careline.CTA]["position"] == "closing"
    assert top[careline.OPENING]["action"] == "removed" and top[careline.OPENING]["position"] == "opening"
    assert top[careline.FLUIDS]["action"] == "kept_medical"
    assert mining["answers_changed"] > 0.5 * len(truth)
    listed = list(csv.DictReader(open(out / "mined_boilerplate.csv", encoding="utf-8")))
    assert {r["sentence"] for r in listed} >= {careline.CTA, careline.OPENING, careline.FLUIDS}
    sample = list(csv.DictReader(open(out / "review_sample.csv", encoding="utf-8")))
    assert any(careline.CTA in r["boilerplate_mined"] for r in sample)
    assert "--- MINED BOILERPLATE ---" in capsys.readouterr().out


def test_careline_without_mining_keeps_its_call_to_action(project_dir, tmp_path):
    """The hand lists alone were never tuned on CareLine: what the mining pass is for."""
    truth, rows, stats, out = run_careline(project_dir, tmp_path, ["curation.boilerplate_mining.enabled=false"])
    answers = [e["messages"][1]["content"] for kind, e in rows if kind == "kept"]
    assert sum(careline.CTA[:25] in a for a in answers) > 0.25 * len(truth)
    assert "boilerplate_mining" not in stats and not (out / "mined_boilerplate.csv").exists()


def test_a_vetoed_sentence_stays(project_dir, tmp_path):
    _, rows, stats, _ = run_careline(project_dir, tmp_path, [f"curation.boilerplate_mining.veto=['{careline.CTA}']"])
    assert sum(careline.CTA in e["messages"][1]["content"] for kind, e in rows if kind == "kept") > 40
    top = {c["sentence"]: c["action"] for c in stats["boilerplate_mining"]["top"]["careline"]}
    assert top[careline.CTA] == "vetoed"


# -- properties ---------------------------------------------------------------------------
WORDS = st.sampled_from("rest fluids pain the a of your knee back Tap green button MediNest reply Dr Anna "
                        "Regards care Thanks . , ? ! 3.5 e.g. www.MediNest.example".split())
TEXT = st.lists(WORDS, min_size=0, max_size=40).map(" ".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=TEXT, extra=st.sampled_from(["", f" {CTA}", f" {CTA[:-1]}", f"\n{CTA}", f"{CTA}"]))
def test_removal_never_empties_an_answer_without_a_reason(answer, extra):
    mined = MinedBoilerplate(2, {"src": frozenset({("closing", sentence_key(CTA)), ("opening", sentence_key(CTA))})})
    raw = RawRecord(id="r1", source="src", file="f", line=1, question="What should I do about my knee pain?",
                    answer=answer + extra)
    out = curate_record(raw, CFG, RULES, {w.lower() for w in CFG.truncation_tail_words})
    if out.reason is not None:
        assert out.detail
        return
    entry = curated_entry(out)
    rejection = strip_mined(entry, out.edges, mined, CFG.min_answer_words)
    left = entry["messages"][1]["content"]
    if rejection is None:  # kept: never emptied, never below the minimum
        assert left.strip() and word_count(left) >= CFG.min_answer_words
        assert all(CTA.startswith(r.rstrip(".")) for r in entry["meta"].get("boilerplate_mined", []))
    else:
        assert rejection[0] == "boilerplate_only" and rejection[1]
        assert left == out.answer  # a rejected entry is written as it was


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), share=st.floats(0.05, 0.9), medical=st.sampled_from([
    "Drink plenty of fluids and rest.", "Please consult a doctor if the pain lasts more than three days.",
    "Take 500 mg paracetamol every 8 hours if needed."]))
def test_frequent_medical_sentences_are_not_removed_unless_configured(seed, share, medical):
    m = miner()
    answers = corpus(150, medical, share, seed)
    for a in answers:
        m.count("s", a)
    mined = m.mine()
    assert all(c.action == "kept_medical" for c in mined.candidates)
    assert all(mined.strip(a, "s")[0] == a for a in answers)


def test_stage_conservation_on_random_platform_variants(project_dir, tmp_path):
    """in = kept + rejected with mining on at several thresholds, on CareLine variants (seeded)."""
    for seed, share in ((1, 0.01), (2, 0.1), (3, 0.5)):
        path = tmp_path / f"v{seed}.csv"
        careline.write(path, n=120, seed=seed)
        cfg = load_config(overrides=[f"curation.boilerplate_mining.min_share_per_source={share}",
                                     "curation.boilerplate_mining.min_count_per_source=5"])
        stats = curate(cfg, inputs=[str(path)], show_progress=False, force=True)
        assert stats["total_examples_saved"] + stats["duplicates_removed"] + stats["low_quality_removed"] == 120
        assert stats["total_lines_processed"] == 120


def test_mining_config_is_validated():
    from healthai.errors import ConfigError
    import pytest
    with pytest.raises(ConfigError, match="medical_patterns"):
        load_config(overrides=["curation.boilerplate_mining.medical_patterns=['(unclosed']"])
    with pytest.raises(ConfigError, match="positions"):
        load_config(overrides=["curation.boilerplate_mining.positions=['middle']"])
    assert CurationConfig().boilerplate_mining.enabled
