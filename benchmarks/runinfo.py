"""What every benchmark result records about the run that wrote it, from the run itself.

    info = runinfo.start({"records": 100_000})     # settings as run
    ...measure...
    runinfo.write(path, info, {"seconds": ..., "ratio": ...})

The JSON then carries `run`: UTC start and end, wall seconds, git commit and whether the tree
was dirty, CPU model and count, load average before and after, Python and library versions,
the command line and the settings. No date or machine string is ever written by hand.
`quick()` is true with `--quick` on the command line or HEALTHAI_BENCH_QUICK=1: reduced sizes
for a smoke check (`make bench-quick`; a CI test runs one benchmark this way).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARIES = ("torch", "transformers", "peft", "trl", "optuna", "datasketch", "llama_cpp_python")


def quick() -> bool:
    """Reduced sizes: `--quick` in argv or HEALTHAI_BENCH_QUICK=1."""
    return "--quick" in sys.argv[1:] or os.environ.get("HEALTHAI_BENCH_QUICK", "") not in ("", "0")


def results_dir() -> Path:
    """Where results go: $HEALTHAI_BENCH_RESULTS, else benchmarks/results (quick runs: results/quick,
    git-ignored, so that a smoke check never overwrites a measured figure)."""
    if os.environ.get("HEALTHAI_BENCH_RESULTS"):
        return Path(os.environ["HEALTHAI_BENCH_RESULTS"])
    return REPO / "benchmarks" / "results" / ("quick" if quick() else "")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def start(settings: dict | None = None) -> dict:
    """The run's description at its start; pass it to `write` at the end."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "cpu_model": _cpu_model(),
        "cpus": _cpus(),
        "machine": f"{platform.system()} {platform.machine()}",
        "load_before": _load(),
        "versions": _versions(),
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "quick": quick(),
        "settings": settings or {},
        "_t0": time.monotonic(),
    }


def finish(info: dict) -> dict:
    """The run's description with its end: end time, wall seconds, load average after."""
    done = {k: v for k, v in info.items() if not k.startswith("_")}
    done["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    done["wall_s"] = round(time.monotonic() - info["_t0"], 2)
    done["load_after"] = _load()
    return done


def destination(path: str | os.PathLike) -> Path:
    """A script's result path, moved into `results_dir()` when that is not benchmarks/results
    (a quick run, or HEALTHAI_BENCH_RESULTS): the measured figures are never overwritten."""
    path = Path(path)
    default = REPO / "benchmarks" / "results"
    target = results_dir()
    if target != default and path.parent.resolve() == default.resolve():
        return target / path.name
    return path


def write(path: str | os.PathLike, info: dict, results: dict) -> Path:
    """`{"run": ..., **results}` as JSON at `path`, atomically (temp file + rename)."""
    path = destination(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"run": finish(info), **results}
    print(f"[bench] {Path(info['argv'][0]).stem}: wrote {path}", flush=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def spread(values: list[float]) -> dict:
    """min / median / max of repeated timings (a noisy box: report all three)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"min": round(ordered[0], 4), "median": round(median, 4), "max": round(ordered[-1], 4), "n": len(ordered)}
