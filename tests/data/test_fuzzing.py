"""Property-based fuzzing (hypothesis) of everything that parses outside data or rewrites its text (issue 13).

Fuzzed targets:
- the input readers (`healthai.data.readers.read_input`: JSON array, the JSONL formats, CSV/TSV); the bare
  JSONL reader `healthai.pipeline.io.iter_jsonl` is fuzzed in test_reliability.py;
- the text cleaning and phrase-removal rules (`healthai.data.cleaning`, `filtering.remove_forbidden`);
- the dosage detector (`filtering.find_dosages`) and the whole stage-2 rule chain (`filter_record`);
- the extraction of the rewriter LLM's JSON reply (`rewriting.extract_json`);
- the review-CSV parser (`review.parse_review_csv`).

Inputs: arbitrary unicode with control characters, NUL, BOM, CRLF and lone CR, fragments that trigger
the rules (doses, greetings, the ChatDoctor token, HTML, mojibake), very long lines, JSON nested up to
10,000 levels, truncated files, code fences, escaped unpaired surrogates, empty files, wrong column counts.

The property: never an exception other than the package's own one-line errors (InputError naming the
file, and the line where there is one); a reader over many records accounts for each of them
(non-blank records in = kept + rejected, every rejection with a reason and its line).
"""

from __future__ import annotations

import csv
import io
import json
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from healthai.data.cleaning import clean_text, compile_rules, remove_boilerplate, residual_boilerplate, split_sentences, strip_greeting, word_count
from healthai.config.curation import CurationConfig
from healthai.config.filtering import FilterConfig
from healthai.errors import InputError
from healthai.data.filtering import filter_record, find_dosages, find_forbidden, remove_forbidden
from healthai.pipeline.io import BadLine, dumps
from healthai.data.readers import RawRecord, read_input
from healthai.data.review import COLUMNS, ReviewRow, parse_review_csv
from healthai.data.rewriting import extract_json

CURATION = CurationConfig()
RULES = compile_rules(CURATION)
FILTER = FilterConfig()
# 200 examples keep each test under ~10 s on the loaded 2-core CI box
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# Pieces that make the rules fire, mixed into random text so the fuzzer reaches their branches.
FRAGMENTS = ["500 mg", "2 tablets", "one and a half tablet", "1.5-2 ml", "twice daily", "3 times a day",
             "120 mg/dL", "5 mg.", "10%", "Hi,", "Hello Dr. X.", "Dear Sir,", "Good morning", "ChatDoctor",
             "Chat Doctor.", "(attachment removed to protect patient identity)", "( ... )", "Cellophane You",
             "Hope this helps.", "hope I have answered", "Have a nice day", "don't worry", "don\u2019t worry",
             "nothing to worry", "let me know", "&amp;", "&#0;", "&lt;b&gt;", "<br>", "<b>", "</p>",
             "\u00e2\u20ac\u2122", "Ã©", "...", "....", "!!!", "??", ", ,", "e.g.", "Dr.", "J.", "\n", "\r\n", "\r",
             "\t", "\x00", "\x1f", "\x7f", "\ufeff", "\u200b", "\u2028", "\u00a0", " ", ". ", "ß", "\ufb01", "İ",
             "\u0301", "😀", "```", "{", "}", '"', "'", "\\", ",", ";"]
messy_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=12), max_size=40).map("".join)
long_text = st.tuples(st.sampled_from(FRAGMENTS) | st.text(min_size=1, max_size=8),
                      st.integers(500, 5_000)).map(lambda t: t[0] * t[1])  # one very long line
any_text = st.one_of(messy_text, messy_text, st.text(), long_text)

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | messy_text,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(messy_text, inner, max_size=3),
                           max_leaves=12)
# lone surrogates: json.dumps writes them as "\\ud800" escapes (ensure_ascii) or as bytes that are not UTF-8
field_value = st.one_of(messy_text, messy_text, json_values, st.sampled_from(["a\ud800b", "\udfff"]))


def _one_line(exc: InputError, path) -> None:
    assert exc.file == str(path) and exc.reason
    assert "\n" not in str(exc) and "\r" not in str(exc), str(exc)


# -- cleaning and phrase removal -------------------------------------------------------------------
@FUZZ
@given(text=any_text)
def test_cleaning_rules_never_crash_and_leave_no_control_characters(text):
    cleaned = clean_text(text, CURATION, RULES)
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", cleaned)
    assert cleaned == cleaned.strip()
    stripped = remove_boilerplate(cleaned, CURATION, RULES)
    assert isinstance(stripped, str) and stripped == stripped.strip()
    assert all(s and s == s.strip() for s in split_sentences(stripped))
    assert isinstance(residual_boilerplate(stripped, RULES), list)
    assert isinstance(strip_greeting(text, RULES), str) and word_count(text) >= 0


# forbidden phrases with any whitespace between their words (a line break too), amid other text
SEPARATORS = [" ", "  ", "\n", "\r\n", "\t", "\n\n"]
spaced_phrase = st.sampled_from(FILTER.forbidden_phrases).flatmap(lambda p: st.lists(
    st.sampled_from(SEPARATORS), min_size=p.count(" "), max_size=p.count(" ")).map(
    lambda seps: "".join(w + s for w, s in zip(p.split(), [*seps, ""]))))
phrase_text = st.lists(spaced_phrase | messy_text | st.sampled_from([", ", ". ", "\n", "Rest well"]),
                       max_size=12).map("".join)


@FUZZ
@given(text=any_text | phrase_text)
@example(text="NOTHING TO\nWORRY")  # found by this test: sentences split at the line break, then joined
def test_forbidden_phrase_removal_leaves_none_behind(text):
    out = remove_forbidden(text, FILTER)
    assert find_forbidden(out, FILTER) == [], (text, out)


# -- dosage detector and the stage-2 rule chain ----------------------------------------------------
@FUZZ
@given(text=any_text)
def test_dosage_detector_never_crashes_and_returns_parts_of_the_text(text):
    assert all(isinstance(found, str) and found and found in text for found in find_dosages(text, FILTER))


@FUZZ
@given(before=messy_text, after=messy_text)
def test_a_dose_in_any_context_is_found(before, after):
    # " take " / " daily. " fence the dose off from whatever random text stands around it
    found = find_dosages(f"{before} take 500 mg daily. {after}", FILTER)
    assert any(re.fullmatch(r"500\s*mg", f, re.I) for f in found), found


message = st.fixed_dictionaries({}, optional={"role": st.sampled_from(["user", "assistant", "system", None, 3]),
                                              "content": field_value})
filter_records = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"id": field_value,
                                        "messages": st.lists(message | json_values, max_size=3) | field_value}),
    st.tuples(messy_text, any_text).map(lambda qa: {"id": "r", "messages": [
        {"role": "user", "content": qa[0]}, {"role": "assistant", "content": qa[1]}]}),
)


@FUZZ
@given(records=st.lists(filter_records, max_size=5))
def test_filter_keeps_or_rejects_every_record_with_a_reason(records):
    kept = rejected = 0
    for record in records:
        result = filter_record(record if isinstance(record, dict) else {"messages": record}, FILTER)
        if result.reason:
            assert result.detail
            assert dumps(result.rejected(record))  # the rejected.jsonl entry can be written
            rejected += 1
        else:
            assert result.answer.strip() and isinstance(result.question, str)
            kept += 1
    assert kept + rejected == len(records)


# -- the rewriter LLM's JSON reply -----------------------------------------------------------------
plain = st.text(st.characters(exclude_characters="{}[]`<'\"\\"), max_size=60)  # prose with no JSON syntax
reply_text = st.text(st.characters(exclude_characters="`<"), max_size=300).filter(str.strip)
reply_objects = st.fixed_dictionaries({"rewritten": reply_text,
                                       "is_urgent": st.sampled_from([True, False, "true", "False", "yes", "no"])})


def _wrap(obj: dict, style: str, before: str, after: str, indent: int | None) -> str:
    body = json.dumps(obj, ensure_ascii=False, indent=indent)
    if style == "fence":
        body = f"```json\n{body}\n```"
    elif style == "think":
        body = f"<think>{{not json}}</think>{body}"
    return f"{before}{body}{after}"


nested = st.integers(1, 10_000).flatmap(lambda n: st.sampled_from([
    "[" * n, "{" * min(n, 3000), '{"a":' * n, '{"rewritten": ' + "[" * n + ', "is_urgent": true}',
    '{"a":' * n + "1" + "}" * n, '{"rewritten": "x", "is_urgent": true, "z": ' + "[" * n + "]" * n + "}"]))
replies = st.one_of(
    any_text, nested,
    st.builds(_wrap, reply_objects, st.sampled_from(["bare", "fence", "think"]), plain, plain,
              st.sampled_from([None, 2])).flatmap(lambda s: st.sampled_from([s, s[:len(s) // 2], s[:-1]])),
    st.builds(lambda n, u: json.dumps({"rewritten": "x" * n, "is_urgent": u}), st.integers(10_000, 200_000),
              st.booleans()),  # a very long line
)


@FUZZ
@given(reply=replies)
def test_json_extraction_returns_a_valid_reply_or_a_reason(reply):
    obj, why = extract_json(reply)
    if obj is None:
        assert why
    else:
        assert why == "" and set(obj) == {"rewritten", "is_urgent"} and isinstance(obj["is_urgent"], bool)
        assert obj["rewritten"] and obj["rewritten"] == " ".join(obj["rewritten"].split())


@FUZZ
@given(obj=reply_objects, style=st.sampled_from(["bare", "fence", "think"]), before=plain, after=plain,
       indent=st.sampled_from([None, 2]))
def test_a_well_formed_reply_is_extracted_whatever_surrounds_it(obj, style, before, after, indent):
    got, why = extract_json(_wrap(obj, style, before, after, indent))
    assert why == "" and got["rewritten"] == " ".join(obj["rewritten"].split())
    assert got["is_urgent"] == (str(obj["is_urgent"]).lower() in ("true", "yes"))


# -- the review CSV ---------------------------------------------------------------------------------
cells = {"id": st.sampled_from(["r1", "r2", "r3", "", " ", "r1 "]) | messy_text,
         "is_urgent": st.sampled_from(["true", "false", "TRUE", "1", "n", "", "perhaps"]),
         "decision": st.sampled_from(["", "accept", "Accepted", "a", "reject", "edit", "skip", "maybe"]) | messy_text,
         "edited_answer": st.sampled_from(["", "", "A better answer."]) | messy_text}
review_rows = st.fixed_dictionaries({c: cells.get(c, any_text) for c in COLUMNS})
headers = st.one_of(st.just(list(COLUMNS)), st.permutations(list(COLUMNS)), st.just([*COLUMNS, "extra"]),
                    st.just([c.upper() for c in COLUMNS]), st.just(list(COLUMNS[:-1])), st.lists(messy_text, max_size=4))


@st.composite
def review_files(draw) -> tuple[bytes, list[dict] | None]:
    """A review CSV as bytes, and the rows it holds when the file was written whole by a CSV writer."""
    kind = draw(st.sampled_from(["csv", "csv", "csv", "truncated", "bytes", "empty"]))
    if kind == "bytes":
        return draw(st.binary(max_size=400)), None
    if kind == "empty":
        return draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\r\n\r\n", b" \n"])), None
    header = draw(headers)
    rows = draw(st.lists(review_rows, max_size=6))
    ragged = draw(st.booleans())  # rows with a missing or an extra field
    buf = io.StringIO()
    crlf = draw(st.booleans())  # a "\n" writer leaves a bare "\r" unquoted: quote all there
    writer = csv.writer(buf, lineterminator="\r\n" if crlf else "\n",
                        quoting=csv.QUOTE_MINIMAL if crlf else csv.QUOTE_ALL)
    writer.writerow(header)
    written = []
    for row in rows:
        values = [row.get(c, "") for c in header]
        if ragged and draw(st.booleans()):
            values = values[:-1] if draw(st.booleans()) else [*values, "x"]
        writer.writerow(values)
        written.append(values)
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + buf.getvalue().encode("utf-8", "surrogatepass")
    if kind == "truncated":
        return data[:draw(st.integers(0, len(data)))], None
    return data, written


@FUZZ
@given(file=review_files())
def test_review_csv_gives_every_row_or_one_line_error_with_file_and_line(tmp_path, file):
    data, written = file
    path = tmp_path / "review.csv"
    path.write_bytes(data)
    try:
        rows = parse_review_csv(path)
    except InputError as exc:
        _one_line(exc, path)
        assert exc.line >= 1
        return
    assert all(isinstance(r, ReviewRow) and r.id and r.line >= 2 for r in rows)
    if written is not None:  # nothing lost: every non-blank row came back (a bad one would have raised)
        assert len(rows) == sum(1 for values in written if any(v.strip() for v in values))


# -- the readers ------------------------------------------------------------------------------------
evals_item = st.fixed_dictionaries({}, optional={"input": field_value | st.lists(message, max_size=3),
                                                 "ideal": field_value | st.lists(field_value, max_size=2)})
reader_records = {
    "chatdoctor_jsonl": st.fixed_dictionaries({}, optional={"instruction": field_value, "input": field_value,
                                                            "output": field_value}),
    "messages": st.fixed_dictionaries({}, optional={"messages": st.lists(message | json_values, max_size=4)
                                                    | field_value}),
    "evals_chat": st.fixed_dictionaries({}, optional={"chat": st.lists(evals_item | json_values, max_size=3)
                                                      | field_value}),
}
bad_lines = st.one_of(st.binary(max_size=200), nested.map(str.encode), st.just(b'{"input": "\\ud800", "output": "a"}'),
                      json_values.map(lambda v: json.dumps(v).encode()[:-1]))  # garbage, deep, surrogate, truncated


def _check_items(items, path) -> None:
    for item in items:
        if isinstance(item, BadLine):
            assert item.reason and item.detail and item.line >= 1 and item.file == str(path)
            assert dumps(item.rejected()).encode("utf-8")
        else:
            assert isinstance(item, RawRecord) and item.question.strip() and item.answer.strip()
            assert dumps([item.id, item.question, item.answer, item.extra]).encode("utf-8")  # writable


@FUZZ
@given(fmt=st.sampled_from(sorted(reader_records)), data=st.data(), bom=st.booleans(), crlf=st.booleans())
def test_jsonl_readers_keep_or_reject_every_line(tmp_path, fmt, data, bom, crlf):
    lines = data.draw(st.lists(st.tuples(reader_records[fmt], st.booleans()).map(lambda r: json.dumps(
        r[0], ensure_ascii=r[1]).encode("utf-8", "surrogatepass")) | bad_lines, max_size=8))
    flat = [part for line in lines for part in line.replace(b"\r", b" ").split(b"\n")]
    path = tmp_path / "in.jsonl"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + (b"\r\n" if crlf else b"\n").join(flat))
    items = list(read_input(path, fmt=fmt, max_record_bytes=50_000))
    _check_items(items, path)
    parts = path.read_bytes().split(b"\n")
    parts[0] = parts[0].removeprefix(b"\xef\xbb\xbf")  # one BOM opening the file is not content
    non_blank = {i for i, part in enumerate(parts, start=1) if part.strip()}
    assert {item.line for item in items} == non_blank  # one line may give several records (evals chat)


@FUZZ
@given(values=st.lists(reader_records["chatdoctor_jsonl"] | json_values, max_size=6),
       indent=st.sampled_from([None, 1]), ascii=st.booleans(), cut=st.none() | st.integers(0, 10_000), junk=bad_lines)
def test_json_array_reader_keeps_or_rejects_every_element(tmp_path, values, indent, ascii, cut, junk):
    text = json.dumps(values, indent=indent, ensure_ascii=ascii).encode("utf-8", "surrogatepass")
    path = tmp_path / "in.json"
    path.write_bytes(text if cut is None else text[:cut] + junk)
    try:
        items = list(read_input(path, fmt="chatdoctor_json", max_record_bytes=50_000))
    except InputError as exc:  # not UTF-8, or no array at all: the file cannot be read
        assert cut is not None or not ascii
        _one_line(exc, path)
        return
    _check_items(items, path)
    if cut is None:
        assert len(items) == len(values)  # chatdoctor records give one pair each


@FUZZ
@given(rows=st.lists(st.lists(any_text, min_size=1, max_size=4), max_size=6), delimiter=st.sampled_from([",", "\t"]),
       header=st.sampled_from([["question", "answer"], ["id", "question", "answer"], ["Question", "answer"]]),
       crlf=st.booleans(), bom=st.booleans(), cut=st.none() | st.integers(0, 2000))
def test_table_reader_keeps_or_rejects_every_row(tmp_path, rows, delimiter, header, crlf, bom, cut):
    buf = io.StringIO()
    # a "\n" writer leaves a bare "\r" unquoted, which a reader rightly takes as a row end: quote all there
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n",
                        quoting=csv.QUOTE_MINIMAL if crlf else csv.QUOTE_ALL)
    writer.writerows([header, *rows])
    data = (b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8", "surrogatepass")
    path = tmp_path / ("in.csv" if delimiter == "," else "in.tsv")
    path.write_bytes(data if cut is None else data[:cut])
    try:
        items = list(read_input(path, max_record_bytes=50_000))
    except InputError as exc:  # no usable header, or the cut split a UTF-8 character
        assert cut is not None or "question" not in header
        _one_line(exc, path)
        return
    _check_items(items, path)
    if cut is None:
        assert len(items) == sum(1 for r in rows if any(c.strip() for c in r))


def test_an_escaped_unpaired_surrogate_is_rejected_with_its_line(tmp_path):
    # found by the fuzzing above: "\ud800" decoded to a str that crashed the id hash (UnicodeEncodeError)
    line = b'{"input": "pain \\ud800", "output": "rest"}'
    good = b'{"input": "smile \\ud83d\\ude00", "output": "rest"}'  # a valid surrogate pair is fine
    (tmp_path / "in.jsonl").write_bytes(line + b"\n" + good + b"\n")
    (tmp_path / "in.json").write_bytes(b"[" + line + b",\n" + good + b"]")
    for path, fmt in ((tmp_path / "in.jsonl", "chatdoctor_jsonl"), (tmp_path / "in.json", "chatdoctor_json")):
        bad, ok = list(read_input(path, fmt=fmt))
        assert isinstance(bad, BadLine) and bad.reason == "bad_encoding" and bad.line == 1
        assert isinstance(ok, RawRecord) and ok.question == "smile \U0001f600" and ok.line == 2
