"""Reliability and security drills that cut across stages (issue 13): disk full, fuzzed input, safe loading."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthai.pipeline.io import BadLine, Line, iter_jsonl

REPO = Path(__file__).resolve().parents[2]
COPY = Path(__file__).parents[1] / "fixtures" / "copy_stage.py"


# -- disk full -------------------------------------------------------------------------------
@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs as the project directory (needs root, as in CI; fails otherwise, never skips)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0770", "tmpfs", str(mount_point)],
                         capture_output=True, text=True)
    assert out.returncode == 0, f"cannot mount a tmpfs for the disk-full drill: {out.stderr.strip()}"
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_disk_full_fails_clearly_leaves_nothing_partial_and_reruns(tiny_tmpfs, tmp_path):
    src = tmp_path / "in.jsonl"
    with open(src, "w") as fh:
        for i in range(3000):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                              {"role": "assistant", "content": "an answer " * 5}]}) + "\n")
    env = dict(os.environ, HEALTHAI_PROJECT_DIR=str(tiny_tmpfs / "project"))
    run = lambda: subprocess.run([sys.executable, str(COPY), str(src)], capture_output=True, text=True, env=env)
    full = run()
    assert full.returncode == 1
    assert "Traceback" not in full.stderr
    assert re.search(r"error: \[copy\] disk full while writing .*out\.jsonl", full.stderr), full.stderr
    out_dir = tiny_tmpfs / "project" / "copy"
    assert not (out_dir / "out.jsonl").exists() and not (out_dir / "manifest.json").exists()
    assert list(out_dir.glob("*.tmp.*")) == [] and not (out_dir / ".lock").exists()
    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_tmpfs)], check=True)
    again = run()
    assert again.returncode == 0, again.stderr
    assert len((out_dir / "out.jsonl").read_text().splitlines()) == 3000


# -- fuzzing the reader ------------------------------------------------------------------------
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=20)
raw_lines = st.one_of(
    st.binary(max_size=300),                                             # arbitrary bytes, bad UTF-8, NULs
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),                   # valid JSON, any shape
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),              # deeply nested
    json_values.map(lambda v: json.dumps(v).encode()[:-1]),              # truncated
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(raw_lines, max_size=12), bom=st.booleans(), crlf=st.booleans())
def test_reader_never_crashes_and_accounts_for_every_line(tmp_path, lines, bom, crlf):
    sep = b"\r\n" if crlf else b"\n"
    flat = [part for line in lines for part in line.replace(b"\r", b" ").split(b"\n")]
    data = (b"\xef\xbb\xbf" if bom else b"") + sep.join(flat)
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    items = list(iter_jsonl(path, max_record_bytes=200, required=("messages",)))
    non_blank = sum(1 for i, part in enumerate(data.split(b"\n"))
                    if (part[3:] if i == 0 and part.startswith(b"\xef\xbb\xbf") else part).strip())
    assert len(items) == non_blank                    # every line is kept or rejected, none lost
    for item in items:
        assert isinstance(item, (Line, BadLine))
        if isinstance(item, BadLine):
            assert item.reason and item.line >= 1 and json.dumps(item.rejected(), ensure_ascii=False)


# -- safe loading ------------------------------------------------------------------------------
def _python_sources():
    for folder in ("src", "0.ml-example", "1.Initial-curation", "2.Filter", "3.Merge", "4.Clinical-reasoning",
                   "fine-tuning", "inference", "benchmarks"):
        yield from (REPO / folder).rglob("*.py")


def test_no_remote_code_no_pickle_weights():
    violations = []
    for path in _python_sources():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            code = line.split("#", 1)[0]
            if re.search(r"trust_remote_code\s*=\s*True", code):
                violations.append(f"{path}:{number}: trust_remote_code=True")
            if re.search(r"torch\.load\(", code) and "weights_only=True" not in code:
                violations.append(f"{path}:{number}: torch.load without weights_only=True")
            if re.search(r"safe_serialization\s*=\s*False", code):
                violations.append(f"{path}:{number}: non-safetensors save")
            if re.search(r"\bpickle\.loads?\(", code):
                violations.append(f"{path}:{number}: pickle load")
    assert violations == []


def test_the_grep_catches_a_violation(tmp_path):
    # the check above must be able to fail: the same patterns on a known-bad line
    bad = 'model = AutoModelForCausalLM.from_pretrained(p, trust_remote_code=True)'
    assert re.search(r"trust_remote_code\s*=\s*True", bad)
    assert re.search(r"torch\.load\(", "state = torch.load(path)")


# -- concurrency: a user pressing sbatch twice -------------------------------------------------
@pytest.mark.slow
@pytest.mark.slurm
def test_two_submissions_of_one_stage_do_not_corrupt_outputs(slurm_cluster, tmp_path):
    from slurm_helpers import sbatch, slurm_env, wait_job

    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(tmp_path / "project"), "HEALTHAI_SITE": "ci"})
    stage = REPO / "1.Initial-curation"
    args = ("--input", str(REPO / "data" / "raw" / "healthcaremagic_82_sample.jsonl"),
            "--set", "project.max_bad_fraction=0.1")
    # both held, then released together, so that they really run at the same time
    first = sbatch(stage / "run-curation.sh", args, cwd=stage, env=env, sbatch_args=("--hold",))
    second = sbatch(stage / "run-curation.sh", args, cwd=stage, env=env, sbatch_args=("--hold",))
    subprocess.run(["scontrol", "release", f"{first},{second}"], env=env, check=True)
    infos = [wait_job(job, 300, env) for job in (first, second)]
    logs = [Path(info["StdOut"]).read_text() for info in infos]
    states = sorted(info["JobState"] for info in infos)
    # Slurm may start the second job only after the first has finished (a busy CI box, a
    # scheduler cycle): then the second must find the outputs current and do nothing.
    # When they overlap, the second must refuse with the lock holder's job id.
    assert states in (["COMPLETED", "FAILED"], ["COMPLETED", "COMPLETED"]), (states, logs)
    if states == ["COMPLETED", "FAILED"]:
        loser = logs[[i["JobState"] for i in infos].index("FAILED")]
        assert re.search(r"stage 'curation' is already running \(Slurm job \d+", loser), loser
    else:
        assert sum("up to date" in log for log in logs) == 1, logs
    out = tmp_path / "project" / "1.curation"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["in"] == 82
    assert len((out / "curated.jsonl").read_text().splitlines()) == manifest["counts"]["kept"]
    assert not (out / ".lock").exists() and list(out.glob("*.tmp.*")) == []
    for info in infos:
        Path(info["StdOut"]).unlink(missing_ok=True)


# -- kill drills: SIGKILL each data stage at several points, rerun, compare byte for byte ------
DATA_STAGES = [  # (entry script, output folder), in pipeline order
    ("1.Initial-curation/curate_dataset.py", "1.curation"),
    ("2.Filter/filter_dataset.py", "2.filter"),
    ("3.Merge/merge_dataset.py", "3.merge"),
    ("4.Clinical-reasoning/build_clinical_dataset.py", "4.clinical"),
]
VOLATILE = {"manifest.json"}  # timings and host differ between runs; everything else must be identical


def _stage_cmd(script: str) -> list[str]:
    return [sys.executable, str(REPO / script), "--site", "ci"]


def _outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in VOLATILE and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def reference_project(tmp_path_factory):
    """An uninterrupted run of the data stages, saved aside, with each stage's wall time.

    Every run of the drill uses the same project path, since records name their source files.
    """
    base = tmp_path_factory.mktemp("drill")
    project, saved = base / "project", base / "saved"
    env = dict(os.environ, HEALTHAI_PROJECT_DIR=str(project))
    seconds = {}
    for script, folder in DATA_STAGES:
        t0 = time.time()
        done = subprocess.run(_stage_cmd(script), capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr
        seconds[folder] = time.time() - t0
    shutil.copytree(project, saved)
    return project, saved, seconds


@pytest.mark.slow
@pytest.mark.parametrize("script, folder", DATA_STAGES, ids=[f for _, f in DATA_STAGES])
def test_sigkill_at_several_points_then_rerun_is_byte_identical(reference_project, script, folder):
    project, saved, seconds = reference_project
    for fraction in (0.35, 0.8):
        shutil.rmtree(project)
        shutil.copytree(saved, project)
        shutil.rmtree(project / folder)
        env = dict(os.environ, HEALTHAI_PROJECT_DIR=str(project))
        proc = subprocess.Popen(_stage_cmd(script), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(seconds[folder] * fraction)
        proc.kill()
        proc.wait()
        out = project / folder
        if not (out / "manifest.json").exists():
            # killed mid-run: whatever carries a final name was renamed complete; no manifest claims it
            for name, data in _outputs(out).items():
                assert ".tmp." in name or data == (saved / folder / name).read_bytes(), name
        rerun = subprocess.run(_stage_cmd(script), capture_output=True, text=True, env=env, timeout=600)
        assert rerun.returncode == 0, rerun.stderr
        assert _outputs(out) == _outputs(saved / folder), f"{folder} differs after a kill at {fraction:.0%}"
