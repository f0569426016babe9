"""Personal-data scrubbing with regex rule tables (no model download at run time).

Kinds: EMAIL, URL, PHONE, ID (record numbers after an explicit label) and NAME (one or
two capitalised words after a salutation, a title, "my name is", a sign-off, ...; the
trigger list and the words that are never names live in the config). Ages, doses, lab
values and dates are kept: phone numbers need 7–15 digits in phone-like groups, and
numbers followed by a unit or "years/yrs/yo" are left alone.

`find_pii` returns the spans (for tests and the recall/precision measurement);
`scrub_pii` replaces them with the configured placeholders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from healthai.config.curation import CurationConfig
from healthai.data.language import STOPWORDS
from healthai.data.textmatch import Matcher, folded

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
URL = re.compile(
    r"\b(?:[Hh][Tt][Tt][Pp][Ss]?://|[Ff][Tt][Pp]://|[Ww][Ww][Ww]\.)[^\s<>\"')\]]+"
    r"|\b(?:[a-z0-9-]{2,}\.)+(?:com|org|net|edu|gov|info|biz|io|in|uk|us|ca|au|co|me|health|pk|ph|ng)"
    r"(?:/[^\s<>\"')\]]*)?(?![\w@])")
PHONE = re.compile(
    r"(?<![\w/.,+-])(?:\+\s?\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{2,15}(?:[\s.-]\d{2,6}){0,4}(?![\w/]|[.,]\d)")
_UNIT_AFTER = re.compile(
    r"\s*(?:%|mg|mcg|µg|ug|g|kg|lbs?|ml|mmol|iu|units?|cells|mm|cm|years?|yrs?|yo|y/o|months?|weeks?|days?|"
    r"hours?|hrs?|minutes?|mins?|times|tablets?|tabs?|caps?|per|calories|kcal|cal|steps|/)(?!\w)", re.I)
_DATE = re.compile(r"^\d{4}[-.]\d{1,2}[-.]\d{1,2}$|^\d{1,2}[-.]\d{1,2}[-.]\d{2,4}$")
ID_LABEL = re.compile(
    r"\b(?:mrn|uhid|patient\s+(?:id|no|number)|id\s*(?:no|number)?|reg(?:istration)?\s*(?:no|number)|"
    r"aadhaa?r(?:\s+(?:no|number))?|ssn|social\s+security\s+(?:no|number)|passport\s*(?:no|number)?|"
    r"insurance\s+(?:id|no|number)|policy\s+(?:no|number)|case\s+(?:no|number))\b[\s.:#-]*(?:is\s+)?"
    r"(?=[A-Z0-9-]*\d)([A-Z0-9][A-Z0-9-]{3,})", re.I)
_EMAIL_M, _URL_M, _ID_M = Matcher(EMAIL), Matcher(URL), Matcher(ID_LABEL)
_DIGIT = re.compile(r"\d")
_NAME_TOKEN = re.compile(r"\s*(?:([A-Z][a-z]+(?:['’-][A-Za-z]+)?)|([A-Z])\.)")
_ANY_TOKEN = re.compile(r"\s*([A-Za-z][a-z]+(?:['’-][A-Za-z]+)?)")


@dataclass(frozen=True)
class Span:
    kind: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class _Rules:
    triggers: tuple[Matcher, ...]
    loose: tuple[bool, ...]
    not_names: frozenset


@lru_cache(maxsize=8)
def _rules(triggers: tuple[str, ...], intro: tuple[str, ...], not_names: tuple[str, ...]) -> _Rules:
    compiled = tuple(Matcher(re.compile(t, re.I)) for t in triggers + intro)
    # After "my name is" a lower-case name still counts.
    loose = (False,) * len(triggers) + (True,) * len(intro)
    return _Rules(compiled, loose, frozenset(w.lower() for w in not_names) | STOPWORDS)


def _name_spans(text: str, rules: _Rules, lowered: str | None) -> list[Span]:
    spans = []
    for trigger, loose in zip(rules.triggers, rules.loose):
        if not trigger.possible(lowered):
            continue
        for match in trigger.pattern.finditer(text):
            pos = match.end()
            start = end = None
            for _ in range(3):  # up to three name tokens: "Anna Maria Lopez", "A. Sharma"
                if loose and start is None:
                    tok = _ANY_TOKEN.match(text, pos)
                    initial = False
                else:
                    tok = _NAME_TOKEN.match(text, pos)
                    initial = bool(tok and tok.group(2))
                if not tok:
                    break
                group = 2 if initial else 1
                if not initial and tok.group(1).lower().replace("’", "'") in rules.not_names:
                    break
                if start is None:
                    start = tok.start(group)
                end = tok.end()
                pos = tok.end()
            if start is not None and end is not None:
                spans.append(Span("NAME", start, end, text[start:end]))
    return spans


def _phone_spans(text: str) -> list[Span]:
    spans = []
    for match in PHONE.finditer(text):
        value = match.group(0)
        digits = sum(ch.isdigit() for ch in value)
        if not 7 <= digits <= 15:
            continue
        if _DATE.match(value.strip()) or _UNIT_AFTER.match(text, match.end()):
            continue
        if re.fullmatch(r"\d{1,4}\s?-\s?\d{1,4}", value.strip()):
            continue  # "1500-2000": a range
        if " " in value.strip() and not re.search(r"[+()-]", value) and digits < 10:
            continue  # "120 80 95": several numbers in a row, not one number
        spans.append(Span("PHONE", match.start(), match.end(), value))
    return spans


def find_pii(text: str, cfg: CurationConfig) -> list[Span]:
    """Non-overlapping spans of personal data, earliest and longest first."""
    rules = _rules(tuple(cfg.pii_name_triggers), tuple(cfg.pii_name_intro_triggers), tuple(cfg.pii_not_names))
    lowered = folded(text)  # the literal pre-checks (textmatch) skip patterns that cannot match
    spans = []
    if _EMAIL_M.possible(lowered):
        spans += [Span("EMAIL", m.start(), m.end(), m.group(0)) for m in EMAIL.finditer(text)]
    if _URL_M.possible(lowered):
        spans += [Span("URL", m.start(), m.end(), m.group(0).rstrip(".,;:")) for m in URL.finditer(text)]
    if _DIGIT.search(text):  # record numbers and phone numbers hold digits
        if _ID_M.possible(lowered):
            spans += [Span("ID", m.start(1), m.end(1), m.group(1)) for m in ID_LABEL.finditer(text)]
        spans += _phone_spans(text)
    spans += _name_spans(text, rules, lowered)
    spans = [Span(s.kind, s.start, s.start + len(s.text), s.text) if s.kind == "URL" else s for s in spans]
    chosen: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if chosen and span.start < chosen[-1].end:
            continue
        chosen.append(span)
    return chosen


def scrub_pii(text: str, cfg: CurationConfig) -> tuple[str, list[Span]]:
    """Replace every personal-data span with its placeholder; returns the text and the spans."""
    spans = find_pii(text, cfg)
    if not spans:
        return text, spans
    out, pos = [], 0
    for span in spans:
        out.append(text[pos:span.start])
        out.append(cfg.pii_placeholders[span.kind])
        pos = span.end
    out.append(text[pos:])
    return "".join(out), spans


def measure(cases: list[dict], cfg: CurationConfig) -> dict:
    """Recall and precision of `find_pii` on labelled cases `{"text", "pii": [{"type", "value"}]}`.

    A labelled value counts as found when one detected span covers it; a detected span
    that overlaps no labelled value is a false positive.
    """
    labelled = found = detected = true_spans = 0
    by_kind: dict[str, list[int]] = {}
    misses = []
    false_positives = []
    for case in cases:
        text = case["text"]
        spans = find_pii(text, cfg)
        targets = []
        for item in case.get("pii", []):
            start = text.find(item["value"])
            if start < 0:
                raise ValueError(f"labelled value {item['value']!r} not in {text!r}")
            targets.append((item["type"], start, start + len(item["value"])))
        for kind, start, end in targets:
            hit = any(s.start <= start and s.end >= end for s in spans)
            labelled += 1
            found += hit
            by_kind.setdefault(kind, [0, 0])
            by_kind[kind][0] += 1
            by_kind[kind][1] += hit
            if not hit:
                misses.append((text, kind, text[start:end]))
        for span in spans:
            detected += 1
            if any(span.start < end and span.end > start for _, start, end in targets):
                true_spans += 1
            else:
                false_positives.append((text, span.kind, span.text))
    return {
        "cases": len(cases),
        "labelled": labelled,
        "recall": found / labelled if labelled else 1.0,
        "precision": true_spans / detected if detected else 1.0,
        "recall_by_kind": {k: v[1] / v[0] for k, v in sorted(by_kind.items())},
        "misses": misses,
        "false_positives": false_positives,
    }
