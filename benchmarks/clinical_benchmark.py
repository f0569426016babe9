"""Benchmark stage 4: wall time and peak RSS of the whole stage on the full real tables.

Runs `4.Clinical-reasoning/build_clinical_dataset.py --force` in a fresh process (into a
temporary project dir) `--repeat` times, and, as the baseline in the same run, a process
that only reads the three CSV files with pandas (the I/O floor every implementation pays).
Reports median wall time, peak RSS (ru_maxrss of the child) and the ratio stage/baseline.

    .venv/bin/python benchmarks/clinical_benchmark.py [--repeat 3]

Writes benchmarks/results/clinical_benchmark.json. Target: stage < 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import runinfo  # benchmarks/runinfo.py: the run's own date, commit, machine, load, versions

RUN = runinfo.start()
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "clinical_benchmark.json"
BASELINE = """
import pandas as pd
for p in ("data/raw/Medicine_Details.csv", "data/raw/drugbank_vocabulary.csv",
          "data/raw/primekg_drug_features_subset.csv"):
    pd.read_csv(p, dtype=str, keep_default_na=False)
"""


def run_child(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one child process (RSS via a wait4 on that child only)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({proc.returncode}): {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024.0, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    python = sys.executable
    stage_runs, base_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, HEALTHAI_PROJECT_DIR=tmp, HF_HUB_OFFLINE="1")
        for _ in range(args.repeat):
            base_runs.append(run_child([python, "-c", BASELINE], env)[:2])
            wall, rss, out = run_child([python, "4.Clinical-reasoning/build_clinical_dataset.py", "--force"], env)
            stage_runs.append((wall, rss))
        stats = json.loads((Path(tmp) / "4.clinical" / "stats.json").read_text())
    stage_wall = statistics.median(w for w, _ in stage_runs)
    base_wall = statistics.median(w for w, _ in base_runs)
    result = {
        "benchmark": "clinical_benchmark",
        "repeat": args.repeat,
        "stage": {"wall_s_median": round(stage_wall, 2), "wall_s_all": [round(w, 2) for w, _ in stage_runs],
                  "peak_rss_mib": round(max(r for _, r in stage_runs), 1)},
        "baseline_read_csvs": {"wall_s_median": round(base_wall, 2),
                               "peak_rss_mib": round(max(r for _, r in base_runs), 1)},
        "ratio_stage_vs_baseline": round(stage_wall / base_wall, 2),
        "target_wall_s": 60,
        "meets_target": stage_wall < 60,
        "rows_read": stats["rows"]["read"],
        "ingredient_match_rate": stats["matching"]["name_match_rate"],
        "items": {t: sum(v.values()) for t, v in stats["items"].items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    runinfo.write(RESULTS, RUN, result)
    print(f"{'what':34s}{'wall s (median)':>16s}{'peak RSS MiB':>14s}")
    print(f"{'stage 4, full tables':34s}{stage_wall:>16.2f}{result['stage']['peak_rss_mib']:>14.1f}")
    print(f"{'baseline: pandas reads the 3 CSVs':34s}{base_wall:>16.2f}"
          f"{result['baseline_read_csvs']['peak_rss_mib']:>14.1f}")
    print(f"ratio stage/baseline: {result['ratio_stage_vs_baseline']}x; target < 60 s: {result['meets_target']}")
    print(f"written {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
