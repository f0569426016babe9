"""Stage 1 end to end: statistics block, conservation, outputs, review round trip, CLI, real data, sbatch."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from healthai.data import curation
from healthai.data.cleaning import compile_rules, residual_boilerplate
from healthai.config import load_config
from healthai.data.curation import curate, format_statistics, read_decisions, sample_for_review, statistics
from healthai.errors import InputError, StageError

REPO = Path(__file__).resolve().parents[2]
FIX = Path(__file__).parents[1] / "fixtures" / "curation"
SCRIPT = REPO / "1.Initial-curation" / "curate_dataset.py"
SMALL = [str(FIX / "mixed_evals.jsonl"), str(FIX / "hcm_sample.jsonl"), str(FIX / "chatdoctor_small.json")]
# Workshop phrases and the real boilerplate named in the issue: none may survive in a kept answer.
FORBIDDEN = re.compile(r"hope this helps|hope this answers|have a nice day|hope i have answered|wish you good health|"
                       r"chat ?doctor|for more information,? consult|thanks? (you )?for (your|the) query|"
                       r"thanks? (you )?for using|^\s*(hi|hello|dear)\b", re.I)


def run_stage(project_dir, inputs=SMALL, overrides=(), **kw):
    # the small fixtures are mostly bad-input cases: tolerate them (the limit has its own test)
    cfg = load_config(overrides=["project.max_bad_fraction=0.5", *overrides])
    return cfg, curate(cfg, inputs=list(inputs), show_progress=False, **kw)


def read(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_statistics_block_is_exactly_the_workshop_format():
    block = format_statistics(statistics(100, 80, 5, 15, 30, 40))
    assert block == ("--- CURATION STATISTICS ---\n"
                     "Total lines processed:      100\n"
                     "Total examples saved:       80\n"
                     "Duplicates removed:         5\n"
                     "Low quality removed:        15\n"
                     "Text cleaned:               30\n"
                     "Phrases cleaned:            40\n"
                     "Retention rate:             80.00%")


def test_small_run_outputs_add_up(project_dir, capsys):
    _, stats = run_stage(project_dir, overrides=["curation.min_answer_words=5"])
    out = project_dir / "1.curation"
    for name in ("curated.jsonl", "rejected.jsonl", "stats.json", "review_sample.csv", "review_sample.jsonl",
                 "manifest.json"):
        assert (out / name).is_file(), name
    kept, rejected = read(out / "curated.jsonl"), read(out / "rejected.jsonl")
    # 5 + 4 + 3 lines/records in, every one kept or rejected
    assert stats["total_lines_processed"] == 12 == len(kept) + len(rejected)
    assert stats["total_examples_saved"] == len(kept)
    assert stats["duplicates_removed"] + stats["low_quality_removed"] == len(rejected)
    assert json.loads((out / "stats.json").read_text())["total_examples_saved"] == len(kept)
    printed = capsys.readouterr().out
    assert "--- CURATION STATISTICS ---" in printed and f"Total examples saved:       {len(kept)}" in printed
    reasons = {(r["reason"], r.get("source_line")) for r in rejected}
    assert ("malformed_json", 4) in reasons and ("not_an_object", 5) in reasons and ("missing_field", 4) in reasons
    for entry in kept:
        assert [m["role"] for m in entry["messages"]] == ["user", "assistant"]
        assert {"source", "source_file", "source_line"} <= set(entry["meta"])
        assert not FORBIDDEN.search(entry["messages"][1]["content"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"in": 12, "kept": len(kept), "rejected": len(rejected)}


def test_rerun_is_a_no_op_and_force_redoes(project_dir, capsys):
    run_stage(project_dir)
    mtime = (project_dir / "1.curation" / "curated.jsonl").stat().st_mtime_ns
    run_stage(project_dir)
    assert "up to date" in capsys.readouterr().out
    assert (project_dir / "1.curation" / "curated.jsonl").stat().st_mtime_ns == mtime
    run_stage(project_dir, force=True)
    assert (project_dir / "1.curation" / "curated.jsonl").stat().st_mtime_ns != mtime


def test_duplicates_name_the_kept_record(project_dir, tmp_path):
    src = [json.loads(line) for line in open(FIX / "mixed_evals.jsonl").read().splitlines()[:3]]  # the real lines
    path = tmp_path / "dups.jsonl"
    rec = src[0]
    near = json.loads(json.dumps(rec))
    near["chat"][0]["ideal"] = rec["chat"][0]["ideal"].replace("viral infection", "virus infection")
    path.write_text("\n".join(json.dumps(r) for r in (rec, rec, near, src[1])) + "\n")
    _, stats = run_stage(project_dir, inputs=[str(path)], overrides=["curation.min_answer_words=5"])
    kept = read(project_dir / "1.curation" / "curated.jsonl")
    rejected = read(project_dir / "1.curation" / "rejected.jsonl")
    dups = [r for r in rejected if r["reason"].endswith("_duplicate")]
    assert stats["duplicates_removed"] == 2 and kept[0]["meta"]["source_line"] == 1
    assert [(r["reason"], r["source_line"]) for r in dups] == [("exact_duplicate", 2), ("near_duplicate", 3)]
    assert all(r["duplicate_of"] == kept[0]["id"] for r in dups)


def test_worker_pool_gives_byte_identical_outputs(tmp_path, monkeypatch):
    # 60 real iCliniq lines with an exact duplicate and a malformed line inside, and the same file given twice
    # (duplicate_input): with batches of 7 records the pool runs many tasks; order and outputs must not change.
    lines = (REPO / "data" / "raw" / "icliniq_2k_chat.jsonl").read_text(encoding="utf-8").splitlines()[:60]
    path = tmp_path / "sixty.jsonl"
    path.write_text("\n".join(lines[:30] + [lines[3], "{not json"] + lines[30:]) + "\n", encoding="utf-8")
    monkeypatch.setattr(curation, "BATCH_RECORDS", 7)
    started = []
    real_submit = curation.Runner.submit

    def submit(self, records, full):
        handle = real_submit(self, records, full)
        started.append(self.pool is not None)
        return handle

    monkeypatch.setattr(curation.Runner, "submit", submit)
    outputs = {}
    for workers in (1, 2):
        monkeypatch.setenv("HEALTHAI_PROJECT_DIR", str(tmp_path / f"w{workers}"))
        _, stats = run_stage(None, inputs=[str(path), str(path)], overrides=[f"curation.workers={workers}"])
        out = tmp_path / f"w{workers}" / "1.curation"
        outputs[workers] = [(out / name).read_bytes() for name in ("curated.jsonl", "rejected.jsonl",
                                                                    "review_sample.jsonl")]
        assert stats["rejected_by_reason"]["duplicate_input"] == 61 and stats["dedup"]["exact"] == 1
    assert any(started) and not all(started)  # workers=2 used the pool, workers=1 did not
    assert outputs[1] == outputs[2]


def _die(records):  # a worker process killed mid-run (e.g. by the OOM killer)
    os._exit(3)


def test_a_dying_worker_fails_the_stage_instead_of_hanging(tmp_path, monkeypatch):
    lines = (REPO / "data" / "raw" / "icliniq_2k_chat.jsonl").read_text(encoding="utf-8").splitlines()[:20]
    path = tmp_path / "twenty.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(curation, "BATCH_RECORDS", 5)
    monkeypatch.setattr(curation, "_work", _die)
    monkeypatch.setenv("HEALTHAI_PROJECT_DIR", str(tmp_path / "project"))
    with pytest.raises(StageError, match="worker process died"):
        run_stage(None, inputs=[str(path)], overrides=["curation.workers=2"])


def test_review_sample_and_marked_file_round_trip(project_dir):
    overrides = ["curation.min_answer_words=5", "curation.review_sample_size=4"]
    run_stage(project_dir, overrides=overrides)
    out = project_dir / "1.curation"
    rows = list(csv.DictReader(open(out / "review_sample.csv", encoding="utf-8")))
    assert len(rows) == 4 and len({r["source"] for r in rows}) == 3        # stratified: every source present
    assert read(out / "review_sample.jsonl")[0]["id"] == rows[0]["id"]
    rows[0]["decision"], rows[1]["decision"] = "reject", "edit"
    rows[1]["edited_answer"] = "Rest, drink fluids and see a doctor if the fever lasts more than three days."
    with open(out / "review_marked.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _, stats = run_stage(project_dir, overrides=overrides)              # the marked file is a new input
    kept = {e["id"]: e for e in read(out / "curated.jsonl")}
    assert rows[0]["id"] not in kept
    assert kept[rows[1]["id"]]["messages"][1]["content"] == rows[1]["edited_answer"]
    assert kept[rows[1]["id"]]["meta"]["review"] == "edit"
    assert any(r["reason"] == "review_rejected" and r["id"] == rows[0]["id"] for r in read(out / "rejected.jsonl"))
    assert stats["review"]["applied"] == {"reject": 1, "edit": 1}
    assert rows[0]["id"] not in {r["id"] for r in read(out / "review_sample.jsonl")}   # reviewed: not sampled again


def test_bad_decision_is_a_one_line_error_with_file_and_line(tmp_path):
    path = tmp_path / "marked.csv"
    path.write_text("id,decision,edited_answer\na,accept,\nb,maybe,\n")
    with pytest.raises(InputError, match=r"marked.csv:3: unknown decision 'maybe'"):
        read_decisions(path)


def test_sample_is_stratified_and_deterministic():
    entries = [{"id": f"{s}{i}", "meta": {"source": s}} for s, n in (("a", 90), ("b", 9), ("c", 1)) for i in range(n)]
    one = sample_for_review(entries, 10, 1)
    assert [e["id"] for e in one] == [e["id"] for e in sample_for_review(entries, 10, 1)]
    counts = {s: sum(e["meta"]["source"] == s for e in one) for s in "abc"}
    assert counts == {"a": 7, "b": 2, "c": 1}      # one each, then largest remainders of the shares


def cli(project_dir, *args):
    env = dict(os.environ, HEALTHAI_PROJECT_DIR=str(project_dir))
    return subprocess.run([sys.executable, str(SCRIPT), "--no-progress", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_missing_input_is_one_line_exit_1(project_dir):
    res = cli(project_dir, "--input", str(FIX / "missing.jsonl"))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1] == f"error: [curation] {FIX / 'missing.jsonl'}: input file not found"
    assert "Traceback" not in res.stderr


def test_cli_csv_input_with_columns_and_bad_config(project_dir):
    res = cli(project_dir, "--input", str(FIX / "qa.csv"), "--set", "curation.inputs=[]")
    assert res.returncode == 1 and "column 'question' not in the header" in res.stderr
    res = cli(project_dir, "--set", "curation.min_answer_words=0")
    assert res.returncode == 2 and "min_answer_words" in res.stderr


def test_too_many_bad_lines_fails_the_stage(project_dir, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "Q one two three four five", "output": "' + "word " * 30 + '"}\n' + "{broken\n" * 3)
    res = cli(project_dir, "--input", str(path))
    assert res.returncode == 1 and "more than max_bad_fraction" in res.stderr and "bad.jsonl:2" in res.stderr


@pytest.mark.slow
def test_real_bundled_inputs_leave_no_boilerplate(project_dir):
    """The whole stage on the ~7.5k bundled real records: no listed phrase remains; figures add up."""
    res = cli(project_dir)
    assert res.returncode == 0, res.stderr
    out = project_dir / "1.curation"
    stats = json.loads((out / "stats.json").read_text())
    kept = read(out / "curated.jsonl")
    assert stats["total_lines_processed"] == 2000 + 82 + 5452
    assert stats["total_examples_saved"] + stats["duplicates_removed"] + stats["low_quality_removed"] == 7534
    assert stats["total_examples_saved"] == len(kept) > 5000
    rules = compile_rules(load_config().curation)
    for entry in kept:
        answer = entry["messages"][1]["content"]
        assert not FORBIDDEN.search(answer), (entry["id"], answer)
        assert not residual_boilerplate(answer, rules), (entry["id"], answer)
    assert "Retention rate:" in res.stdout


@pytest.mark.slurm
@pytest.mark.slow
def test_run_curation_sh_through_sbatch(slurm_cluster, tmp_path):
    """The real wrapper, Deucalion #SBATCH lines unchanged, on the local cluster with a small --input."""
    from slurm_helpers import sbatch_and_wait, slurm_env

    project = tmp_path / "project"
    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(project)})
    stage = REPO / "1.Initial-curation"
    result = sbatch_and_wait(stage / "run-curation.sh", args=("--input", str(FIX / "hcm_sample.jsonl"),
                                                              "--set", "curation.min_answer_words=5",
                                                              "--set", "project.max_bad_fraction=0.5"),
                             cwd=stage, env=env, timeout=300)
    try:
        assert result.state == "COMPLETED" and result.exit_code == 0, result.log_text
        assert "--- CURATION STATISTICS ---" in result.log_text
        assert "Total lines processed:      4" in result.log_text
        stats = json.loads((project / "1.curation" / "stats.json").read_text())
        assert stats["total_examples_saved"] + stats["low_quality_removed"] + stats["duplicates_removed"] == 4
    finally:
        if result.log_path:
            result.log_path.unlink(missing_ok=True)
