"""Manual review (stage 3): the selection sent to reviewers, the decisions file, the terminal reviewer.

    rows = select_for_review(records, size=120, urgent_share=0.4, seed=42)   # stratified, urgent over-represented
    write_review(csv_path, rows)                                             # review.csv + review.jsonl, atomic
    rows = parse_review_csv(csv_path)      # InputError with file:line for a malformed row; nothing is changed
    review_session(rows, save=..., validate=...)                             # the interactive loop

The CSV (opens in a spreadsheet) is the source of truth for decisions; `review.jsonl`
next to it carries the same rows plus what the terminal reviewer shows (the checks each
answer passed, the doctor's original answer for the "no new drug" rule).
Decisions: accept | reject | edit (needs edited_answer) | skip | empty (not reviewed).
"""

from __future__ import annotations

import csv
import io
import os
import random
import shlex
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from healthai.errors import InputError
from healthai.pipeline.io import iter_jsonl, BadLine, dumps, write_text

COLUMNS = ("id", "category", "is_urgent", "question", "answer", "decision", "edited_answer", "note")
"""Columns of review.csv, in order (review.jsonl has the same keys plus checks and original_answer)."""

DECISIONS = ("accept", "reject", "edit", "skip")
_ALIASES = {"a": "accept", "accepted": "accept", "ok": "accept", "r": "reject", "rejected": "reject",
            "e": "edit", "edited": "edit", "s": "skip", "skipped": "skip"}
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n"}


@dataclass
class ReviewRow:
    """One example sent to review and the reviewer's decision about it."""

    id: str
    category: str
    is_urgent: bool
    question: str
    answer: str
    decision: str = ""
    edited_answer: str = ""
    note: str = ""
    checks: dict[str, bool] = field(default_factory=dict)
    original_answer: str = ""
    line: int | None = None
    """CSV line the row started on (when it was read from a file)."""

    def csv_values(self) -> list[str]:
        return [self.id, self.category, "true" if self.is_urgent else "false", self.question, self.answer,
                self.decision, self.edited_answer, self.note]

    def to_json(self) -> dict:
        out = dict(zip(COLUMNS, self.csv_values()))
        out["is_urgent"] = self.is_urgent
        out["checks"] = self.checks
        out["original_answer"] = self.original_answer
        return out


# -- records ----------------------------------------------------------------------------------
def message_text(record: dict, role: str) -> str:
    """Content of the first message with `role` ("" when there is none)."""
    for message in record.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == role:
            return str(message.get("content") or "")
    return ""


def row_from_record(record: dict) -> ReviewRow:
    meta = record.get("meta") or {}
    return ReviewRow(id=str(record["id"]), category=str(meta.get("category", "")),
                     is_urgent=bool(meta.get("is_urgent")), question=message_text(record, "user"),
                     answer=message_text(record, "assistant"), checks=dict(meta.get("checks") or {}),
                     original_answer=str(meta.get("original_answer") or ""))


# -- selection --------------------------------------------------------------------------------
def _largest_remainder(total: int, weights: dict[str, float], caps: dict[str, int]) -> dict[str, int]:
    """Split `total` over keys in proportion to `weights`, never above `caps`; leftovers go where room is."""
    out = {k: 0 for k in weights}
    remaining = min(total, sum(caps.values()))
    while remaining > 0:
        open_keys = [k for k in weights if out[k] < caps[k]]
        weight_sum = sum(weights[k] for k in open_keys) or len(open_keys)
        shares = {k: (weights[k] if weight_sum else 1) * remaining / weight_sum for k in open_keys}
        step = {k: min(int(shares[k]), caps[k] - out[k]) for k in open_keys}
        if sum(step.values()) == 0:  # hand out single units by largest fractional share
            for k in sorted(open_keys, key=lambda k: (-(shares[k] - int(shares[k])), -weights[k], k)):
                if remaining == 0:
                    break
                out[k] += 1
                remaining -= 1
            continue
        for k, n in step.items():
            out[k] += n
            remaining -= n
    return out


def select_for_review(records: list[dict], size: int, urgent_share: float, seed: int) -> list[ReviewRow]:
    """`size` records for manual review, stratified by category, with `urgent_share` of them urgent.

    Urgent and non-urgent records are drawn separately; inside each group every category gets
    a share proportional to its count (largest remainder), so small categories are represented.
    When there are too few urgent records, the rest comes from the non-urgent ones (and back).
    The result is shuffled (seeded) so a reviewer does not see one category in a row.
    """
    rng = random.Random(seed)
    pools: dict[bool, dict[str, list[dict]]] = {True: defaultdict(list), False: defaultdict(list)}
    for record in sorted(records, key=lambda r: str(r["id"])):
        meta = record.get("meta") or {}
        pools[bool(meta.get("is_urgent"))][str(meta.get("category", ""))].append(record)
    n_urgent_all = sum(len(v) for v in pools[True].values())
    n_other_all = sum(len(v) for v in pools[False].values())
    size = min(size, n_urgent_all + n_other_all)
    want_urgent = min(round(size * urgent_share), n_urgent_all)
    want_other = min(size - want_urgent, n_other_all)
    want_urgent = min(size - want_other, n_urgent_all)
    chosen: list[dict] = []
    for urgent, want in ((True, want_urgent), (False, want_other)):
        pool = pools[urgent]
        counts = {c: len(v) for c, v in sorted(pool.items())}
        quota = _largest_remainder(want, {c: float(n) for c, n in counts.items()}, counts)
        for category in sorted(pool):
            chosen += rng.sample(pool[category], quota[category])
    rng.shuffle(chosen)
    return [row_from_record(r) for r in chosen]


# -- the decisions file -----------------------------------------------------------------------
def normalise_decision(raw: str) -> str | None:
    """'Accept', 'accepted', 'a' -> 'accept'; '' -> ''; anything else -> None."""
    text = (raw or "").strip().lower()
    if text == "" or text in DECISIONS:
        return text
    return _ALIASES.get(text)


def format_review_csv(rows: list[ReviewRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(row.csv_values())
    return buf.getvalue()


def format_review_jsonl(rows: list[ReviewRow]) -> str:
    return "".join(dumps(row.to_json()) + "\n" for row in rows)


def jsonl_path_for(csv_path: str | os.PathLike) -> Path:
    return Path(csv_path).with_suffix(".jsonl")


def write_review(csv_path: str | os.PathLike, rows: list[ReviewRow]) -> None:
    """Save review.csv and review.jsonl next to it, each atomically (temp file + rename)."""
    write_text(csv_path, format_review_csv(rows))
    write_text(jsonl_path_for(csv_path), format_review_jsonl(rows))


def parse_review_csv(path: str | os.PathLike) -> list[ReviewRow]:
    """Read a review CSV; the first malformed row raises InputError naming file and line.

    Malformed: a header without the required columns, a row with the wrong number of fields,
    an unclosed quote, an empty or repeated id, an is_urgent that is not true/false, an unknown
    decision, an edit without edited_answer, an edited_answer with another decision. Extra
    columns a spreadsheet adds are ignored. Reading never changes anything.
    """
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise InputError("review file not found", file=name)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # spreadsheets often save a BOM
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 at byte {exc.start} (save the sheet as CSV UTF-8)", file=name,
                         line=data.count(b"\n", 0, exc.start) + 1) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[ReviewRow] = []
    seen: dict[str, int] = {}
    header: list[str] | None = None
    index: dict[str, int] = {}
    end = 0
    while True:
        start = end + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InputError(f"malformed CSV row: {exc}", file=name, line=start) from None
        end = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if header is None:
            header = [v.strip().lower() for v in values]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise InputError(f"header lacks column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})",
                                 file=name, line=start)
            index = {c: header.index(c) for c in COLUMNS}
            continue
        if len(values) != len(header):
            raise InputError(f"malformed row: {len(values)} fields, the header has {len(header)} "
                             f"(an unquoted comma or newline?)", file=name, line=start)
        get = {c: values[i] for c, i in index.items()}
        row_id = get["id"].strip()
        if not row_id:
            raise InputError("malformed row: empty id", file=name, line=start)
        # cell values go in as repr: a newline typed in a cell cannot split the one-line error
        if row_id in seen:
            raise InputError(f"malformed row: id {row_id!r} already on line {seen[row_id]}", file=name, line=start)
        seen[row_id] = start
        urgent_raw = get["is_urgent"].strip().lower()
        if urgent_raw not in _TRUE | _FALSE:
            raise InputError(f"malformed row: is_urgent must be true or false, got {get['is_urgent']!r}",
                             file=name, line=start)
        decision = normalise_decision(get["decision"])
        if decision is None:
            raise InputError(f"malformed row: unknown decision {get['decision'].strip()!r} "
                             f"(use {', '.join(DECISIONS)} or leave it empty)", file=name, line=start)
        edited = get["edited_answer"].strip()
        if decision == "edit" and not edited:
            raise InputError("malformed row: decision 'edit' needs an edited_answer", file=name, line=start)
        if edited and decision != "edit":
            raise InputError(f"malformed row: edited_answer given but decision is '{decision or 'empty'}' "
                             f"(set decision to edit)", file=name, line=start)
        rows.append(ReviewRow(id=row_id, category=get["category"].strip(), is_urgent=urgent_raw in _TRUE,
                              question=get["question"], answer=get["answer"], decision=decision,
                              edited_answer=edited, note=get["note"].strip(), line=start))
    if header is None:
        raise InputError("empty review file (no header)", file=name, line=1)
    return rows


def attach_details(rows: list[ReviewRow], jsonl_path: str | os.PathLike) -> None:
    """Copy checks and original_answer from review.jsonl onto CSV rows (by id), when the file is there."""
    path = Path(jsonl_path)
    if not path.is_file():
        return
    details = {}
    for item in iter_jsonl(path):
        if isinstance(item, BadLine):
            continue
        details[str(item.record.get("id"))] = item.record
    for row in rows:
        extra = details.get(row.id)
        if extra:
            row.checks = dict(extra.get("checks") or {})
            row.original_answer = str(extra.get("original_answer") or "")


def carry_decisions(selection: list[ReviewRow], previous: list[ReviewRow], known_ids: set[str]) -> list[ReviewRow]:
    """The new selection with the decisions of an earlier review file kept.

    Rows decided earlier for records that are still in the input but no longer selected are
    appended, so a rerun never throws a reviewer's work away.
    """
    before = {r.id: r for r in previous}
    out = []
    for row in selection:
        old = before.get(row.id)
        if old is not None:
            row.decision, row.edited_answer, row.note = old.decision, old.edited_answer, old.note
        out.append(row)
    chosen = {r.id for r in selection}
    for old in previous:
        if old.id not in chosen and old.decision and old.id in known_ids:
            out.append(old)
    return out


# -- the terminal reviewer ------------------------------------------------------------------
KEYS_HELP = "[a]ccept  [r]eject  [e]dit  [s]kip  [q]uit"


def _show(row: ReviewRow, number: int, total: int, out: TextIO) -> None:
    width = 78
    out.write("\n" + "=" * width + "\n")
    out.write(f"[{number}/{total}] id {row.id} · category: {row.category} · urgent: {'yes' if row.is_urgent else 'no'}\n")
    if row.checks:
        passed = [k for k, v in row.checks.items() if v]
        failed = [k for k, v in row.checks.items() if not v]
        out.write(f"checks passed: {', '.join(passed) or 'none'}\n")
        if failed:
            out.write(f"checks FAILED: {', '.join(failed)}\n")
    else:
        out.write("checks: not recorded\n")
    out.write("-" * width + "\nQUESTION:\n" + row.question.strip() + "\n")
    out.write("-" * width + "\nANSWER:\n" + row.answer.strip() + "\n")
    if row.edited_answer:
        out.write("-" * width + "\nYOUR EDIT SO FAR:\n" + row.edited_answer + "\n")
    out.write("-" * width + "\n")


def edit_with_editor(text: str, editor: str) -> str:
    """Open `text` in $EDITOR (a private temp file); returns the saved text, '#' lines dropped."""
    with tempfile.TemporaryDirectory(prefix="healthai-review-") as tmp:
        os.chmod(tmp, 0o700)
        path = Path(tmp) / "answer.txt"
        path.write_text("# Edit the answer below; lines starting with # are ignored. Save and close to finish.\n"
                        + text + "\n", encoding="utf-8")
        result = subprocess.run([*shlex.split(editor), str(path)])
        if result.returncode != 0:
            return ""
        lines = path.read_text(encoding="utf-8").splitlines()
    return " ".join(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")).strip()


def _readline(inp: TextIO, out: TextIO, prompt: str) -> str | None:
    out.write(prompt)
    out.flush()
    line = inp.readline()
    if line == "":  # end of input: behave like quit
        out.write("\n")
        return None
    return line.rstrip("\n")


def review_session(rows: list[ReviewRow], save: Callable[[list[ReviewRow]], None],
                   validate: Callable[[str, ReviewRow], dict[str, bool]], inp: TextIO | None = None,
                   out: TextIO | None = None, editor: str | None = None, redo_skipped: bool = False) -> dict:
    """Show undecided rows one at a time; save after every decision; stop on quit or end of input.

    Resuming is automatic: rows that already have a decision are passed over (skipped rows too,
    unless `redo_skipped`). An edited answer is checked with `validate` first; one that fails a
    rule is not saved (the failing rules are shown, the draft is kept for the next edit).
    """
    inp = inp or sys.stdin
    out = out or sys.stdout
    todo = [i for i, r in enumerate(rows) if not r.decision or (redo_skipped and r.decision == "skip")]
    decided = sum(1 for r in rows if r.decision and r.decision != "skip")
    out.write(f"{len(rows)} examples in review; {decided} decided, {len(todo)} to go. Keys: {KEYS_HELP}\n")
    done_now = 0
    quit_early = False
    for index in todo:
        row = rows[index]
        draft = row.edited_answer or row.answer
        _show(row, index + 1, len(rows), out)
        while True:
            key = _readline(inp, out, f"{KEYS_HELP} > ")
            if key is None:
                quit_early = True
                break
            key = key.strip().lower()[:1]
            if key == "q":
                quit_early = True
                break
            if key == "a":
                row.decision, row.edited_answer = "accept", ""
            elif key == "s":
                row.decision = "skip"
            elif key == "r":
                reason = _readline(inp, out, "reason (optional): ")
                row.decision, row.edited_answer = "reject", ""
                if reason:
                    row.note = reason.strip()
            elif key == "e":
                if editor:
                    text = edit_with_editor(draft, editor)
                else:
                    line = _readline(inp, out, "edited answer (one line; empty cancels): ")
                    text = (line or "").strip()
                if not text or text == row.answer.strip():
                    out.write("edit cancelled (empty or unchanged)\n")
                    continue
                checks = validate(text, row)
                failed = [k for k, v in checks.items() if not v]
                if failed:
                    draft = text
                    out.write(f"the edited answer fails: {', '.join(failed)} — not saved; edit again or choose "
                              f"another key\n")
                    continue
                row.decision, row.edited_answer, row.checks = "edit", text, checks
            else:
                out.write(f"unknown key; use {KEYS_HELP}\n")
                continue
            save(rows)
            done_now += 1
            out.write(f"saved: {row.decision}\n")
            break
        if quit_early:
            break
    summary = summarise_decisions(rows)
    left = summary["undecided"] + (summary["skip"] if redo_skipped else 0)
    out.write(f"{'stopped' if quit_early else 'finished'}: {done_now} decision(s) this session; "
              f"accept {summary['accept']}, edit {summary['edit']}, reject {summary['reject']}, "
              f"skip {summary['skip']}, undecided {summary['undecided']}"
              f"{'; run again to resume' if left else ''}\n")
    out.flush()
    return summary


def summarise_decisions(rows: list[ReviewRow]) -> dict[str, int]:
    out = {d: 0 for d in DECISIONS}
    out["undecided"] = 0
    for row in rows:
        out[row.decision or "undecided"] += 1
    return out


def run_review(cfg, path: str | os.PathLike | None = None, redo_skipped: bool = False,
               inp: TextIO | None = None, out: TextIO | None = None, editor: str | None = None) -> dict:
    """The `3.Merge/review.py` command: load the review file, run the session, save as it goes."""
    from healthai.data.validation import validate_answer

    csv_path = Path(path) if path else cfg.resolve(cfg.merge.review_file)
    if not csv_path.is_file():
        raise InputError("no review file yet: run the merge stage first (sbatch run-merge.sh), "
                         "it writes the selection", file=str(csv_path))
    rows = parse_review_csv(csv_path)  # a malformed row stops here, before anything is written
    attach_details(rows, jsonl_path_for(csv_path))
    os.umask(0o007)

    def validate(text: str, row: ReviewRow) -> dict[str, bool]:
        return validate_answer(text, row.original_answer or row.answer, row.is_urgent, cfg.filter)

    return review_session(rows, save=lambda rs: write_review(csv_path, rs), validate=validate, inp=inp,
                          out=out, editor=editor if editor is not None else os.environ.get("EDITOR") or None,
                          redo_skipped=redo_skipped)
