"""The benchmark scripts keep running (quick mode) and record the run they come from (issue 23).

No timing is asserted: speed is measured by `make bench`, not by tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmark_runs_and_records_its_run(tmp_path):
    env = dict(os.environ, HEALTHAI_BENCH_RESULTS=str(tmp_path))
    out = subprocess.run([sys.executable, "merge_near_dups.py", "--quick"], cwd=REPO / "benchmarks", env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads((tmp_path / "merge_near_dups.json").read_text())
    run = doc["run"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", run["started_utc"])
    assert run["finished_utc"] >= run["started_utc"] and run["wall_s"] > 0
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert run["git_commit"] == head and isinstance(run["git_dirty"], bool)
    assert run["cpus"] >= 1 and run["cpu_model"] and run["quick"] is True
    assert run["versions"]["torch"] and run["versions"]["python"] and run["argv"] == ["merge_near_dups.py", "--quick"]
    assert len(run["load_before"]) == 3 and len(run["load_after"]) == 3
    (row,) = doc["results"]
    assert row["questions"] == 200 and row["same_groups_as_exhaustive"] is True


def test_no_benchmark_writes_a_date_or_machine_by_hand():
    literal = re.compile(r"\"(date|machine)\"\s*:\s*(f?\"|time\.strftime)")
    for script in sorted((REPO / "benchmarks").glob("*.py")):
        if script.name in ("runinfo.py", "table.py"):  # the run record itself; the table of results
            continue
        text = script.read_text()
        assert not literal.search(text), f"{script.name} writes a date or machine string itself: use runinfo"
        assert not re.search(r"20\d\d-\d\d-\d\d", text), f"{script.name} holds a literal date"
        assert "runinfo.write(" in text, f"{script.name} does not write its result through runinfo"


def test_the_table_is_generated_from_the_results_and_names_what_is_missing(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_table", REPO / "benchmarks" / "table.py")
    table = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = table  # a dataclass needs its module registered
    spec.loader.exec_module(table)
    # the committed README holds exactly the committed results' table
    assert table.main(["--check"]) == 0, "benchmarks/README.md is stale: run python benchmarks/table.py"
    (tmp_path / "clinical_benchmark.json").write_text(json.dumps({
        "run": {"started_utc": "2030-01-02T03:04:05+00:00", "git_commit": "abcdef0123", "git_dirty": False,
                "load_before": [0.5, 0.4, 0.3]},
        "stage": {"wall_s_median": 75.0}, "baseline_read_csvs": {"wall_s_median": 1.5},
        "ratio_stage_vs_baseline": 50.0}))
    text = table.table(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| stage 4"))
    assert "75.0 s" in row and "50.00x" in row and "**no**" in row and "2030-01-02 03:04 UTC, abcdef01" in row
    assert "not measured yet" in next(line for line in text.splitlines() if line.startswith("| stage 1"))
