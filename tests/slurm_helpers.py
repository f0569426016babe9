"""Submit real jobs to the local Slurm cluster and wait for them (tests only)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "slurm" / "local-cluster.sh"
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
            "DEADLINE"}


@dataclass
class JobResult:
    job_id: str
    state: str
    exit_code: int
    log_text: str
    log_path: Path | None


def slurm_env(extra: dict | None = None) -> dict:
    """Environment for sbatch: the repo, offline HF, and SLURM_CONF when the default path is not ours."""
    env = dict(os.environ)
    env["HEALTHAI_REPO"] = str(REPO)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    conf = Path(os.environ.get("HEALTHAI_SLURM_DIR", "/tmp/healthai-slurm")) / "slurm.conf"
    if not Path("/etc/slurm/slurm.conf").is_file() and conf.is_file():
        env["SLURM_CONF"] = str(conf)
    env.update(extra or {})
    return env


def job_info(job_id: str, env: dict | None = None) -> dict[str, str]:
    """`scontrol show job` as a dict (accounting is off locally, so no sacct)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                         env=env or slurm_env())
    info: dict[str, str] = {}
    for token in out.stdout.split():
        if "=" in token:
            key, value = token.split("=", 1)
            info.setdefault(key, value)
    return info


def wait_job(job_id: str, timeout: float, env: dict | None = None) -> dict[str, str]:
    deadline = time.time() + timeout
    info: dict[str, str] = {}
    while time.time() < deadline:
        info = job_info(job_id, env)
        if info.get("JobState") in FINISHED:
            return info
        time.sleep(1)
    subprocess.run(["scancel", job_id], env=env or slurm_env())
    raise AssertionError(f"job {job_id} did not finish within {timeout} s (last state {info.get('JobState')}); "
                         f"log: {info.get('StdOut')}")


def sbatch(script: str | Path, args: tuple | list = (), cwd: str | Path | None = None, env: dict | None = None,
           sbatch_args: tuple | list = ()) -> str:
    """Submit `script` (a real run-*.sh) from `cwd` with `sbatch --parsable`; returns the job id."""
    script = Path(script)
    cwd = Path(cwd) if cwd else script.parent
    (cwd / "logs").mkdir(exist_ok=True)
    out = subprocess.run(["sbatch", "--parsable", *sbatch_args, str(script), *map(str, args)], cwd=cwd,
                         capture_output=True, text=True, env=env or slurm_env())
    assert out.returncode == 0, f"sbatch failed: {out.stderr.strip()}"
    return out.stdout.strip().split(";")[0]


def sbatch_and_wait(script: str | Path, args: tuple | list = (), cwd: str | Path | None = None,
                    env: dict | None = None, timeout: float = 600, sbatch_args: tuple | list = ()) -> JobResult:
    """Submit a real job, wait until it ends, return its state, exit code and log."""
    env = env or slurm_env()
    job_id = sbatch(script, args, cwd, env, sbatch_args)
    info = wait_job(job_id, timeout, env)
    log_path = Path(info["StdOut"]) if info.get("StdOut") else None
    text = log_path.read_text(errors="replace") if log_path and log_path.is_file() else ""
    code = int(re.split(r"[:]", info.get("ExitCode", "1:0"))[0])
    return JobResult(job_id, info.get("JobState", "?"), code, text, log_path)
