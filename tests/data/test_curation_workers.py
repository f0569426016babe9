"""The curation stage's worker processes end when the stage dies, however it dies (issue 18)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 120
"""Bound on every wait below; generous because CI may be loaded. Nothing waits a fixed time."""


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes still running (a zombie has ended: only its exit status waits to be read)."""
    alive = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_the_stage_leaves_no_worker_behind(tmp_path, how):
    env = dict(os.environ, HEALTHAI_PROJECT_DIR=str(tmp_path / "project"))
    cmd = [sys.executable, str(REPO / "1.Initial-curation/curate_dataset.py"), "--site", "ci",
           "--input", str(REPO / "data/raw/chatdoctor5k.json"), "--set", "curation.workers=2"]
    stage = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        parent = psutil.Process(stage.pid)
        # Mid-way: both workers started and the parent still curating.
        workers = wait_for(lambda: len(parent.children()) >= 2 and parent.children(),
                           "the stage starting its 2 worker processes", deadline_s=DEADLINE_S, interval_s=0.05)
        assert stage.poll() is None, "the stage ended before it could be killed mid-way"
        stage.send_signal(how)
        stage.wait(timeout=DEADLINE_S)
        wait_for(lambda: not _alive(workers),
                 f"the workers {[p.pid for p in workers]} ending after their parent got {how.name}",
                 deadline_s=DEADLINE_S, interval_s=0.05)
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.wait()
        for p in _alive(locals().get("workers") or []):
            p.kill()  # leave nothing behind even when the assertion failed
        stage.stderr.close()
