"""The slides' walk-through, typed into a real terminal as a participant types it (issue 24).

A tmux session on its own socket runs bash in the repository; the test types the slides'
commands with `send-keys` and reads the screen through `pipe-pane` (everything the terminal
shows, appended to a file). Each command is followed, on the same line, by a marker `echo` whose output (not its
echo) the test waits for: the marker means the command ended.
Jobs are waited for through their Slurm state. The local cluster stands in for Deucalion with
the CI profile's small sizes; the model the participant downloads on the cluster is the
embedded base, built first as the base-model stage builds it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from healthai.config import load_config
from slurm_helpers import REPO, job_info, slurm_env, wait_job
from waiting import wait_for


class Terminal:
    """bash in a detached tmux session; what it shows is appended to `log`."""

    def __init__(self, cwd: Path, env: dict, log: Path):
        self.socket = f"healthai-walkthrough-{uuid.uuid4().hex[:8]}"
        self.session = "slides"
        self.log = log
        self.env = env
        self.marks = 0
        self._tmux("new-session", "-d", "-s", self.session, "-x", "200", "-y", "50", "-c", str(cwd),
                   "bash --norc --noprofile")
        self._tmux("pipe-pane", "-o", "-t", self.session, f"cat >> {log}")

    def _tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, env=self.env,
                             timeout=30)
        assert out.returncode == 0, f"tmux {args[0]}: {out.stderr.strip()}"
        return out.stdout

    def screen(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def type(self, line: str) -> None:
        self._tmux("send-keys", "-t", self.session, "-l", line)
        self._tmux("send-keys", "-t", self.session, "Enter")

    def run(self, line: str, deadline_s: float = 300) -> str:
        """Type `line`, then a marker; wait until the marker's output shows; return what `line` printed."""
        self.marks += 1
        start = len(self.screen())
        # On the same line: typed ahead on a line of its own, the marker would be read by whatever
        # holds the terminal then (srun forwards stdin to its task). The typed text reads
        # __M""ARK_n__; only the shell's output reads __MARK_n__.
        self.type(f'{line}; echo "__M""ARK_{self.marks}__ rc=$?"')
        pattern = re.compile(rf"__MARK_{self.marks}__ rc=(\d+)")
        wait_for(lambda: pattern.search(self.screen(), start), f"`{line}` to finish in the terminal",
                 deadline_s=deadline_s, interval_s=0.2)
        return self.screen()[start:]

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, env=self.env, timeout=30)


def _submitted(output: str) -> str:
    found = re.search(r"Submitted batch job (\d+)", output)
    assert found, f"no job id on the screen:\n{output[-2000:]}"
    return found.group(1)


@pytest.mark.slow
@pytest.mark.slurm
def test_the_slides_typed_in_a_terminal(slurm_cluster, tmp_path):
    project = tmp_path / "project"
    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(project), "HEALTHAI_SITE": "ci", "HEALTHAI_REPO": str(REPO),
                     "PS1": r"[\u@local \W]$ ", "TERM": "xterm"})
    env.pop("HEALTHAI_NO_SRUN", None)
    # What `bash slurm/download-models.sh` is on Deucalion: here the embedded base (the base-model stage).
    # Built before the splits exist, like a downloaded model: answers only (no urgent-style corpus,
    # which needs the splits to leave their questions out).
    built = subprocess.run([sys.executable, str(REPO / "fine-tuning" / "build-embedded-model.py"),
                            "--set", "embedded.urgent_style_corpus=false"], env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]

    term = Terminal(REPO, env, tmp_path / "screen.log")
    jobs: list[str] = []
    try:
        for folder, script in (("1.Initial-curation", "run-curation.sh"), ("../2.Filter", "run-filter.sh"),
                               ("../3.Merge", "run-merge.sh")):
            term.run(f"cd {folder}")
            jobs.append(_submitted(term.run(f"sbatch {script}")))
            info = wait_job(jobs[-1], 600, env)  # the participant waits for the job (squeue) before the next
            assert info["JobState"] == "COMPLETED", (script, Path(info["StdOut"]).read_text()[-2000:])
        term.run("cd ../fine-tuning")
        jobs.append(_submitted(term.run("sbatch run-ft-optuna.sh")))
        assert wait_job(jobs[-1], 900, env)["JobState"] == "COMPLETED"
        jobs.append(_submitted(term.run("sbatch run-ft.sh")))
        info = wait_job(jobs[-1], 900, env)
        assert info["JobState"] == "COMPLETED", Path(info["StdOut"]).read_text()[-2000:]
        assert (project / "ft" / "adapter" / "adapter_model.safetensors").is_file()

        shown = term.run("cat gpu.sh")
        assert "salloc" in shown and "normal-a100-40" in shown and "00:10:00" in shown

        # bash gpu.sh opens an interactive allocation: a new shell in the same terminal.
        start = len(term.screen())
        term.type("bash gpu.sh")
        granted_line = re.compile(r"Granted job allocation (\d+)")
        granted = wait_for(lambda: granted_line.search(term.screen(), start),
                           "salloc granting the allocation", interval_s=0.2)
        jobs.append(granted.group(1))
        inside = term.run('echo "inside allocation $SLURM_JOB_ID"; squeue -h -j "$SLURM_JOB_ID" -o "%i %T %P"')
        assert f"inside allocation {jobs[-1]}" in inside
        assert re.search(rf"{jobs[-1]} RUNNING normal-a100-40", inside), inside[-1000:]

        prompts = load_config(site="ci").inference.prompts
        for mode in ("base", "ft"):
            screen = term.run(f"bash run-inference.sh '{mode}'", deadline_s=600)
            assert re.search(r"__MARK_\d+__ rc=0", screen), screen[-3000:]
            assert "running as a job step" in screen  # inside the allocation, on its GPU
            for i, prompt in enumerate(prompts, 1):
                assert f"--- [{mode}] prompt {i}/{len(prompts)} ---" in screen, screen[-3000:]
                assert f"Q: {prompt[:40]}" in screen
            assert re.search(rf"\[{mode}\] timing: loading [\d.]+ s \+ {len(prompts)} answers [\d.]+ s", screen)

        term.type("exit")
        wait_for(lambda: job_info(jobs[-1], env).get("JobState") not in ("RUNNING", "PENDING"),
                 f"the allocation {jobs[-1]} released after `exit`")
        assert "Relinquishing job allocation" in term.screen()
    finally:
        term.close()
        subprocess.run(["scancel", *jobs], env=env, capture_output=True)
        for job in jobs:
            Path(job_info(job, env).get("StdOut", "/nonexistent")).unlink(missing_ok=True)
