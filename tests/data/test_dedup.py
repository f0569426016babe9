"""Exact and near-duplicate detection: what is removed, what is kept, and who is named."""

from __future__ import annotations

import random

from healthai.config.curation import CurationConfig
from healthai.data.dedup import Deduplicator, find_duplicates, jaccard, normalize, shingle_hashes

CFG = CurationConfig()
BASE = ("A dry cough that lasts two weeks and gets worse at night is often due to postnasal drip, asthma or acid "
        "reflux. Try a saline nasal spray, keep the head raised at night and avoid late meals. If you notice "
        "wheezing, fever or breathlessness, see a doctor for an examination and a chest X-ray.")
OTHER = ("Knee pain after running is usually due to overuse of the patellar tendon. Rest for a week, use ice packs "
         "for twenty minutes twice daily and strengthen the thigh muscles once the pain settles. See an orthopaedic "
         "surgeon if the knee swells or locks.")


def test_exact_duplicate_after_normalisation():
    dups = find_duplicates([("a", BASE), ("b", BASE.upper().replace(",", " ,")), ("c", OTHER)], CFG)
    assert set(dups) == {"b"} and dups["b"].kind == "exact" and dups["b"].kept_id == "a"


def test_near_duplicate_with_a_few_words_changed():
    near = BASE.replace("two weeks", "three weeks").replace("late meals", "heavy late meals")
    dups = find_duplicates([("a", BASE), ("b", near), ("c", OTHER)], CFG)
    assert set(dups) == {"b"} and dups["b"].kind == "near" and dups["b"].kept_id == "a"
    assert CFG.near_dup_threshold <= dups["b"].similarity < 1.0


def test_different_texts_are_kept():
    assert find_duplicates([("a", BASE), ("c", OTHER)], CFG) == {}


def test_near_dedup_can_be_switched_off():
    near = BASE.replace("two weeks", "three weeks")
    assert find_duplicates([("a", BASE), ("b", near)], CFG, near=False) == {}


def test_threshold_is_respected():
    words = BASE.split()
    rng = random.Random(0)
    for i in rng.sample(range(len(words)), 12):   # heavy edit: similarity well below 0.7
        words[i] = "changed"
    edited = " ".join(words)
    sim = jaccard(shingle_hashes(Deduplicator(CFG).hasher(normalize(BASE).split()), CFG.shingle_size),
                  shingle_hashes(Deduplicator(CFG).hasher(normalize(edited).split()), CFG.shingle_size))
    dups = find_duplicates([("a", BASE), ("b", edited)], CFG)
    assert (sim >= CFG.near_dup_threshold) == ("b" in dups)


def test_duplicates_point_to_the_kept_representative_not_a_removed_one():
    v1 = BASE.replace("two weeks", "three weeks")
    v2 = v1.replace("late meals", "heavy late meals")
    dups = find_duplicates([("a", BASE), ("b", v1), ("c", v2)], CFG)
    assert all(d.kept_id == "a" for d in dups.values())


def test_short_texts_and_determinism():
    items = [("a", "fever"), ("b", "Fever!"), ("c", "headache")]
    assert {k: v.kept_id for k, v in find_duplicates(items, CFG).items()} == {"b": "a"}
    assert find_duplicates([("a", BASE), ("b", BASE + " Rest.")], CFG) == find_duplicates(
        [("a", BASE), ("b", BASE + " Rest.")], CFG)


def test_an_exact_copy_of_a_near_duplicate_names_the_kept_record():
    # bug: the exact-key table used to remember near-duplicates, so this named a removed record
    near = BASE.replace("two weeks", "three weeks")
    dups = find_duplicates([("a", BASE), ("b", near), ("c", near)], CFG)
    assert dups["b"].kept_id == "a" and dups["c"].kept_id == "a"


def test_fast_normalize_equals_the_plain_rule():
    # normalize leaves single spaces unmatched (speed); it must equal replacing every non-word run and "_" run
    import random
    import re

    plain = re.compile(r"[^\w]+|_+")
    rng = random.Random(3)
    alphabet = ["a", "B", " ", "  ", "_", ".", ",", "\n", "é", "1", "\u00a0", "-"]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        assert normalize(text) == plain.sub(" ", text.lower()).strip(), repr(text)
