"""Readers: every format on real lines, detection, stable ids, and every bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthai.errors import InputError
from healthai.pipeline.io import BadLine
from healthai.data.readers import RawRecord, detect_format, make_id, read_input

FIX = Path(__file__).parents[1] / "fixtures" / "curation"
RAW = Path(__file__).resolve().parents[2] / "data" / "raw"


def split(items):
    items = list(items)
    return [i for i in items if isinstance(i, RawRecord)], [i for i in items if isinstance(i, BadLine)]


@pytest.mark.parametrize("path, fmt", [
    (RAW / "chatdoctor5k.json", "chatdoctor_json"),
    (RAW / "healthcaremagic_82_sample.jsonl", "chatdoctor_jsonl"),
    (RAW / "icliniq_2k_chat.jsonl", "evals_chat"),
    (FIX / "qa.csv", "csv"),
    (FIX / "qa.tsv", "tsv"),
])
def test_format_is_detected_from_the_file(path, fmt):
    assert detect_format(path) == fmt


def test_chatdoctor_json_array_real_file_with_line_numbers():
    records, bad = split(read_input(RAW / "chatdoctor5k.json"))
    assert len(records) == 5452 and not bad
    first = records[0]
    assert first.question.startswith("Doctor, I have been experiencing sudden and frequent panic attacks")
    assert first.answer.startswith("Well, based on what you're telling me")
    assert first.line == 2 and records[1].line == 7          # where each object starts (indent-6 file)
    assert first.source == "chatdoctor5k" and first.extra["instruction"].startswith("If you are a doctor")


def test_healthcaremagic_jsonl_null_output_is_rejected_with_file_and_line():
    records, bad = split(read_input(RAW / "healthcaremagic_82_sample.jsonl"))
    assert len(records) == 81
    assert len(bad) == 1 and bad[0].line == 82 and bad[0].reason == "missing_field"
    assert "output" in bad[0].detail and bad[0].where().endswith("healthcaremagic_82_sample.jsonl:82")


def test_evals_chat_real_lines_and_bad_lines():
    records, bad = split(read_input(FIX / "mixed_evals.jsonl"))
    assert len(records) == 3
    assert records[0].question.startswith("Hello doctor,I had mumps five months ago")
    assert records[0].answer.startswith("Hello, Welcome to Chat Doctor forum.")
    assert [(b.line, b.reason) for b in bad] == [(4, "malformed_json"), (5, "not_an_object")]


def test_messages_jsonl(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join([
        json.dumps({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q one?"},
                                 {"role": "assistant", "content": "A one."}]}),
        # two user turns: not a single Q&A pair
        json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                 {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}),
        # assistant empty
        json.dumps({"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "  "}]}),
    ]) + "\n")
    assert detect_format(path) == "messages"
    records, bad = split(read_input(path))
    assert [(r.question, r.answer, r.extra) for r in records] == [("Q one?", "A one.", {"system": "Be brief."})]
    assert [(b.line, b.reason) for b in bad] == [(2, "multi_turn"), (3, "empty_field")]


def test_csv_and_tsv_with_configured_columns():
    records, bad = split(read_input(FIX / "qa.csv", question_column="patient_question", answer_column="doctor_answer"))
    assert len(records) == 1 and records[0].question.startswith("I have had a dry cough") and records[0].line == 2
    assert [(b.line, b.reason) for b in bad] == [(3, "empty_field")]
    records, bad = split(read_input(FIX / "qa.tsv", question_column="q", answer_column="a"))
    assert len(records) == 1 and records[0].answer.startswith("Give paracetamol syrup") and not bad


def test_csv_missing_column_is_one_line_error():
    with pytest.raises(InputError, match="column 'question' not in the header"):
        list(read_input(FIX / "qa.csv"))


def test_ids_are_stable_and_distinct():
    a, _ = split(read_input(RAW / "icliniq_2k_chat.jsonl"))
    b, _ = split(read_input(RAW / "icliniq_2k_chat.jsonl"))
    assert [r.id for r in a] == [r.id for r in b]
    assert len({r.id for r in a}) == len(a)
    assert a[0].id == make_id("icliniq_2k_chat", 1, a[0].question) and a[0].id.startswith("icliniq_2k_chat-")


def test_missing_file_is_an_input_error():
    with pytest.raises(InputError, match="input file not found"):
        list(read_input(FIX / "nope.jsonl"))


def test_bad_encoding_and_huge_record_are_quarantined(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"input": "Q?", "output": "A."}).encode()
    path.write_bytes(good + b"\n" + b'{"input": "caf\xe9", "output": "x"}\n'
                     + json.dumps({"input": "Q", "output": "x" * 5000}).encode() + b"\n")
    records, bad = split(read_input(path, fmt="chatdoctor_jsonl", max_record_bytes=2000))
    assert len(records) == 1
    assert [(b.line, b.reason) for b in bad] == [(2, "bad_encoding"), (3, "record_too_large")]


def test_broken_json_array_reports_the_line(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text('[\n {"input": "Q1", "output": "A1"},\n {"input": "Q2", "output": \n]\n')
    records, bad = split(read_input(path))
    assert len(records) == 1 and len(bad) == 1 and bad[0].reason == "malformed_json" and bad[0].line in (3, 4)


def test_undetectable_format_is_one_line_error(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("just some text\n")
    with pytest.raises(InputError, match="cannot detect the input format"):
        detect_format(path)
