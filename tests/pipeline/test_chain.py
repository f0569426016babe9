"""The whole chain (issue 12): stage registry, submission through the real local Slurm, end-to-end checks."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import pytest

from healthai.config import load_config
from healthai.pipeline.chain import BY_NAME, STAGES, current_stages
from slurm_helpers import REPO, job_info, slurm_env, wait_job
from waiting import wait_for


def test_every_stage_script_exists_with_deucalion_lines():
    for stage in STAGES:
        script = REPO / stage.folder / stage.script
        assert script.is_file(), f"{script} missing"
        text = script.read_text()
        assert text.startswith("#!/bin/bash"), script
        assert "#SBATCH --account=f2026aivlab00021bscaifg" in text or "#SBATCH -A f2026aivlab00021bscaifg" in text
        assert "#SBATCH --output=logs/%x-%j.out" in text, script
        assert "slurm/common.sh" in text and '"$@"' in text, script
        assert (REPO / stage.folder / "logs" / ".gitkeep").is_file(), f"{stage.folder}/logs/.gitkeep missing"


def test_dependencies_follow_workshop_order():
    order = [s.name for s in STAGES]
    for stage in STAGES:
        for need in stage.needs:
            assert order.index(need) < order.index(stage.name)
    assert BY_NAME["finetune"].needs == ("optuna",) and BY_NAME["evaluate"].needs == ("finetune", "export")
    assert BY_NAME["export"].needs == ("finetune",)          # the report shows the GGUF's answers (#21)
    assert BY_NAME["clinical"].needs == ()


def test_nothing_is_current_in_an_empty_project(project_dir):
    assert not any(current_stages(load_config()).values())


def test_the_embedded_base_is_skipped_where_models_base_is_another_model(project_dir, capsys):
    from healthai.pipeline.chain import main as pipeline_main

    assert pipeline_main(["plan"]) == 0  # local: the embedded base is the base, so it is built
    assert re.search(r"^base-model\t.*\tto-run$", capsys.readouterr().out, re.M)
    qwen = ["--set", f"models.base={project_dir}/models/Qwen3.5-9B"]
    assert pipeline_main(qwen + ["plan"]) == 0
    plan = capsys.readouterr().out
    assert re.search(r"^base-model\t.*\tunused$", plan, re.M) and re.search(r"^optuna\t.*\tto-run$", plan, re.M)
    # an unused stage does not hold back the ones after it
    assert current_stages(load_config(overrides=[f"models.base={project_dir}/models/Qwen3.5-9B"]))["base-model"]
    script = (REPO / "slurm" / "submit-pipeline.sh").read_text()
    assert '"$status" = unused' in script and "not submitted" in script


def _run_chain(project: Path, *extra: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(project), "HEALTHAI_SITE": "ci"})
    return subprocess.run(["bash", str(REPO / "slurm" / "submit-pipeline.sh"), "--follow", *extra],
                          capture_output=True, text=True, env=env, timeout=timeout)


def _walk_private(root: Path) -> list[str]:
    return [str(p) for p in [root, *root.rglob("*")] if not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) & 0o007]


@pytest.mark.slow
@pytest.mark.slurm
def test_whole_chain_through_slurm(slurm_cluster, tmp_path):
    project = tmp_path / "project"
    first = _run_chain(project)
    assert first.returncode == 0, first.stdout + first.stderr
    for stage in STAGES:
        assert f"{stage.name}: job" in first.stdout, f"{stage.name} not submitted"
        manifest = json.loads((project / stage.outputs / "manifest.json").read_text())
        counts = manifest["counts"]
        assert counts["in"] == sum(v for k, v in counts.items() if k != "in"), (stage.name, counts)
        for out in manifest["outputs"]:
            assert Path(out["path"]).is_file()
    # the final report compares the two models
    report = json.loads((project / "inference" / "report.json").read_text())
    assert report and (project / "inference" / "report.md").is_file()
    # health data: nothing under the project directory is readable by other users (logs included)
    assert _walk_private(project) == []
    # a rerun submits nothing: every manifest is current
    again = _run_chain(project)
    assert again.returncode == 0 and "everything is current; nothing submitted" in again.stdout, again.stdout


@pytest.mark.slow
@pytest.mark.slurm
def test_a_failing_stage_cancels_its_dependants_and_is_named(slurm_cluster, tmp_path):
    project = tmp_path / "project"
    # the rewriter model folder does not exist: filter fails, merge is cancelled
    result = _run_chain(project, "--only", "curation,filter,merge", "--", "--set", "filter.backend=llm",
                        "--set", f"models.rewriter={tmp_path / 'no-such-model'}")
    assert result.returncode == 1
    assert "stage 'filter' FAILED" in result.stderr, result.stderr
    assert "its log: " in result.stderr and "cancelled because of it: merge" in result.stderr


@pytest.mark.slow
@pytest.mark.slurm
def test_scancel_mid_chain_then_rerun_gives_the_same_outputs(slurm_cluster, tmp_path):
    data_stages = ("--only", "curation,filter,merge")
    reference = _run_chain(tmp_path / "ref", *data_stages)
    assert reference.returncode == 0, reference.stderr
    project = tmp_path / "killed"
    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(project), "HEALTHAI_SITE": "ci"})
    submitted = subprocess.run(["bash", str(REPO / "slurm" / "submit-pipeline.sh"), *data_stages],
                               capture_output=True, text=True, env=env, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    jobs = dict(re.findall(r"\[pipeline\] (\S+): job (\d+)", submitted.stdout))
    # cancel stage 1 while it runs: its dependants are cancelled with it
    def curation_state() -> str | None:
        state = job_info(jobs["curation"], env).get("JobState")
        assert state in ("PENDING", "RUNNING"), f"curation job {jobs['curation']} is {state} before the scancel"
        return state == "RUNNING" and state

    wait_for(curation_state, f"curation job {jobs['curation']} RUNNING", interval_s=0.2)
    subprocess.run(["scancel", jobs["curation"]], env=env, check=True)
    for job in jobs.values():
        assert wait_job(job, 120, env)["JobState"] == "CANCELLED"
    rerun = _run_chain(project, *data_stages)
    assert rerun.returncode == 0, rerun.stderr
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "train.meta.jsonl", "test.meta.jsonl"):
        assert (project / "3.merge" / name).read_bytes() == (tmp_path / "ref" / "3.merge" / name).read_bytes()
