"""Shared fixtures: offline HF, a temp project dir per test, the real local Slurm cluster."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from slurm_helpers import CLUSTER, REPO

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def project_dir(tmp_path, monkeypatch) -> Path:
    """A fresh $HEALTHAI_PROJECT_DIR for one test."""
    path = tmp_path / "project"
    path.mkdir()
    monkeypatch.setenv("HEALTHAI_PROJECT_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def slurm_cluster():
    """The real local Slurm cluster: started when not running, stopped at the end only if we started it.

    Fails (never skips) when Slurm cannot start: CI must run the Slurm tests for real.
    """
    status = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, text=True)
    started_here = status.returncode != 0
    if started_here:
        start = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=600)
        if start.returncode != 0:
            pytest.fail(f"the local Slurm cluster did not start: {start.stderr.strip() or start.stdout.strip()}")
    yield REPO
    if started_here:
        subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, text=True)
