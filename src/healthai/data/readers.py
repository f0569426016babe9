"""Raw patient–doctor Q&A in the formats seen in the wild, as one stream of `RawRecord`s.

Formats (detected from the file, or forced with `format`):

- `chatdoctor_json`   a JSON array of `{"instruction", "input", "output"}` (GenMedGPT-5k)
- `chatdoctor_jsonl`  the same objects one a line (HealthCareMagic-100k as JSONL)
- `evals_chat`        `{"chat": [{"input": [{"role": "user", ...}], "ideal": answer}]}` (iCliniq)
- `messages`          `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}`
- `qa_jsonl`          `{"question", "answer"}` one a line, other keys kept in meta (MedQuAD as shipped)
- `csv` / `tsv`       a header row with configurable question / answer columns

A JSON or JSONL file may be gzip-compressed (`.gz`): it is read as the plain file would be,
with the same line numbers (the shipped MedQuAD corpus is `data/raw/medquad.jsonl.gz`).

Every record keeps its source, file and line and gets a stable id
`<source>-<sha1(source, line, question prefix)[:12]>`: the same input gives the same ids
on every run and machine. A line that cannot be used comes back as a `BadLine` with the
reason (it goes to rejected.jsonl), never as an exception.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from healthai.errors import InputError
from healthai.pipeline.io import BadLine, Line, iter_jsonl, lone_surrogate

FORMATS = ("chatdoctor_json", "chatdoctor_jsonl", "evals_chat", "messages", "qa_jsonl", "csv", "tsv")


@dataclass
class RawRecord:
    """One question/answer pair as read, before any cleaning."""

    id: str
    source: str
    file: str
    line: int
    question: str
    answer: str
    extra: dict = field(default_factory=dict)
    """Format-specific fields worth keeping in meta (e.g. the ChatDoctor instruction)."""


def make_id(source: str, line: int, question: str, sub: int | None = None) -> str:
    """Stable, deterministic record id from where the record is and how its question starts."""
    key = f"{source}\x00{line}\x00{sub if sub is not None else ''}\x00{question[:200]}"
    return f"{source}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:12]}"


def source_name(path: str | os.PathLike) -> str:
    """Default source name: the file name without extension(s) (`medquad.jsonl.gz` -> `medquad`), safe for ids."""
    path = Path(path)
    stem = Path(path.stem).stem if path.suffix.lower() == ".gz" else path.stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "input"


@contextlib.contextmanager
def plain_copy(path: Path) -> Iterator[Path]:
    """A gzip file decompressed into a private temporary file (mode 0600, removed afterwards), so that
    every check of the plain readers applies unchanged; a corrupt archive is an InputError naming the file."""
    suffix = Path(path.stem).suffix  # medquad.jsonl.gz -> .jsonl
    with tempfile.TemporaryDirectory(prefix="healthai-gz-") as tmp:
        plain = Path(tmp) / f"plain{suffix}"
        try:
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"not a readable gzip file ({exc})", file=str(path)) from None
        yield plain


# -- format detection -------------------------------------------------------------------
def detect_format(path: str | os.PathLike) -> str:
    """Guess the format from the extension and the first record; InputError when it cannot."""
    path = Path(path)
    if not path.is_file():
        raise InputError("input file not found", file=str(path))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix == ".gz":
        with plain_copy(path) as plain:
            return detect_format(plain)
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff").lstrip()
    if not text:
        raise InputError("input file is empty", file=str(path))
    if text[0] == "[":
        return "chatdoctor_json"
    if text[0] == "{":
        first = _first_object(path)
        if first is not None:
            return _format_of(first, path)
    raise InputError("cannot detect the input format (set --input-format or the input's `format`)", file=str(path))


def _first_object(path: Path) -> dict | None:
    for item in iter_jsonl(path, max_record_bytes=1 << 30):
        if isinstance(item, Line):
            return item.record
    return None


def _format_of(record: dict, path: Path) -> str:
    if "chat" in record:
        return "evals_chat"
    if "messages" in record:
        return "messages"
    if "output" in record or "input" in record or "instruction" in record:
        return "chatdoctor_jsonl"
    if "question" in record and "answer" in record:
        return "qa_jsonl"
    raise InputError(f"cannot detect the input format from keys {sorted(record)[:6]} "
                     f"(set --input-format or the input's `format`)", file=str(path))


# -- per-format record extraction (pure: record -> question/answer or a reason) ---------
class Unusable(Exception):
    """A record whose structure does not give a question and an answer (reason, detail)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _text(value: object, name: str) -> str:
    if value is None:
        raise Unusable("missing_field", f"'{name}' is missing or null")
    if not isinstance(value, str):
        raise Unusable("wrong_type", f"'{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise Unusable("empty_field", f"'{name}' is empty")
    return value


def pairs_from_chatdoctor(record: dict) -> list[tuple[str, str, dict]]:
    """`instruction/input/output`: the question is `input` (or `instruction` when input is empty)."""
    instruction = record.get("instruction")
    question = record.get("input")
    if (question is None or (isinstance(question, str) and not question.strip())) and isinstance(instruction, str):
        question, instruction = instruction, None
    extra = {"instruction": instruction} if isinstance(instruction, str) and instruction.strip() else {}
    return [(_text(question, "input"), _text(record.get("output"), "output"), extra)]


def pairs_from_evals_chat(record: dict) -> list[tuple[str, str, dict]]:
    """evals-style: every chat item gives one pair (its user message(s) and its `ideal`)."""
    chat = record.get("chat")
    if not isinstance(chat, list) or not chat:
        raise Unusable("missing_field", "'chat' must be a non-empty list")
    out = []
    for i, item in enumerate(chat):
        if not isinstance(item, dict):
            raise Unusable("wrong_type", f"chat[{i}] must be an object")
        messages = item.get("input")
        if isinstance(messages, str):
            question = messages
        elif isinstance(messages, list):
            users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            if not users:
                raise Unusable("missing_field", f"chat[{i}].input has no user message")
            question = "\n".join(u for u in users if isinstance(u, str))
        else:
            raise Unusable("missing_field", f"chat[{i}].input is missing")
        ideal = item.get("ideal")
        if isinstance(ideal, list):  # evals allows several ideal answers: the first is the reference
            ideal = ideal[0] if ideal else None
        out.append((_text(question, f"chat[{i}].input"), _text(ideal, f"chat[{i}].ideal"), {}))
    return out


def pairs_from_messages(record: dict) -> list[tuple[str, str, dict]]:
    """`messages`: exactly one user turn and one assistant turn (a system turn is allowed and kept in meta)."""
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Unusable("missing_field", "'messages' must be a non-empty list")
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    if roles.count("user") != 1 or roles.count("assistant") != 1:
        raise Unusable("multi_turn", f"expected one user and one assistant message, got roles {roles}")
    if turns[0].get("role") != "user":
        raise Unusable("wrong_order", "the assistant message comes before the user message")
    extra = {}
    system = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    if system and isinstance(system[0], str):
        extra["system"] = system[0]
    return [(_text(turns[0].get("content"), "user content"), _text(turns[1].get("content"), "assistant content"),
             extra)]


def pairs_from_qa(record: dict) -> list[tuple[str, str, dict]]:
    """`{"question", "answer"}`: one pair; the other keys (MedQuAD: id, source, meta) kept in meta."""
    extra = {k: v for k, v in record.items() if k not in ("question", "answer") and v not in (None, "", {}, [])}
    return [(_text(record.get("question"), "question"), _text(record.get("answer"), "answer"), extra)]


EXTRACTORS = {
    "chatdoctor_json": pairs_from_chatdoctor,
    "chatdoctor_jsonl": pairs_from_chatdoctor,
    "evals_chat": pairs_from_evals_chat,
    "messages": pairs_from_messages,
    "qa_jsonl": pairs_from_qa,
}


# -- file readers -------------------------------------------------------------------------
def _records_from_objects(items: Iterator[Line | BadLine], fmt: str, source: str) -> Iterator[RawRecord | BadLine]:
    extract = EXTRACTORS[fmt]
    for item in items:
        if isinstance(item, BadLine):
            yield item
            continue
        try:
            pairs = extract(item.record)
        except Unusable as exc:
            yield BadLine(item.file, item.line, exc.reason, exc.detail, json.dumps(item.record, ensure_ascii=False))
            continue
        for sub, (question, answer, extra) in enumerate(pairs):
            rid = make_id(source, item.line, question, sub if len(pairs) > 1 else None)
            yield RawRecord(rid, source, item.file, item.line, question, answer, extra)


def iter_json_array(path: str | os.PathLike, max_record_bytes: int) -> Iterator[Line | BadLine]:
    """Elements of a top-level JSON array, each with the line it starts on.

    The file is decoded element by element, so one bad element is reported with its line;
    a syntax error that breaks the array itself ends the file with one BadLine there.
    """
    name = str(path)
    raw = Path(path).read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(f"not valid UTF-8 at byte {exc.start} (convert the file to UTF-8)", file=name, line=line)
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, 0).end()
    if pos >= len(text) or text[pos] != "[":
        raise InputError("expected a JSON array of records", file=name, line=text.count("\n", 0, pos) + 1)
    pos = ws.match(text, pos + 1).end()
    newlines_before = 0
    last = 0

    def line_at(p: int) -> int:
        nonlocal newlines_before, last
        newlines_before += text.count("\n", last, p)
        last = p
        return newlines_before + 1

    if pos < len(text) and text[pos] == "]":
        return
    while pos < len(text):
        start_line = line_at(pos)
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield BadLine(name, line_at(max(exc.pos, pos)), "malformed_json",
                          f"{exc.msg} (the rest of the array cannot be read)", text[pos:pos + 2000])
            return
        except RecursionError:
            yield BadLine(name, start_line, "malformed_json", "JSON nested too deeply", text[pos:pos + 2000])
            return
        size = len(text[pos:end].encode("utf-8"))
        if size > max_record_bytes:
            yield BadLine(name, start_line, "record_too_large", f"{size} bytes > max_record_bytes={max_record_bytes}",
                          text[pos:pos + 2000] + "…")
        elif lone_surrogate(text[pos:end], value):
            yield BadLine(name, start_line, "bad_encoding", "a \\u escape gives an unpaired surrogate (not Unicode)",
                          text[pos:end])
        elif not isinstance(value, dict):
            yield BadLine(name, start_line, "not_an_object", f"expected a JSON object, got {type(value).__name__}",
                          text[pos:end])
        else:
            yield Line(name, start_line, value)
        pos = ws.match(text, end).end()
        if pos < len(text) and text[pos] == ",":
            pos = ws.match(text, pos + 1).end()
            continue
        if pos < len(text) and text[pos] == "]":
            return
        yield BadLine(name, line_at(pos), "malformed_json", "expected ',' or ']' between array elements "
                      "(the rest of the array cannot be read)", text[pos:pos + 200])
        return
    yield BadLine(name, line_at(len(text)), "malformed_json", "the array is not closed with ']'", "")


def iter_table(path: str | os.PathLike, delimiter: str, question_column: str, answer_column: str,
               source: str, max_record_bytes: int) -> Iterator[RawRecord | BadLine]:
    """Rows of a CSV/TSV file with a header; `line` is the row's first physical line."""
    name = str(path)
    csv.field_size_limit(max(max_record_bytes * 2, 1 << 20))
    with open(path, "rb") as fh:
        data = fh.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"not valid UTF-8 at byte {exc.start} (convert the file to UTF-8)", file=name, line=line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("empty table (no header row)", file=name) from None
    except csv.Error as exc:
        raise InputError(f"cannot read the header: {exc}", file=name, line=1) from None
    header = [h.strip() for h in header]
    for column in (question_column, answer_column):
        if column not in header:
            raise InputError(f"column '{column}' not in the header {header} (set question_column/answer_column)",
                             file=name, line=1)
    qi, ai = header.index(question_column), header.index(answer_column)
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BadLine(name, start, "malformed_row", str(exc), "")
            start = reader.line_num + 1
            continue
        line = start
        start = reader.line_num + 1
        if not row or all(not cell.strip() for cell in row):
            continue
        raw = delimiter.join(row)
        if len(raw.encode("utf-8")) > max_record_bytes:
            yield BadLine(name, line, "record_too_large", f"row larger than max_record_bytes={max_record_bytes}",
                          raw[:2000] + "…")
            continue
        if len(row) != len(header):
            yield BadLine(name, line, "malformed_row", f"{len(row)} fields, the header has {len(header)}", raw)
            continue
        question, answer = row[qi], row[ai]
        if not question.strip() or not answer.strip():
            which = question_column if not question.strip() else answer_column
            yield BadLine(name, line, "empty_field", f"'{which}' is empty", raw)
            continue
        extra = {h: v for h, v in zip(header, row) if h not in (question_column, answer_column) and v.strip()}
        yield RawRecord(make_id(source, line, question), source, name, line, question, answer, extra)


def read_input(path: str | os.PathLike, fmt: str = "auto", source: str | None = None,
               question_column: str = "question", answer_column: str = "answer",
               max_record_bytes: int = 1_000_000) -> Iterator[RawRecord | BadLine]:
    """Every record of one input file (RawRecord) or the reason it cannot be used (BadLine)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("input file not found", file=str(path))
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise InputError(f"unknown input format '{fmt}' (one of {', '.join(FORMATS)})", file=str(path))
    source = source or source_name(path)
    if path.suffix.lower() == ".gz":
        yield from _read_gzip(path, fmt, source, question_column, answer_column, max_record_bytes)
        return
    if fmt in ("csv", "tsv"):
        yield from iter_table(path, "," if fmt == "csv" else "\t", question_column, answer_column, source,
                              max_record_bytes)
    elif fmt == "chatdoctor_json":
        yield from _records_from_objects(iter_json_array(path, max_record_bytes), fmt, source)
    else:
        yield from _records_from_objects(iter_jsonl(path, max_record_bytes), fmt, source)


def _read_gzip(path: Path, fmt: str, source: str, question_column: str, answer_column: str,
               max_record_bytes: int) -> Iterator[RawRecord | BadLine]:
    """A .gz input read as its plain file, with file names pointing at the archive (file:line stays true)."""
    with plain_copy(path) as plain:
        for item in read_input(plain, fmt, source, question_column, answer_column, max_record_bytes):
            item.file = str(path)
            yield item
