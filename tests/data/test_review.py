"""Review selection, the review CSV (round trip, malformed rows by line), the terminal reviewer."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from healthai.config import load_config
from healthai.errors import InputError
from healthai.data.review import COLUMNS, ReviewRow, carry_decisions, parse_review_csv, run_review, select_for_review, write_review
from merge_helpers import CLOSING, REPO, URGENT, make_records


def test_selection_is_stratified_with_urgent_over_represented():
    records = make_records(140)  # 1 in 4 urgent, the other categories in turn
    rows = select_for_review(records, size=40, urgent_share=0.4, seed=42)
    assert len(rows) == 40 and len({r.id for r in rows}) == 40
    urgent = sum(r.is_urgent for r in rows)
    assert urgent == 16 and urgent / 40 > sum(r["meta"]["is_urgent"] for r in records) / len(records)
    per_category = Counter(r.category for r in rows if not r.is_urgent)
    assert set(per_category) == {"pediatric", "mental health", "medication", "chronic", "mild symptoms", "other"}
    pool = Counter(r["meta"]["category"] for r in records if not r["meta"]["is_urgent"])
    for category, n in pool.items():  # each category's share follows its share of the pool
        assert abs(per_category[category] - 24 * n / sum(pool.values())) < 1, category
    # deterministic, and not in category order (the reviewer sees them mixed)
    assert [r.id for r in select_for_review(records, 40, 0.4, 42)] == [r.id for r in rows]
    assert [r.category for r in rows] != sorted(r.category for r in rows)
    # asking for more than there is: everything, once
    assert len(select_for_review(records[:10], 120, 0.4, 1)) == 10


def test_selection_fills_from_non_urgent_when_urgent_runs_out():
    records = make_records(40, urgent_every=20)  # only 2 urgent
    rows = select_for_review(records, size=20, urgent_share=0.5, seed=3)
    assert len(rows) == 20 and sum(r.is_urgent for r in rows) == 2


def _rows() -> list[ReviewRow]:
    return [ReviewRow(id="a1", category="pediatric", is_urgent=False, question='My son, 4, has a cough, "dry"',
                      answer=f"Give him warm fluids.\n{CLOSING}"),  # a quote and a newline inside a cell
            ReviewRow(id="a2", category="urgent symptoms", is_urgent=True, question="Chest pain since 1 hour",
                      answer=f"{URGENT} Call an ambulance. {CLOSING}", decision="reject", note="too short")]


def test_csv_round_trip_and_jsonl_mirror(tmp_path):
    path = tmp_path / "review" / "review.csv"
    write_review(path, _rows())
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    back = parse_review_csv(path)
    assert [(r.id, r.question, r.answer, r.decision, r.note, r.is_urgent) for r in back] == \
        [(r.id, r.question, r.answer, r.decision, r.note, r.is_urgent) for r in _rows()]
    assert back[0].line == 2 and back[1].line == 4  # row 1 spans two lines (the newline in the answer)
    assert (tmp_path / "review" / "review.jsonl").read_text().count("\n") == 2


def test_spreadsheet_spellings_are_accepted(tmp_path):
    # what a spreadsheet saves: a BOM, CRLF, capitalised decisions, an extra column
    path = tmp_path / "r.csv"
    header = ",".join(COLUMNS) + ",reviewer"
    path.write_bytes(("\ufeff" + header + "\r\nx1,other,TRUE,q,a,Accepted,,,ana\r\nx2,other,no,q,a,Edit,new text,,ana\r\n")
                     .encode("utf-8"))
    rows = parse_review_csv(path)
    assert [(r.decision, r.is_urgent, r.edited_answer) for r in rows] == [("accept", True, ""), ("edit", False, "new text")]


HEADER = ",".join(COLUMNS)


@pytest.mark.parametrize("body, line, words", [
    # a stray comma: 9 fields on line 3
    ('ok1,other,false,q,a,,,\nbad,other,false,q,a,b,accept,,\n', 3, "9 fields"),
    # an unknown decision, after a quoted cell with a newline (rows 2-3), so the row starts on line 4
    ('ok1,other,false,"two\nlines",a,,,\nbad,other,false,q,a,maybe,,\n', 4, "unknown decision 'maybe'"),
    ('bad,other,false,q,a,edit,,\n', 2, "needs an edited_answer"),
    ('bad,other,false,q,a,accept,new answer,\n', 2, "set decision to edit"),
    ('dup,other,false,q,a,,,\ndup,other,false,q,a,,,\n', 3, "already on line 2"),
    ('bad,other,perhaps,q,a,,,\n', 2, "is_urgent must be true or false"),
    (',other,false,q,a,,,\n', 2, "empty id"),
    ('ok,other,false,q,a,,,\nbad,other,false,"never closed,a,,,\n', 3, "malformed CSV row"),
])
def test_a_malformed_row_is_named_by_line_and_nothing_changes(tmp_path, body, line, words):
    path = tmp_path / "review.csv"
    path.write_text(HEADER + "\n" + body)
    before = path.read_bytes()
    with pytest.raises(InputError) as err:
        parse_review_csv(path)
    assert err.value.line == line and words in err.value.reason and err.value.file == str(path)
    assert path.read_bytes() == before


def test_a_header_without_the_columns_is_reported_on_line_1(tmp_path):
    path = tmp_path / "review.csv"
    path.write_text("id,question,answer\nx,q,a\n")
    with pytest.raises(InputError, match=r"review.csv:1: header lacks column\(s\) category, is_urgent"):
        parse_review_csv(path)


def test_carry_decisions_keeps_earlier_work():
    selection = [ReviewRow("a", "other", False, "q", "a"), ReviewRow("b", "other", False, "q", "a")]
    previous = [ReviewRow("a", "other", False, "q", "a", decision="reject", note="vague"),
                ReviewRow("gone", "other", False, "q", "a", decision="accept"),     # no longer in the input
                ReviewRow("c", "other", False, "q", "a", decision="accept")]        # in the input, not selected
    rows = carry_decisions(selection, previous, known_ids={"a", "b", "c"})
    assert [(r.id, r.decision, r.note) for r in rows] == [("a", "reject", "vague"), ("b", "", ""), ("c", "accept", "")]


# -- the terminal reviewer ---------------------------------------------------------------------
def _review_file(tmp_path: Path) -> Path:
    records = make_records(6)
    rows = select_for_review(records, size=6, urgent_share=0.3, seed=1)
    for row, record in zip(rows, records):
        row.checks = {"closing_sentence": True, "no_dosage": True}
    path = tmp_path / "3.merge" / "review" / "review.csv"
    write_review(path, rows)
    return path


def _session(cfg, path, script: str, editor: str = "", **kw) -> tuple[dict, str]:
    out = io.StringIO()
    summary = run_review(cfg, path, inp=io.StringIO(script), out=out, editor=editor, **kw)
    return summary, out.getvalue()


def test_review_session_driven_by_scripted_input_then_resumed(tmp_path):
    cfg = load_config()
    path = _review_file(tmp_path)
    rows = parse_review_csv(path)
    good = (URGENT + " " if rows[2].is_urgent else "") + f"Rest and keep warm tonight. {CLOSING}"
    script = "\n".join([
        "x",                            # unknown key: help, same example
        "a",                            # 1: accept
        "r", "not a medical question",  # 2: reject with a reason
        "e", "Take 500 mg twice daily.",  # 3: an edit that fails validation: not saved ...
        "e", good,                      # ... then a valid edit
        "q",                            # quit at example 4
    ]) + "\n"
    summary, shown = _session(cfg, path, script)
    assert "QUESTION:" in shown and "checks passed: closing_sentence, no_dosage" in shown and "[1/6]" in shown
    assert "unknown key" in shown and "the edited answer fails: closing_sentence" in shown and "no_dosage" in shown
    assert summary == {"accept": 1, "reject": 1, "edit": 1, "skip": 0, "undecided": 3}
    saved = parse_review_csv(path)  # saved after every decision
    assert [r.decision for r in saved] == ["accept", "reject", "edit", "", "", ""]
    assert saved[1].note == "not a medical question" and saved[2].edited_answer == good
    assert "run again to resume" in shown

    # resume: starts at example 4; skip it, accept 5, then the input ends (same as quit)
    summary, shown = _session(cfg, path, "s\na\n")
    assert "[4/6]" in shown and "[1/6]" not in shown and "3 decided, 3 to go" in shown
    assert [r.decision for r in parse_review_csv(path)] == ["accept", "reject", "edit", "skip", "accept", ""]
    # a later session passes over skipped rows unless asked
    _, shown = _session(cfg, path, "a\n")
    assert "[6/6]" in shown and "[4/6]" not in shown
    _, shown = _session(cfg, path, "r\n\n", redo_skipped=True)
    assert "[4/6]" in shown
    assert [r.decision for r in parse_review_csv(path)] == ["accept", "reject", "edit", "reject", "accept", "accept"]


def test_edit_opens_the_editor(tmp_path):
    cfg = load_config()
    path = _review_file(tmp_path)
    urgent = parse_review_csv(path)[0].is_urgent
    new = (URGENT + " " if urgent else "") + f"Keep a symptom diary for a week. {CLOSING}"
    editor = tmp_path / "fake-editor.py"  # replaces the answer line, keeps the '#' help line
    editor.write_text("import sys\np = sys.argv[1]\nlines = open(p).read().splitlines()\n"
                      f"open(p, 'w').write(lines[0] + '\\n' + {new!r} + '\\n')\n")
    summary, shown = _session(cfg, path, "e\nq\n", editor=f"{sys.executable} {editor}")
    row = parse_review_csv(path)[0]
    assert row.decision == "edit" and row.edited_answer == new and summary["edit"] == 1


def test_review_command_resumes_and_refuses_a_malformed_file(tmp_path):
    path = _review_file(tmp_path)
    env = dict(os.environ, HEALTHAI_PROJECT_DIR=str(tmp_path), EDITOR="")
    cmd = [sys.executable, str(REPO / "3.Merge" / "review.py")]
    first = subprocess.run(cmd, input="a\nq\n", capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(cmd + ["--file", str(path)], input="r\nvague\n", capture_output=True, text=True,
                            env=env, timeout=120)
    assert second.returncode == 0 and "[2/6]" in second.stdout
    assert [r.decision for r in parse_review_csv(path)][:3] == ["accept", "reject", ""]
    # a broken row: one line naming file and line, exit 1, the file untouched
    assert path.read_text().count(",reject,") == 1
    path.write_text(path.read_text().replace(",reject,", ",perhaps,"))
    before = path.read_bytes()
    broken = subprocess.run(cmd, input="a\n", capture_output=True, text=True, env=env, timeout=120)
    assert broken.returncode == 1 and "review.csv:" in broken.stderr and "unknown decision 'perhaps'" in broken.stderr
    assert "Traceback" not in broken.stderr and path.read_bytes() == before
