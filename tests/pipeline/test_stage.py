"""The stage contract: manifest, no-op reruns, conservation, locks, kill safety, bad-input fraction."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healthai.config import load_config
from healthai.errors import StageError
from healthai.pipeline.stage import StageRun

COPY = Path(__file__).parents[1] / "fixtures" / "copy_stage.py"
MALFORMED = Path(__file__).parents[1] / "fixtures" / "malformed.jsonl"


def run_copy(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HEALTHAI_PROJECT_DIR=str(project))
    return subprocess.run([sys.executable, str(COPY), *args], capture_output=True, text=True, env=env, timeout=120)


def make_input(path: Path, n: int) -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"question {i} " * 5},
                                              {"role": "assistant", "content": f"answer {i} " * 5}]}) + "\n")
    return path


def test_manifest_is_written_last_and_a_rerun_is_a_no_op(tmp_path):
    src = make_input(tmp_path / "in.jsonl", 20)
    first = run_copy(tmp_path / "p", str(src))
    assert first.returncode == 0, first.stderr
    out_dir = tmp_path / "p" / "copy"
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["counts"] == {"in": 20, "kept": 20, "rejected": 0}
    assert manifest["inputs"][0]["lines"] == 20 and len(manifest["inputs"][0]["sha256"]) == 64
    assert {Path(o["path"]).name for o in manifest["outputs"]} == {"out.jsonl", "rejected.jsonl", "config.yaml"}
    assert manifest["config"]["project"]["max_bad_fraction"] == 0.05 and manifest["code_version"]
    assert (out_dir / "config.yaml").read_text().startswith("# Resolved config")
    again = run_copy(tmp_path / "p", str(src))
    assert again.returncode == 0 and "up to date" in again.stdout
    assert json.loads((out_dir / "manifest.json").read_text())["started"] == manifest["started"]
    forced = run_copy(tmp_path / "p", str(src), "--force")
    assert forced.returncode == 0 and "up to date" not in forced.stdout


def test_changed_input_or_config_reruns(tmp_path):
    src = make_input(tmp_path / "in.jsonl", 5)
    assert run_copy(tmp_path / "p", str(src)).returncode == 0
    changed = run_copy(tmp_path / "p", str(src), "--set", "project.max_bad_fraction=0.5")
    assert changed.returncode == 0 and "up to date" not in changed.stdout
    make_input(src, 6)
    rerun = run_copy(tmp_path / "p", str(src), "--set", "project.max_bad_fraction=0.5")
    assert "up to date" not in rerun.stdout
    assert json.loads((tmp_path / "p" / "copy" / "manifest.json").read_text())["counts"]["in"] == 6


def test_a_tampered_output_is_not_taken_as_current(tmp_path):
    src = make_input(tmp_path / "in.jsonl", 5)
    run_copy(tmp_path / "p", str(src))
    (tmp_path / "p" / "copy" / "out.jsonl").write_text("{}\n")
    assert "up to date" not in run_copy(tmp_path / "p", str(src)).stdout


def test_malformed_fixture_gives_file_line_messages_and_conserves(tmp_path):
    # 10 lines: 6 good, 4 bad (bad JSON, wrong encoding, missing messages, null messages).
    result = run_copy(tmp_path / "p", str(MALFORMED), "--set", "project.max_bad_fraction=0.5")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for line, reason in [(3, "malformed_json"), (5, "bad_encoding"), (7, "missing_field"), (9, "missing_field")]:
        assert f"{MALFORMED}:{line}: {reason}" in result.stderr
    out_dir = tmp_path / "p" / "copy"
    rejected = [json.loads(x) for x in (out_dir / "rejected.jsonl").read_text().splitlines()]
    kept = (out_dir / "out.jsonl").read_text().splitlines()
    assert len(kept) == 6 and len(rejected) == 4
    assert json.loads((out_dir / "manifest.json").read_text())["counts"] == {"in": 10, "kept": 6, "rejected": 4}


def test_too_many_bad_lines_fail_in_one_line(tmp_path):
    result = run_copy(tmp_path / "p", str(MALFORMED))   # 40 % bad > 5 %
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: [copy] {MALFORMED}: 4 of 10 lines are malformed, more than max_bad_fraction=0.05")
    assert not (tmp_path / "p" / "copy" / "out.jsonl").exists()
    assert not (tmp_path / "p" / "copy" / "manifest.json").exists()


def test_missing_input_is_one_line_exit_1(tmp_path):
    result = run_copy(tmp_path / "p", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"{tmp_path / 'nope.jsonl'}: input file not found")


def test_bad_config_is_exit_2(tmp_path):
    src = make_input(tmp_path / "in.jsonl", 2)
    result = run_copy(tmp_path / "p", str(src), "--set", "project.seeed=3")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --set: unknown key 'project.seeed' (did you mean 'project.seed'?)")


def test_conservation_failure_stops_the_stage(project_dir, tmp_path):
    cfg = load_config()
    src = make_input(tmp_path / "in.jsonl", 3)
    with pytest.raises(StageError, match="conservation check failed .* in=3 but kept=2 \\+ rejected=0 = 2"):
        with StageRun("lossy", cfg, inputs=[src], config_sections=["project"]) as run:
            out = run.writer("out.jsonl")
            out.write_record({"a": 1})
            out.write_record({"a": 2})
            run.conserve(3, kept=out.lines, rejected=0)
    assert not (project_dir / "lossy" / "out.jsonl").exists()
    assert not (project_dir / "lossy" / ".lock").exists()


def test_a_second_run_while_the_first_holds_the_lock_is_refused(project_dir, tmp_path):
    cfg = load_config()
    src = make_input(tmp_path / "in.jsonl", 1)
    with StageRun("busy", cfg, inputs=[src], config_sections=["project"]) as run:
        with pytest.raises(StageError, match="stage 'busy' is already running \\(pid \\d+ on"):
            with StageRun("busy", cfg, inputs=[src], config_sections=["project"]):
                pass
        run.conserve(0, 0, 0)
    # a lock left by a dead process is taken over
    (project_dir / "busy" / ".lock").write_text(json.dumps({"pid": 2 ** 22 + 7, "host": os.uname().nodename}))
    with StageRun("busy", cfg, inputs=[src], config_sections=["project"], force=True) as run:
        run.conserve(0, 0, 0)


def test_sigkill_mid_write_leaves_no_partial_output_and_rerun_is_identical(tmp_path):
    src = make_input(tmp_path / "in.jsonl", 150_000)
    reference = run_copy(tmp_path / "ref", str(src))
    assert reference.returncode == 0, reference.stderr
    env = dict(os.environ, HEALTHAI_PROJECT_DIR=str(tmp_path / "killed"))
    proc = subprocess.Popen([sys.executable, str(COPY), str(src)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out_dir = tmp_path / "killed" / "copy"
    deadline = time.time() + 60
    while time.time() < deadline:
        tmp = list(out_dir.glob("out.jsonl.tmp.*"))
        if tmp and tmp[0].stat().st_size > 100_000:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(out_dir.glob("out.jsonl.tmp.*")), "the kill came too late to test anything"
    assert not (out_dir / "out.jsonl").exists() and not (out_dir / "manifest.json").exists()
    rerun = run_copy(tmp_path / "killed", str(src))
    assert rerun.returncode == 0, rerun.stderr
    assert list(out_dir.glob("*.tmp.*")) == []
    for name in ("out.jsonl", "rejected.jsonl"):
        assert (out_dir / name).read_bytes() == (tmp_path / "ref" / "copy" / name).read_bytes()
