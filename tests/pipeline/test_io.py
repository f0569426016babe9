"""The JSONL reader reports file:line for every bad line; writers are atomic and private."""

from __future__ import annotations

import os
import stat

import pytest

from healthai.errors import InputError, StageError
from healthai.pipeline.io import AtomicWriter, BadLine, Line, iter_jsonl, read_jsonl, write_jsonl

GOOD = '{"id": "a", "messages": [{"role": "user", "content": "Hi"}]}\n'


def _write(tmp_path, data: bytes, name="in.jsonl"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_malformed_lines_come_back_with_file_line_and_reason(tmp_path):
    data = (GOOD.encode()                                   # 1: fine
            + b'{"id": "b", "messages": [\n'                # 2: truncated JSON
            + b'{"id": "c", "text": "caf\xe9"}\n'           # 3: latin-1 byte, not UTF-8
            + b'[1, 2, 3]\n'                                # 4: not an object
            + b'{"id": "d", "messages": null}\n'            # 5: required field null
            + b'\n'                                         # blank: ignored
            + b'{"id": "e"}\n')                             # 7: required field missing
    path = _write(tmp_path, data)
    items = list(iter_jsonl(path, required=("messages",)))
    assert [type(i) for i in items] == [Line, BadLine, BadLine, BadLine, BadLine, BadLine]
    bad = [i for i in items if isinstance(i, BadLine)]
    assert [(b.line, b.reason) for b in bad] == [(2, "malformed_json"), (3, "bad_encoding"), (4, "not_an_object"),
                                                 (5, "missing_field"), (7, "missing_field")]
    assert bad[0].where() == f"{path}:2"
    entry = bad[1].rejected()
    assert entry["reason"] == "bad_encoding" and "caf" in entry["record"] and entry["id"] == f"{path}:3"


def test_bom_crlf_and_huge_records(tmp_path):
    path = _write(tmp_path, b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode() + b'{"x": "' + b"a" * 3000 + b'"}\n')
    items = list(iter_jsonl(path, max_record_bytes=2048))
    assert isinstance(items[0], Line) and items[0].record["id"] == "a"
    assert isinstance(items[1], BadLine) and items[1].reason == "record_too_large"


def test_deeply_nested_json_is_a_bad_line_not_a_crash(tmp_path):
    path = _write(tmp_path, b"[" * 100000 + b"]" * 100000 + b"\n")
    (item,) = list(iter_jsonl(path, max_record_bytes=10**7))
    assert isinstance(item, BadLine) and item.reason in ("malformed_json", "not_an_object")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="input file not found"):
        list(iter_jsonl(tmp_path / "nope.jsonl"))


def test_read_jsonl_raises_with_location(tmp_path):
    path = _write(tmp_path, GOOD.encode() + b"{oops\n")
    with pytest.raises(InputError) as err:
        read_jsonl(path)
    assert err.value.one_line().startswith(f"{path}:2: malformed_json")


def test_atomic_writer_only_renames_on_commit(tmp_path):
    target = tmp_path / "out.jsonl"
    writer = AtomicWriter(target)
    writer.write_record({"a": 1})
    assert not target.exists()
    writer.commit()
    assert target.read_text() == '{"a":1}\n'
    with pytest.raises(RuntimeError):
        with AtomicWriter(tmp_path / "other.jsonl") as out:
            out.write_record({"b": 2})
            raise RuntimeError("boom")
    assert not (tmp_path / "other.jsonl").exists()
    assert list(tmp_path.glob("*.tmp.*")) == []


def test_outputs_are_not_world_readable(tmp_path):
    old = os.umask(0o002)  # even with a permissive umask
    try:
        path = tmp_path / "sub" / "x.jsonl"
        write_jsonl(path, [{"a": 1}])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o007 == 0


def test_disk_full_is_a_clear_stage_error(tmp_path, monkeypatch):
    import errno

    writer = AtomicWriter(tmp_path / "full.jsonl")

    class Full:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    writer.fh = Full()
    with pytest.raises(StageError, match="disk full while writing .*full.jsonl"):
        writer.write_record({"a": 1})
    assert list(tmp_path.iterdir()) == []
