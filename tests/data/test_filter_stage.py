"""Stage 2 end to end on the fixture (real iCliniq lines + edge cases), the CLI, and the sbatch wrapper."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from healthai.config import REPO_DIR, load_config
from healthai.data.filter_stage import run_filter
from healthai.pipeline.io import read_jsonl

FIXTURE = REPO_DIR / "tests" / "fixtures" / "filter" / "curated_sample.jsonl"
SMALL = ["filter.sample_size=10", "filter.reserve_size=5"]


def load_entry():
    spec = importlib.util.spec_from_file_location("filter_dataset", REPO_DIR / "2.Filter" / "filter_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def place_input(project: Path) -> Path:
    """Put the fixture where stage 1 writes curated.jsonl."""
    dst = project / "1.curation" / "curated.jsonl"
    dst.parent.mkdir(parents=True)
    dst.write_bytes(FIXTURE.read_bytes())
    return dst


def test_stage_on_fixture(project_dir, capsys):
    place_input(project_dir)
    cfg = load_config(overrides=SMALL + ["filter.backend=rules"])
    manifest = run_filter(cfg, progress=False)
    out = project_dir / "2.filter"
    printed = capsys.readouterr().out
    assert "--- FILTER STATISTICS ---" in printed and "--- SAMPLING (target vs got) ---" in printed

    counts = manifest["counts"]
    assert counts == {"in": 52, "kept": 10, "rejected": 20, "reserve": 5, "not_sampled": 17}
    rejected = read_jsonl(out / "rejected.jsonl")
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert reasons["edge-dosage"] == "dosage" and reasons["edge-short"] == "too_short"
    assert reasons["edge-long"] == "too_long" and reasons["edge-three-turns"] == "bad_structure"
    assert reasons["edge-empty-answer"] == "bad_structure" and reasons["edge-roles-swapped"] == "bad_structure"
    assert sorted(r["reason"] for r in rejected if r["reason"] in ("malformed_json", "not_an_object",
                                                                   "duplicate_id")) == \
        ["duplicate_id", "malformed_json", "not_an_object"]
    assert all({"id", "reason", "detail", "record"} <= set(r) for r in rejected)

    sample = read_jsonl(out / "rewritten.jsonl")
    reserve = read_jsonl(out / "reserve.jsonl")
    assert len(sample) == 10 and len(reserve) == 5
    assert not {r["id"] for r in sample} & {r["id"] for r in reserve}
    for r in sample + reserve:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["system", "user", "assistant"] and r["messages"][0]["content"] == cfg.filter.assistant_system
        answer = r["messages"][2]["content"]
        assert answer.endswith(cfg.filter.closing_sentence)
        assert answer.startswith(cfg.filter.urgent_prefix) == r["meta"]["is_urgent"]
        meta = r["meta"]
        assert {"category", "is_urgent", "backend", "original_answer", "source", "checks"} <= set(meta)
        assert meta["backend"] == "rules" and all(meta["checks"].values())
    by_id = {r["id"]: r for r in sample + reserve + read_jsonl(out / "pool.jsonl")}
    assert "edge-urgent" in by_id  # the only urgent edge case was drawn or pooled, never lost

    sampling = json.loads((out / "sampling.json").read_text())
    assert sum(row["got"] for row in sampling["categories"]) == 10
    assert sum(row["target"] for row in sampling["categories"]) == 10
    validation = json.loads((out / "validation.json").read_text())
    assert validation["pass_rates"]["rules"]["closing_sentence"]["rate"] == 1.0
    assert (out / "sampling.png").stat().st_size > 1000
    assert {Path(o["path"]).name for o in manifest["outputs"]} >= {
        "rewritten.jsonl", "reserve.jsonl", "rejected.jsonl", "pool.jsonl", "sampling.json", "validation.json",
        "urgent_disagreements.jsonl", "sampling.png", "config.yaml"}

    # rerun: a no-op; --force: the same bytes (seeded, deterministic)
    before = (out / "rewritten.jsonl").read_bytes()
    again = run_filter(cfg, progress=False)
    assert again["fingerprint"] == manifest["fingerprint"] and "up to date" in capsys.readouterr().out
    run_filter(cfg, force=True, progress=False)
    assert (out / "rewritten.jsonl").read_bytes() == before


def test_forbidden_phrase_removed_in_output(project_dir):
    place_input(project_dir)
    cfg = load_config(overrides=["filter.sample_size=40", "filter.reserve_size=0"])
    run_filter(cfg, progress=False)
    rows = {r["id"]: r for r in read_jsonl(project_dir / "2.filter" / "rewritten.jsonl")}
    edge = rows["edge-forbidden"]
    assert edge["meta"]["category"] == "pediatric"                        # "4 year old son"
    assert "worry" not in edge["messages"][2]["content"].lower()
    assert "Don't worry" in edge["meta"]["original_answer"]
    assert rows["edge-urgent"]["meta"]["is_urgent"] and rows["edge-urgent"]["meta"]["category"] == "urgent symptoms"
    assert not rows["edge-negated"]["meta"]["is_urgent"]


def test_cli_exit_codes(project_dir, capsys):
    main = load_entry()
    assert main(["--set", "filter.backend=gpt"]) == 2                      # config error
    assert "filter.backend" in capsys.readouterr().err
    assert main([]) == 1                                                   # no curated.jsonl yet
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "curated.jsonl" in err[0] and "input file not found" in err[0]
    assert main(["--input", str(FIXTURE), "--set", "filter.backend=llm", "--set", "models.base=/nonexistent/model",
                 "--set", "models.rewriter=null"]) == 1                  # llm backend, no model folder
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/nonexistent/model" in err[0] and "model folder not found" in err[0]
    assert main(["--input", str(FIXTURE), *sum((["--set", s] for s in SMALL), [])]) == 0
    assert (project_dir / "2.filter" / "manifest.json").is_file()


def test_too_many_bad_lines_fails(project_dir, capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(FIXTURE.read_text().splitlines()[0] + "\n{broken\n[1]\n")
    assert load_entry()(["--input", str(bad)]) == 1
    assert "more than max_bad_fraction" in capsys.readouterr().err


@pytest.mark.slurm
@pytest.mark.slow
def test_stage_through_sbatch(slurm_cluster, tmp_path):
    from slurm_helpers import sbatch_and_wait, slurm_env

    project = tmp_path / "project"
    place_input(project)
    stage = REPO_DIR / "2.Filter"
    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(project)})
    result = sbatch_and_wait(stage / "run-filter.sh", cwd=stage, env=env, timeout=300,
                             args=[a for s in SMALL for a in ("--set", s)])
    try:
        assert result.state == "COMPLETED" and result.exit_code == 0, result.log_text
        assert "--- FILTER STATISTICS ---" in result.log_text
        manifest = json.loads((project / "2.filter" / "manifest.json").read_text())
        assert manifest["slurm_job_id"] == result.job_id and manifest["counts"]["kept"] == 10
    finally:
        if result.log_path:
            result.log_path.unlink(missing_ok=True)
