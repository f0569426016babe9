"""The `qa_jsonl` reader and gzip inputs: the shipped MedQuAD corpus and every bad-input case."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from healthai.data.readers import RawRecord, detect_format, read_input, source_name
from healthai.errors import InputError
from healthai.pipeline.io import BadLine

RAW = Path(__file__).resolve().parents[2] / "data" / "raw"
MEDQUAD = RAW / "medquad.jsonl.gz"


def split(items):
    items = list(items)
    return [i for i in items if isinstance(i, RawRecord)], [i for i in items if isinstance(i, BadLine)]


def test_shipped_medquad_is_read_whole_with_its_lines_and_meta():
    assert detect_format(MEDQUAD) == "qa_jsonl"
    records, bad = split(read_input(MEDQUAD))
    assert len(records) == 16407 and not bad                      # the count SOURCES.md states
    first = records[0]
    assert first.question == "What is (are) Adult Acute Lymphoblastic Leukemia ?"
    assert first.answer.startswith("Key Points - Adult acute lymphoblastic leukemia (ALL)")
    assert (first.source, first.file, first.line) == ("medquad", str(MEDQUAD), 1)
    assert first.extra["id"] == "1_CancerGov_QA/0000001_1-1" and first.extra["meta"]["subset"] == "1_CancerGov_QA"
    assert [r.line for r in records[:3]] == [1, 2, 3]
    assert len({r.id for r in records}) == len(records)          # stable ids are unique


def test_source_name_drops_both_extensions():
    assert source_name("data/raw/medquad.jsonl.gz") == "medquad"
    assert source_name("x/icliniq_2k_chat.jsonl") == "icliniq_2k_chat"


def _gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def test_bad_lines_of_a_gzip_file_are_named_by_the_archive_and_line(tmp_path):
    path = _gz(tmp_path / "qa.jsonl.gz", [
        json.dumps({"question": "What is asthma?", "answer": "A disease of the airways."}),
        json.dumps({"question": "What is gout?", "answer": ""}),
        "{not json",
        json.dumps({"question": 3, "answer": "x"}),
        json.dumps({"question": "What is a cold?", "answer": "A viral infection.", "source": "t"}),
    ])
    records, bad = split(read_input(path))
    assert [(r.line, r.question) for r in records] == [(1, "What is asthma?"), (5, "What is a cold?")]
    assert records[1].extra == {"source": "t"}
    assert [(b.file, b.line, b.reason) for b in bad] == [(str(path), 2, "empty_field"), (str(path), 3, "malformed_json"),
                                                        (str(path), 4, "wrong_type")]
    assert "'answer' is empty" in bad[0].detail and bad[0].raw        # nothing lost: the raw line is kept


def test_a_corrupt_gzip_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"question": "q", "answer": "a"}\n' * 50)[:40])
    with pytest.raises(InputError) as err:
        list(read_input(path, fmt="qa_jsonl"))
    assert "not a readable gzip file" in str(err.value) and str(path) in str(err.value)


def test_keys_of_no_known_format_are_named(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "q", "reply": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="cannot detect the input format"):
        detect_format(path)
