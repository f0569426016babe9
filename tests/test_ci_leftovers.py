"""`.ci/run`'s last check: a process the run started that outlives the tests fails CI (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / ".ci" / "leftover_processes.py"


def _check(token: str, grace: str = "0.5") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HEALTHAI_CI_RUN"}
    return subprocess.run([sys.executable, str(CHECK), token, "--grace", grace], capture_output=True,
                          text=True, env=env, timeout=60)


def test_an_orphan_of_the_run_fails_the_check_is_listed_and_ended():
    token = f"test-{uuid.uuid4().hex}"
    env = dict(os.environ, HEALTHAI_CI_RUN=token)
    # An orphan: its parent shell exits at once, as a SIGKILLed stage would leave its worker.
    spawn = subprocess.run(["bash", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True, env=env,
                           timeout=30, start_new_session=True)
    orphan = int(spawn.stdout.strip())
    try:
        result = _check(token)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"pid {orphan}: sleep 600" in result.stderr and "still alive" in result.stderr
        assert _check(token).returncode == 0  # the check ended it: nothing stays running
    finally:
        try:
            os.kill(orphan, 9)
        except ProcessLookupError:
            pass


def test_no_process_of_the_run_passes():
    result = _check(f"test-{uuid.uuid4().hex}")
    assert result.returncode == 0 and "no process of this run is left" in result.stdout
