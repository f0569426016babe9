"""Stage 3 merge: structure checks, each review decision, targets and top-up, the whole stage, sbatch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from healthai.config.filtering import FilterConfig
from healthai.data.merging import Item, Rejection, category_targets, check_record, decide, fill_to_targets
from healthai.data.review import ReviewRow, parse_review_csv, write_review
from healthai.data.validation import validate_answer
from merge_helpers import CATEGORIES, CLOSING, REPO, URGENT, make_record, make_records, read_jsonl, write_jsonl

FILTER = FilterConfig()


def _validate(answer: str, record: dict) -> dict:
    return validate_answer(answer, record["meta"]["original_answer"], record["meta"]["is_urgent"], FILTER)


def _item(i: int = 1, urgent: bool = False, answer: str | None = None, category: str = "other") -> Item:
    return Item(make_record(f"x{i}", f"question {i}", "urgent symptoms" if urgent else category, urgent, i,
                            answer=answer), "sample")


@pytest.mark.parametrize("mutate, reason", [
    (lambda r: r["messages"].pop(0), "bad_messages"),                                  # no system message
    (lambda r: r["messages"][1].update(role="assistant"), "bad_messages"),             # roles out of order
    (lambda r: r["messages"][2].update(content="  "), "bad_messages"),                 # empty answer
    (lambda r: r["meta"].update(is_urgent="yes"), "bad_meta"),                         # not a bool
    (lambda r: r["meta"].update(category="cardiology"), "unknown_category"),
])
def test_check_record_names_what_is_wrong(mutate, reason):
    record = make_record("x", "q", "other", False)
    assert check_record(record, CATEGORIES) is None
    mutate(record)
    assert check_record(record, CATEGORIES)[0] == reason


def test_each_decision_kind():
    row = lambda d, edited="", note="": ReviewRow("x1", "other", False, "q", "a", decision=d, edited_answer=edited,
                                                  note=note)
    item = _item()
    # reject: out, with the reviewer's note
    out = decide(item, row("reject", note="vague"), True, "accept_valid", _validate)
    assert isinstance(out, Rejection) and out.reason == "review_rejected" and "vague" in out.detail
    # edit that passes every rule: the new answer replaces the assistant message
    new = f"Drink water often and rest at home. {CLOSING}"
    out = decide(item, row("edit", new), True, "accept_valid", _validate)
    assert isinstance(out, Item) and out.review == "edited" and out.record["messages"][2]["content"] == new
    assert item.record["messages"][2]["content"] != new  # the input record is not modified
    # edit that fails the stage-2 validator (a dosage, no closing sentence): rejected, the edit kept for the record
    out = decide(item, row("edit", "Take 400 mg every 6 hours."), True, "accept_valid", _validate)
    assert isinstance(out, Rejection) and out.reason == "edit_failed_validation"
    assert "closing_sentence" in out.detail and "no_dosage" in out.detail
    # accept: kept; but an accepted answer that fails validation is not
    assert decide(item, row("accept"), True, "accept_valid", _validate).review == "accepted"
    bad = _item(2, answer="Take rest.")
    out = decide(bad, row("accept"), True, "accept_valid", _validate)
    assert isinstance(out, Rejection) and out.reason == "failed_validation" and "accepted in review" in out.detail
    # no decision or skip: the policy
    assert decide(item, None, True, "accept_valid", _validate).review == "unreviewed"
    assert decide(item, row("skip"), True, "accept_valid", _validate).review == "unreviewed"
    assert decide(item, None, True, "reject", _validate).reason == "unreviewed"
    assert decide(bad, None, True, "accept_valid", _validate).reason == "failed_validation"
    # never selected: kept when valid, whatever the policy
    assert decide(item, None, False, "reject", _validate).review == "not_selected"


def test_workshop_targets_sum_to_451():
    weights = {c.name: c.weight for c in FILTER.categories}
    targets = category_targets(451, weights)
    assert sum(targets.values()) == 451
    assert targets["mild symptoms"] == 180 and targets["urgent symptoms"] == 113 and targets["other"] == 9


def test_fill_trims_unreviewed_first_and_tops_up_from_reserve():
    kept = [_item(i, category="other") for i in range(5)]
    kept[3].review, kept[4].review = "edited", "accepted"
    kept += [_item(10 + i, category="pediatric") for i in range(1)]
    reserve = [Item(make_record(f"r{i}", "q", "pediatric", False), "reserve") for i in range(4)]
    reserve.append(Item(make_record("r9", "q", "chronic", False), "reserve"))
    fill = fill_to_targets(kept, reserve, {"other": 2, "pediatric": 3, "chronic": 0}, trim=True, seed=1)
    final_ids = {it.id for it in fill.final}
    assert {"x3", "x4"} <= final_ids  # reviewed examples survive the trim
    assert sum(it.category == "other" for it in fill.final) == 2 and len(fill.surplus) == 3
    assert sum(it.origin == "reserve" for it in fill.final) == 2 and fill.topped_up == {"pediatric": 2}
    assert len(fill.unused_reserve) == 3 and not fill.shortfall
    # a category with no reserve left: the gap is reported and filled from other categories
    fill = fill_to_targets(kept, [], {"other": 2, "pediatric": 3}, trim=True, seed=1)
    assert fill.shortfall == {"pediatric": 2} and len(fill.final) == 5


# -- the whole stage -----------------------------------------------------------------------------
SMALL = ["--set", "merge.review_size=12", "--set", "merge.target_total=50", "--set", "merge.min_test_urgent=6"]


def _inputs(project: Path) -> None:
    sample = make_records(60)
    sample[5]["messages"][2]["content"] = "Take 500 mg of it."         # fails validation (dosage, no closing)
    sample.append({"id": "nomsg", "meta": {}})                         # missing field -> bad line
    paraphrase = json.loads(json.dumps(sample[1]))
    paraphrase["id"] = "s-dup"                                          # a near-duplicate question
    paraphrase["messages"][1]["content"] += " Thank you."
    sample.append(paraphrase)
    write_jsonl(project / "2.filter" / "rewritten.jsonl", sample)
    with open(project / "2.filter" / "rewritten.jsonl", "a") as fh:
        fh.write('{"id": "broken", "messages": [\n')                    # malformed JSON line
    write_jsonl(project / "2.filter" / "reserve.jsonl", make_records(30, prefix="r", start=700))


def _merge(project: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HEALTHAI_PROJECT_DIR=str(project))
    return subprocess.run([sys.executable, str(REPO / "3.Merge" / "merge_dataset.py"), *SMALL,
                           "--set", "project.max_bad_fraction=0.1", *extra],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_stage_end_to_end_with_review_decisions(tmp_path):
    project = tmp_path / "p"
    _inputs(project)
    first = _merge(project)
    assert first.returncode == 0, first.stderr
    out = project / "3.merge"
    assert "unreviewed_policy=accept_valid: 12 examples nobody reviewed were accepted" in first.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["in"] == 63 + 30 and counts["kept"] == 50
    assert counts["in"] == counts["kept"] + counts["rejected"] + counts["unused_reserve"]
    rejected = read_jsonl(out / "rejected.jsonl")
    reasons = Counter(r["reason"] for r in rejected)
    assert manifest["stats"]["rejected_by_reason"]["malformed_json"] == 1
    assert reasons["malformed_json"] == 1 and reasons["missing_field"] == 1 and reasons["failed_validation"] == 1
    # the split files carry only messages; the sidecars are line-aligned
    ids = {}
    for split in ("train", "val", "test"):
        data, meta = read_jsonl(out / f"{split}.jsonl"), read_jsonl(out / f"{split}.meta.jsonl")
        assert len(data) == len(meta)
        for d, m in zip(data, meta):
            assert list(d) == ["messages"] and [x["role"] for x in d["messages"]] == ["system", "user", "assistant"]
            assert m["split"] == split and {"id", "category", "is_urgent", "source"} <= set(m)
            ids[m["id"]] = (split, m["group"])
    assert sum(1 for s, _ in ids.values() if s == "test") >= 1
    assert sum(m["is_urgent"] for m in read_jsonl(out / "test.meta.jsonl")) >= 6
    assert ids["s-dup"] == ids["s0001"]  # the near-duplicate pair is one group, in one split
    assert (out / "answer_lengths.png").read_bytes().startswith(b"\x89PNG")
    card = (out / "dataset_card.md").read_text()
    assert "| **total** |" in card and "icliniq" in card and "| skipped or not reviewed | 12 |" in card
    review_csv = out / "review" / "review.csv"
    assert len(parse_review_csv(review_csv)) == 12 and (out / "review" / "review.jsonl").is_file()
    assert "up to date" in _merge(project).stdout  # a rerun is a no-op

    # a reviewer decides three rows (as in a spreadsheet), then the stage is rerun
    rows = parse_review_csv(review_csv)
    rows[0].decision, rows[0].note = "reject", "not a question"
    rows[1].decision = "edit"
    rows[1].edited_answer = (URGENT + " " if rows[1].is_urgent else "") + f"Rest and drink water. {CLOSING}"
    rows[2].decision, rows[2].edited_answer = "edit", "Take 2 tablets twice daily."
    rows[3].decision = "accept"
    write_review(review_csv, rows)
    second = _merge(project)
    assert second.returncode == 0, second.stderr
    rejected = {r["id"]: r for r in read_jsonl(out / "rejected.jsonl")}
    assert rejected[rows[0].id]["reason"] == "review_rejected"
    assert rejected[rows[2].id]["reason"] == "edit_failed_validation"
    metas = {m["id"]: m for s in ("train", "val", "test") for m in read_jsonl(out / f"{s}.meta.jsonl")}
    assert rows[0].id not in metas and metas[rows[1].id]["review"] == "edited" and metas[rows[3].id]["review"] == "accepted"
    split = metas[rows[1].id]["split"]
    line = [m["id"] for m in read_jsonl(out / f"{split}.meta.jsonl")].index(rows[1].id)
    assert read_jsonl(out / f"{split}.jsonl")[line]["messages"][2]["content"] == rows[1].edited_answer
    assert len(metas) == 50  # topped up again to the target
    manifest = json.loads((out / "manifest.json").read_text())
    assert str(review_csv) in [i["path"] for i in manifest["inputs"]]
    assert manifest["stats"]["review"]["edited"] == 1 and manifest["stats"]["review"]["edit_failed"] == 1
    assert [r.decision for r in parse_review_csv(review_csv)][:4] == ["reject", "edit", "edit", "accept"]  # kept
    card = (out / "dataset_card.md").read_text()
    assert "| rejected by the reviewer | 1 |" in card and "| edited, but the edit failed validation (left out) | 1 |" in card
    assert "up to date" in _merge(project).stdout

    # a malformed row: one line with file and line, exit 1, every output unchanged
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    text = review_csv.read_text()
    review_csv.write_text(text.replace(",accept,", ",approve,", 1))
    broken = _merge(project)
    assert broken.returncode == 1 and "review.csv:" in broken.stderr and "unknown decision 'approve'" in broken.stderr
    line_no = int(broken.stderr.split("review.csv:")[1].split(":")[0])
    assert "approve" in list(csv.reader(review_csv.read_text().splitlines(True)[line_no - 1:]))[0]
    snapshot[review_csv] = review_csv.read_bytes()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot


@pytest.mark.slow
def test_reject_policy_and_missing_input(tmp_path):
    project = tmp_path / "p"
    missing = _merge(project)
    assert missing.returncode == 1 and "rewritten.jsonl" in missing.stderr and "Traceback" not in missing.stderr
    write_jsonl(project / "2.filter" / "rewritten.jsonl", make_records(40))
    write_jsonl(project / "2.filter" / "reserve.jsonl", make_records(20, prefix="r", start=900))
    run = _merge(project, "--set", "merge.unreviewed_policy=reject", "--set", "merge.target_total=40")
    assert run.returncode == 0, run.stderr
    reasons = Counter(r["reason"] for r in read_jsonl(project / "3.merge" / "rejected.jsonl"))
    assert reasons["unreviewed"] == 12 and "12 examples with no decision were left out" in run.stdout
    counts = json.loads((project / "3.merge" / "manifest.json").read_text())["counts"]
    assert counts["in"] == 60 and counts["kept"] == 40 and counts["unused_reserve"] + counts["rejected"] == 20


@pytest.mark.slow
@pytest.mark.slurm
def test_stage_through_sbatch(slurm_cluster, tmp_path):
    from slurm_helpers import sbatch_and_wait, slurm_env

    project = tmp_path / "p"
    write_jsonl(project / "2.filter" / "rewritten.jsonl", make_records(60))
    write_jsonl(project / "2.filter" / "reserve.jsonl", make_records(20, prefix="r", start=900))
    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(project)})
    job = sbatch_and_wait(REPO / "3.Merge" / "run-merge.sh", args=SMALL, cwd=REPO / "3.Merge", env=env, timeout=600)
    assert job.state == "COMPLETED" and job.exit_code == 0, job.log_text
    assert "--- MERGE STATISTICS ---" in job.log_text and "final examples: 50" in job.log_text
    assert len(read_jsonl(project / "3.merge" / "train.jsonl")) + len(read_jsonl(project / "3.merge" / "val.jsonl")) \
        + len(read_jsonl(project / "3.merge" / "test.jsonl")) == 50
    assert job.log_path is not None and job.log_path.name.startswith("healthai-merge-")
    job.log_path.unlink()
