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
        if script.name == "runinfo.py":  # the one place that reads them from the run
            continue
        text = script.read_text()
        assert not literal.search(text), f"{script.name} writes a date or machine string itself: use runinfo"
        assert not re.search(r"20\d\d-\d\d-\d\d", text), f"{script.name} holds a literal date"
        assert "runinfo.write(" in text, f"{script.name} does not write its result through runinfo"
