"""Read and clean the medicine catalogue: rows with CSV line numbers, composition parsing, phrase lists.

    rows, bad = read_csv_rows(path, required=cfg.required_columns)     # bad: malformed CSV rows
    kept, rejected = clean_medicines(rows, cfg)                         # incomplete, duplicates, boilerplate
    parse_composition("Amoxycillin  (500mg) +  Clavulanic Acid (125mg)")
    split_phrases("Treatment of Acid refluxTreatment of Peptic ulcer", cfg.phrase_connectors)

Medicine_Details.csv is scraped: `Uses` and `Side_effects` are phrase lists joined by
spaces, `Composition` is "Ingredient (strength) + Ingredient (strength)", and a few rows
carry a template's advice paragraph ("$name is thought to work…").
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from healthai.errors import InputError


@dataclass
class Ingredient:
    """One active ingredient of a product."""

    name: str
    """As written, strengths removed, spaces normalised ("Clavulanic Acid", "Calcitonin (Salmon)")."""
    base: str
    """Lower-case, every parenthesis removed: the name used for split keys and matching."""
    strength: str | None = None
    """Number as written ("500", "0.025"), None when the catalogue gives none ("NA")."""
    unit: str | None = None
    """Unit as written, normalised spacing ("mg", "mcg", "mg/5ml", "% w/v", "IU")."""
    detail: str | None = None
    """Text of a non-strength parenthesis inside the name ("Salmon", "Pyridoxine")."""

    def label(self) -> str:
        """"Amoxycillin 500 mg" / "Clavulanic Acid" (no strength known)."""
        if self.strength is None:
            return self.name
        sep = "" if (self.unit or "").startswith("%") else " "
        return f"{self.name} {self.strength}{sep}{self.unit}" if self.unit else f"{self.name} {self.strength}"


@dataclass
class Row:
    """One data row of a CSV file and the line it starts on (1 = header)."""

    line: int
    values: dict[str, str]
    raw: str = ""


@dataclass
class RowProblem:
    """A row that cannot be used: file, line, reason, detail and what it held."""

    file: str
    line: int
    reason: str
    detail: str
    record: object = None

    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def rejected(self) -> dict:
        return {"id": self.where(), "reason": self.reason, "detail": self.detail, "record": self.record,
                "source_file": self.file, "source_line": self.line}


@dataclass
class Medicine:
    """A cleaned catalogue row: what the tasks use."""

    line: int
    name: str
    composition: str
    ingredients: list[Ingredient]
    uses: list[str]
    side_effects: list[str]
    extra: dict[str, str] = field(default_factory=dict)


# -- reading -----------------------------------------------------------------------------

def read_csv_rows(path: str | Path, required: list[str] | tuple[str, ...] = (),
                  name: str | None = None) -> tuple[list[str], list[Row], list[RowProblem]]:
    """Header, good rows and malformed rows (wrong field count, bad UTF-8) of a CSV file.

    The line number is where the record starts in the file, so a quoted field that spans
    lines still points at its first line. A missing required column is an InputError.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("input file not found", file=str(path))
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    name = name or str(path)  # how messages and rejected.jsonl name the file (the configured path)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError("empty CSV file (no header)", file=name, line=1) from None
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"missing column(s) {missing} in the header (found {header})", file=name, line=1)
    rows: list[Row] = []
    bad: list[RowProblem] = []
    start = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            bad.append(RowProblem(name, start, "malformed_csv", str(exc), None))
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            bad.append(RowProblem(name, line, "bad_field_count",
                                  f"{len(fields)} fields, header has {len(header)}", fields))
            continue
        if any("\ufffd" in f for f in fields):
            bad.append(RowProblem(name, line, "bad_encoding", "not valid UTF-8", fields))
            continue
        rows.append(Row(line, dict(zip(header, fields))))
    return header, rows, bad


# -- composition ---------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")
_PARENS = re.compile(r"\s*\([^()]*\)")
_TRAILING_GROUP = re.compile(r"\(([^()]*)\)\s*$")
_STRENGTH = re.compile(r"^\s*(\d+(?:[.,]\d+)?)\s*(.*?)\s*$")
_PLUS = re.compile(r"\s+\+\s+|\s*\+\s+|\s+\+\s*")


def normalise_space(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def base_name(name: str) -> str:
    """Lower-case name without any parenthesis: the matching / split-key form."""
    return normalise_space(_PARENS.sub(" ", name)).lower()


def _normalise_unit(unit: str) -> str:
    unit = normalise_space(unit)
    unit = re.sub(r"^%\s*", "% ", unit).strip()  # "%w/v" -> "% w/v"
    return unit


def parse_ingredient(part: str) -> Ingredient:
    """"Fluticasone Propionate (100mcg)" -> Ingredient(name, base, "100", "mcg"); ValueError when empty."""
    text = normalise_space(part)
    strength = unit = None
    group = _TRAILING_GROUP.search(text)
    if group:
        inner = group.group(1).strip()
        m = _STRENGTH.match(inner)
        if m:
            strength, unit = m.group(1).replace(",", "."), _normalise_unit(m.group(2)) or None
            text = text[:group.start()].strip()
        elif inner.upper() in ("NA", "N/A", ""):
            text = text[:group.start()].strip()
    details = re.findall(r"\(([^()]*)\)", text)
    name = normalise_space(text)
    base = base_name(name)
    if not base or not re.search(r"[A-Za-z]", base):
        raise ValueError(f"no ingredient name in {part.strip()!r}")
    return Ingredient(name=name, base=base, strength=strength, unit=unit,
                      detail=normalise_space(" ".join(details)) or None)


def parse_composition(text: str) -> list[Ingredient]:
    """Split "A (5mg) + B (10mg)" into ingredients; ValueError with the reason when it cannot."""
    text = normalise_space(text)
    if not text:
        raise ValueError("empty composition")
    if text.count("(") != text.count(")"):
        raise ValueError(f"unbalanced parentheses in {text!r}")
    parts = _PLUS.split(text)
    if any(not p.strip() for p in parts):
        raise ValueError(f"empty ingredient between '+' signs in {text!r}")
    return [parse_ingredient(p) for p in parts]


# -- phrase lists --------------------------------------------------------------------------

def remove_boilerplate(text: str, openings: list[str]) -> str:
    """Remove every sentence that starts with one of `openings`, up to and including its full stop."""
    for opening in openings:
        text = re.sub(re.escape(opening) + r"[^.]*(?:\.\s*|$)", " ", text)
    return normalise_space(text)


_GLUED = re.compile(r"(?<=[a-z\)\.])(?=[A-Z][a-z])")


def split_phrases(text: str, connectors: list[str] | tuple[str, ...]) -> list[str]:
    """Split a run-together phrase list at each capitalised word that starts a new phrase.

    A Title-case word starts a phrase unless it follows a connector word ("Treatment of
    Type 2 diabetes"), sits inside parentheses, or the previous word ends with a hyphen.
    All-capital tokens ("HIV", "E C G") never start a phrase. Duplicates are dropped.
    """
    text = _GLUED.sub(" ", text.replace("\u00a0", " "))
    connectors = {c.lower() for c in connectors}
    phrases: list[list[str]] = []
    depth = 0
    for token in text.split():
        starts = (depth == 0 and re.match(r"^[A-Z][a-z]", token) is not None
                  and (not phrases or phrases[-1][-1].lower().strip(",;:") not in connectors)
                  and (not phrases or not phrases[-1][-1].endswith(("-", "/", "&"))))
        if starts or not phrases:
            phrases.append([token])
        else:
            phrases[-1].append(token)
        depth = max(0, depth + token.count("(") - token.count(")"))
    out: list[str] = []
    seen = set()
    for words in phrases:
        phrase = " ".join(words).strip(" ,;:.")
        if phrase and phrase.lower() not in seen:
            seen.add(phrase.lower())
            out.append(phrase)
    return out


# -- cleaning ------------------------------------------------------------------------------

def clean_medicines(rows: list[Row], cfg, file: str) -> tuple[list[Medicine], list[RowProblem], dict]:
    """Drop exact duplicates, incomplete records, boilerplate; parse composition and phrase lists.

    Returns (kept medicines, rejected rows with reasons, counts by reason). Pandas does the
    exact-duplicate check on every original column (before any column is dropped).
    """
    if not rows:
        return [], [], {}
    frame = pd.DataFrame([r.values for r in rows])
    frame["_line"] = [r.line for r in rows]
    columns = [c for c in frame.columns if c != "_line"]
    dup_mask = frame.duplicated(subset=columns, keep="first")
    first_line = frame.groupby(columns, sort=False)["_line"].transform("first")
    rejected: list[RowProblem] = []
    counts = {"duplicate": 0, "incomplete": 0, "bad_composition": 0, "boilerplate_removed": 0}
    kept: list[Medicine] = []
    required = list(cfg.required_columns)
    dropped = set(cfg.drop_columns)
    for row, is_dup, first in zip(rows, dup_mask.tolist(), first_line.tolist()):
        line, original = row.line, row.values
        if is_dup:
            counts["duplicate"] += 1
            rejected.append(RowProblem(file, line, "duplicate", f"exact duplicate of line {first}", original))
            continue
        values = {k: v for k, v in original.items() if k not in dropped}
        empty = [c for c in required if not normalise_space(values.get(c, ""))]
        if empty:
            counts["incomplete"] += 1
            rejected.append(RowProblem(file, line, "incomplete", f"empty: {', '.join(empty)}", original))
            continue
        try:
            ingredients = parse_composition(values["Composition"])
        except ValueError as exc:
            counts["bad_composition"] += 1
            rejected.append(RowProblem(file, line, "bad_composition", str(exc), original))
            continue
        uses_text = remove_boilerplate(values["Uses"], cfg.boilerplate_sentences)
        side_text = remove_boilerplate(values["Side_effects"], cfg.boilerplate_sentences)
        if uses_text != normalise_space(values["Uses"]) or side_text != normalise_space(values["Side_effects"]):
            counts["boilerplate_removed"] += 1
        uses = split_phrases(uses_text, cfg.phrase_connectors)
        side_effects = split_phrases(side_text, cfg.phrase_connectors)
        if not uses or not side_effects:
            counts["incomplete"] += 1
            rejected.append(RowProblem(file, line, "incomplete", "no uses or side effects left after cleaning",
                                       original))
            continue
        extra = {k: v for k, v in values.items() if k not in required}
        kept.append(Medicine(line=line, name=normalise_space(values["Medicine Name"]),
                             composition=normalise_space(values["Composition"]), ingredients=ingredients,
                             uses=uses, side_effects=side_effects, extra=extra))
    return kept, rejected, counts
