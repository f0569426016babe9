"""Metrics over hand-made answer tables, Wilson intervals, the report writers (healthai.model.evaluation)."""

from __future__ import annotations

import json

import pytest

from healthai.config.filtering import FilterConfig
from healthai.model.evaluation import confusion, ends_with_closing, first_token_summary, lcs_length, plot_comparison, render_report, report_data, rouge_l, score_answer, starts_with_prefix, summarize, wilson_interval, worst_cases

CFG = FilterConfig()
CLOSE = CFG.closing_sentence
PREFIX = CFG.urgent_prefix

# Question of a real line (icliniq_2k_chat.jsonl line 1, shortened) and hand-made answers.
REAL_Q = "I had mumps five months ago and after that, I started to have an infection in my left testes."
REF = f"See a urologist for an examination of the testis and a semen test. {CLOSE}"

# A fine-tuned-style table: each row covers one case, said in its comment.
FT_ROWS = [
    # urgent, prefix + closing: a true positive, well formed
    {"id": "u1", "question": "Chest pain to my left arm.", "is_urgent": True, "reference": f"{PREFIX} Call 112. {CLOSE}",
     "answer": f"{PREFIX} Call emergency services now. {CLOSE}"},
    # urgent, prefix missing: the dangerous miss (worst case first)
    {"id": "u2", "question": "Sudden slurred speech.", "is_urgent": True, "reference": f"{PREFIX} {CLOSE}",
     "answer": f"Rest and drink water. {CLOSE}"},
    # not urgent, prefix given: over-triage
    {"id": "n1", "question": REAL_Q, "is_urgent": False, "reference": REF,
     "answer": f"{PREFIX} See a urologist. {CLOSE}"},
    # not urgent, identical to the reference: similarity 1, true negative
    {"id": "n2", "question": REAL_Q, "is_urgent": False, "reference": REF, "answer": REF},
    # not urgent, a dosage leak and a forbidden phrase, no closing sentence, 6 sentences
    {"id": "n3", "question": "Headache.", "is_urgent": False, "reference": REF,
     "answer": "Don't worry. Take 500 mg twice daily. Rest. Sleep. Eat. Hope this helps."},
]


def scored(rows=FT_ROWS):
    return [score_answer(r, CFG) for r in rows]


def test_closing_and_prefix_are_exact():
    assert ends_with_closing(f"Rest. {CLOSE}  \n", CLOSE)
    assert not ends_with_closing(f"Rest. {CLOSE[:-1]}", CLOSE)             # missing final period
    assert not ends_with_closing(f"{CLOSE} Thanks.", CLOSE)                # not at the end
    assert not ends_with_closing("Rest. please consult a doctor for more personalized medical advice.", CLOSE)
    assert starts_with_prefix(f"  {PREFIX} Go now.", PREFIX)
    assert not starts_with_prefix(f"You should {PREFIX.lower()}", PREFIX)


def test_rouge_l_on_known_pairs():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("alpha beta", "gamma delta") == 0.0
    # LCS "the cat the mat" = 4 of 6 candidate and 6 reference tokens -> P = R = 2/3
    assert rouge_l("the cat saw the red mat", "the cat sat on the mat") == pytest.approx(2 / 3)
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4   # textbook example
    assert rouge_l("Rest, DRINK water!", "rest drink water") == 1.0   # case and punctuation ignored


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10, 0.95)          # standard table value: 0.490 .. 0.943
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    lo, hi = wilson_interval(0, 36)                # 0/n still has an upper bound above 0
    assert lo == 0.0 and 0.08 < hi < 0.11
    assert wilson_interval(5, 5)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_score_answer_uses_stage2_detectors():
    s = {r["id"]: r for r in scored()}
    assert s["u1"]["prefix"] and s["u1"]["closing"] and s["u1"]["sentences_ok"]
    assert s["n3"]["dosages"] and "500 mg" in s["n3"]["dosages"]
    assert {p.lower() for p in s["n3"]["forbidden"]} == {"don't worry", "hope this helps"}
    assert s["n3"]["sentences"] == 6 and not s["n3"]["sentences_ok"] and not s["n3"]["closing"]
    assert s["n2"]["similarity"] == 1.0
    assert s["n3"]["words"] == 13


def test_summarize_rates_and_confusion():
    summary = summarize(scored(), ci_level=0.95)
    assert summary["n"] == 5
    assert summary["closing_rate"] == pytest.approx(4 / 5)
    assert summary["urgent_recall"]["k"] == 1 and summary["urgent_recall"]["n"] == 2
    assert summary["urgent_recall"]["rate"] == 0.5
    assert summary["over_triage"]["k"] == 1 and summary["over_triage"]["n"] == 3
    assert summary["forbidden_rate"] == pytest.approx(1 / 5)
    assert summary["dosage_leak_rate"] == pytest.approx(1 / 5)
    assert summary["sentences_ok_rate"] == pytest.approx(4 / 5)
    assert summary["confusion"] == {"tp": 1, "fn": 1, "fp": 1, "tn": 2}
    lo, hi = summary["urgent_recall"]["ci"]
    assert lo < 0.5 < hi
    json.dumps(summary)   # report.json must be able to hold it


def test_no_urgent_items_gives_undefined_recall_not_zero():
    rows = [r for r in FT_ROWS if not r["is_urgent"]]
    summary = summarize(scored(rows))
    assert summary["urgent_recall"]["rate"] is None and summary["urgent_recall"]["n"] == 0
    assert summarize([])["closing_rate"] is None


def test_worst_cases_put_missed_urgent_first():
    worst = worst_cases(scored(), 3)
    assert [w["id"] for w in worst] == ["u2", "n3", "n1"]
    assert "missed urgent prefix" in worst[0]["problems"]
    assert any(p.startswith("dosage") for p in worst[1]["problems"])
    assert worst[2]["problems"] == ["over-triage"]


def test_confusion_counts_every_item_once():
    c = confusion(scored())
    assert sum(c.values()) == len(FT_ROWS)


def test_first_token_summary_splits_urgent():
    out = first_token_summary([0.9, 0.7, 0.1, 0.3], [True, True, False, False])
    assert out["urgent_mean"] == pytest.approx(0.8) and out["non_urgent_mean"] == pytest.approx(0.2)
    assert first_token_summary([0.5], [False])["urgent_mean"] is None
    assert out["auc"] == 1.0  # every urgent prompt above every non-urgent one
    assert first_token_summary([0.2, 0.2, 0.9], [True, False, False])["auc"] == pytest.approx(0.25)
    assert first_token_summary([0.5], [False])["auc"] is None


def test_report_files(tmp_path):
    base_rows = [{**r, "answer": "I think you should rest, it is probably nothing."} for r in FT_ROWS]
    summaries = {"base": summarize(scored(base_rows)), "ft": summarize(scored())}
    prompts = {"base": [{"question": "Q1 | pipe", "answer": "base answer"}],
               "ft": [{"question": "Q1 | pipe", "answer": f"ft answer. {CLOSE}"}]}
    worst = {name: worst_cases(scored(rows), 2) for name, rows in (("base", base_rows), ("ft", FT_ROWS))}
    md = render_report(summaries, prompts, worst, {"split": "test", "items": 5},
                       extra_sections=[("Later addition", "text of issue 14")])
    assert "| ends with the closing sentence | 0.0% | 80.0% |" in md
    assert "50.0% (1/2; CI" in md
    assert "**ft:** ft answer." in md and "### 1. Q1 | pipe" in md
    assert "## Worst cases" in md and "missed urgent prefix" in md
    assert md.rstrip().endswith("text of issue 14")
    data = report_data(summaries, prompts, worst, {"split": "test"})
    assert data["comparison"]["closing_rate"] == {"base": 0.0, "ft": pytest.approx(0.8)}
    json.dumps(data)
    png = plot_comparison(summaries, tmp_path / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
