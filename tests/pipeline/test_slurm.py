"""The real local Slurm: a job with the workshop's Deucalion #SBATCH lines runs unchanged."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess

import pytest

from slurm_helpers import REPO, sbatch_and_wait, slurm_env

pytestmark = [pytest.mark.slurm]


def test_deucalion_job_runs_on_the_local_cluster(slurm_cluster, tmp_path):
    # Submitted from a stage-like folder inside the repo, as a workshop participant does.
    stage = REPO / "tests" / "fixtures"
    result = sbatch_and_wait(stage / "hello-job.sh", args=("--set", "a.b=1"), cwd=stage, timeout=120)
    try:
        assert result.state == "COMPLETED" and result.exit_code == 0, result.log_text
        log = result.log_text
        assert "/slurm_script" in log or "job" in log          # $0 is Slurm's spool copy
        assert f"repo={REPO}" in log                            # found from SLURM_SUBMIT_DIR anyway
        assert "umask=0007" in log
        # one of the node's 4 fake GPUs, whichever the other jobs leave free
        assert re.search(r"partition=normal-a100-40 account=f2026aivlab00021bscaifg gpus=[0-3]$", log, re.M), log
        assert "offline=1/1" in log
        assert f"python {REPO / '.venv'}" in log                 # the site profile's activate lines ran
        assert "args=--set a.b=1" in log
        assert stat.S_IMODE(result.log_path.stat().st_mode) & 0o007 == 0
    finally:
        if result.log_path:
            result.log_path.unlink(missing_ok=True)


def test_sbatch_env_overrides_partition_and_account(slurm_cluster):
    stage = REPO / "tests" / "fixtures"
    env = slurm_env({"SBATCH_PARTITION": "normal-x86", "SBATCH_ACCOUNT": "f2026aivlab00021bscaifx"})
    result = sbatch_and_wait(stage / "hello-job.sh", cwd=stage, env=env, timeout=120)
    try:
        assert "partition=normal-x86 account=f2026aivlab00021bscaifx" in result.log_text
    finally:
        if result.log_path:
            result.log_path.unlink(missing_ok=True)


def test_salloc_runs_a_command_in_an_allocation(slurm_cluster):
    out = subprocess.run(["salloc", "-A", "f2026aivlab00021bscaifg", "-p", "normal-a100-40", "--gpus=1", "-t",
                          "00:02:00", "bash", "-c", "srun bash -c 'echo gpu=$CUDA_VISIBLE_DEVICES'"],
                         capture_output=True, text=True, timeout=120, env=slurm_env())
    assert out.returncode == 0, out.stderr
    # the index is the fake GPU the allocation got (of 4), whichever another job does not hold
    assert re.search(r"^gpu=[0-3]$", out.stdout, re.M), out.stdout


def test_cluster_status_and_tools_present(slurm_cluster):
    for tool in ("sbatch", "salloc", "squeue", "scontrol", "scancel"):
        assert shutil.which(tool), f"{tool} missing"
    status = subprocess.run(["bash", str(REPO / "slurm" / "local-cluster.sh"), "status"], capture_output=True, text=True)
    assert status.returncode == 0 and "running: node localhost is" in status.stdout
