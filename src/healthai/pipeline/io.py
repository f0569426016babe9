"""JSONL in and out: a streaming reader that names file:line for every bad line, atomic writers.

Every stage reads and writes UTF-8 JSONL, one object a line. Bad lines are never fatal
on their own: they come back as `BadLine` so the stage can quarantine them in
`rejected.jsonl` with the reason; the stage fails only above `max_bad_fraction`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from healthai.errors import InputError, StageError

# Health data: nothing this package writes is readable by "other" users.
FILE_MODE = 0o660
DIR_MODE = 0o770


@dataclass
class Line:
    """One good input line: a JSON object and where it came from."""

    file: str
    line: int
    record: dict


@dataclass
class BadLine:
    """One input line that could not be used, with the reason and the raw text."""

    file: str
    line: int
    reason: str
    detail: str
    raw: str

    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def rejected(self) -> dict:
        """The `rejected.jsonl` entry for this line (nothing is lost: the raw text is kept)."""
        return {"id": self.where(), "reason": self.reason, "detail": self.detail,
                "record": self.raw, "source_file": self.file, "source_line": self.line}


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def lone_surrogate(text: str, value: Any) -> bool:
    """Does JSON `text` decode to a string with an unpaired surrogate (`"\\ud800"`)? Such a string
    is not Unicode: it cannot be written as UTF-8, so the record must be rejected where it is read."""
    if not _SURROGATE_ESCAPE.search(text):  # valid UTF-8 can only smuggle one in as an escape
        return False
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def iter_jsonl(path: str | os.PathLike, max_record_bytes: int = 1_000_000,
               required: tuple[str, ...] = ()) -> Iterator[Line | BadLine]:
    """Yield `Line` or `BadLine` for every non-blank line of a JSONL file.

    Checks: UTF-8 (a BOM on line 1 is allowed), size, valid JSON (no unpaired surrogate), a JSON object, and
    the `required` top-level fields present and not null.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("input file not found", file=str(path))
    name = str(path)
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            stripped = raw.strip()
            if not stripped:
                continue
            text = stripped.decode("utf-8", errors="replace")
            if len(stripped) > max_record_bytes:
                yield BadLine(name, number, "record_too_large",
                              f"{len(stripped)} bytes > max_record_bytes={max_record_bytes}", text)
                continue
            try:
                stripped.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadLine(name, number, "bad_encoding", f"not valid UTF-8 at byte {exc.start}", text)
                continue
            try:
                record = json.loads(text)
            except RecursionError:
                yield BadLine(name, number, "malformed_json", "JSON nested too deeply", text)
                continue
            except json.JSONDecodeError as exc:
                yield BadLine(name, number, "malformed_json", f"{exc.msg} at column {exc.colno}", text)
                continue
            if lone_surrogate(text, record):
                yield BadLine(name, number, "bad_encoding", "a \\u escape gives an unpaired surrogate (not Unicode)",
                              text)
                continue
            if not isinstance(record, dict):
                yield BadLine(name, number, "not_an_object",
                              f"expected a JSON object, got {type(record).__name__}", text)
                continue
            missing = [key for key in required if record.get(key) is None]
            if missing:
                yield BadLine(name, number, "missing_field", f"missing or null: {', '.join(missing)}", text)
                continue
            yield Line(name, number, record)


def count_lines(path: str | os.PathLike) -> int:
    """Number of non-blank lines (what a manifest reports for a JSONL file)."""
    n = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if raw.strip():
                n += 1
    return n


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dumps(record: Any) -> str:
    """One JSONL line: compact, UTF-8 kept, keys in insertion order (byte-stable reruns)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create a folder (and parents) that only the owner and group can read."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    try:
        os.chmod(path, os.stat(path).st_mode & ~0o007)
    except PermissionError:
        pass
    return path


def describe_os_error(exc: OSError, path: str | os.PathLike) -> str:
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing {path} (free some space, then rerun)"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing {path} (check 'quotaprojects', then rerun)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied writing {path}"
    return f"cannot write {path}: {exc.strerror or exc}"


class AtomicWriter:
    """Write to `<name>.tmp.<pid>` and rename onto the final name only on `commit()`.

    A process killed mid-write leaves at most a temp file, never a partial file under
    the final name. Text mode, UTF-8, '\n' newlines, mode 0660.
    """

    def __init__(self, path: str | os.PathLike, binary: bool = False):
        self.path = Path(path)
        ensure_dir(self.path.parent)
        self.tmp = self.path.with_name(f"{self.path.name}.tmp.{os.getpid()}")
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            self.fh = os.fdopen(fd, "wb" if binary else "w", **({} if binary else
                                                                 {"encoding": "utf-8", "newline": "\n"}))
        except OSError as exc:
            raise StageError(describe_os_error(exc, self.path)) from None
        self.lines = 0
        self.closed = False

    def write(self, data: str | bytes) -> None:
        try:
            self.fh.write(data)
        except OSError as exc:
            self.abort()
            raise StageError(describe_os_error(exc, self.path)) from None

    def write_record(self, record: Any) -> None:
        self.write(dumps(record) + "\n")
        self.lines += 1

    def commit(self) -> Path:
        if self.closed:
            return self.path
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise StageError(describe_os_error(exc, self.path)) from None
        self.closed = True
        return self.path

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.fh.close()
        except OSError:
            pass
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "AtomicWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_jsonl(path: str | os.PathLike, records: Any) -> int:
    """Write an iterable of records atomically; returns the number of lines."""
    with AtomicWriter(path) as out:
        for record in records:
            out.write_record(record)
        return out.lines


def write_text(path: str | os.PathLike, text: str) -> Path:
    with AtomicWriter(path) as out:
        out.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file this pipeline wrote itself; any bad line is an error with file:line."""
    out = []
    for item in iter_jsonl(path, max_record_bytes=1 << 30):
        if isinstance(item, BadLine):
            raise InputError(f"{item.reason}: {item.detail}", file=item.file, line=item.line)
        out.append(item.record)
    return out
