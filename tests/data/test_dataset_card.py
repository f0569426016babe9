"""The dataset card: source notes from data/raw/SOURCES.md, the histogram PNG, the Markdown tables."""

from __future__ import annotations

from healthai.data.dataset_card import match_source, plot_answer_lengths, read_source_notes, render_card
from merge_helpers import REPO

NOTES = read_source_notes(REPO / "data" / "raw" / "SOURCES.md")


def test_source_notes_carry_repository_and_licence():
    icliniq = NOTES["icliniq_2k_chat.jsonl"]
    assert icliniq["repository"] == "`Om-Tiwari/GraphRAG-chatDoctor`"
    assert "academic research only" in icliniq["licence"] and "icliniq.com" in icliniq["licence"]
    assert "CC0" in NOTES["drugbank_vocabulary.csv"]["licence"]
    # meta.source may be a file name, a path or a stem
    assert match_source("data/raw/healthcaremagic_82_sample.jsonl", NOTES)["file"] == "healthcaremagic_82_sample.jsonl"
    assert match_source("icliniq_2k_chat", NOTES)["file"] == "icliniq_2k_chat.jsonl"
    assert match_source("somewhere_else", NOTES) is None


def test_histogram_is_a_png_and_stable():
    lengths = {"train": [20, 25, 30, 30, 41], "val": [22], "test": [28, 33]}
    png = plot_answer_lengths(lengths, bins=5)
    assert png.startswith(b"\x89PNG") and len(png) > 2000
    assert plot_answer_lengths(lengths, bins=5) == png  # byte-identical reruns


def test_card_tables():
    metas = [
        {"id": "1", "split": "train", "category": "pediatric", "is_urgent": False, "source": "icliniq_2k_chat.jsonl"},
        {"id": "2", "split": "train", "category": "urgent symptoms", "is_urgent": True, "source": "icliniq_2k_chat.jsonl"},
        {"id": "3", "split": "test", "category": "urgent symptoms", "is_urgent": True,
         "source": "healthcaremagic_82_sample.jsonl", "origin": "reserve"},
        {"id": "4", "split": "val", "category": "other", "is_urgent": False, "source": "mystery"},
    ]
    answers = ["one two three", "one two three four five", "a b", "a b c d"]
    review = {"selected": 3, "accepted": 1, "edited": 1, "rejected": 1, "edit_failed": 0, "unreviewed": 0}
    settings = {"min_test_urgent": 1, "unreviewed_policy": "accept_valid", "target_total": 4, "near_dup_threshold": 0.7}
    card = render_card(metas, answers, review, NOTES, settings, ["urgent symptoms", "pediatric", "other"])
    assert "| urgent symptoms | 1 | 0 | 1 | 2 |" in card and "| **total** | 2 | 1 | 1 | 4 |" in card
    assert "| test | 1 | 1 | 100.0% |" in card and "| all | 2 | 4 | 50.0% |" in card
    assert "min 2, median 3.5, mean 3.5, max 5 words" in card and "](answer_lengths.png)" in card
    assert "| accepted by the reviewer | 1 |" in card and "| edited by the reviewer (re-validated) | 1 |" in card
    assert "| rejected by the reviewer | 1 |" in card and "3 from the stratified sample, 1 topped up" in card
    assert "| `icliniq_2k_chat.jsonl` | 2 | `Om-Tiwari/GraphRAG-chatDoctor` |" in card
    assert "| `mystery` | 1 | - | not found in the source notes |" in card
