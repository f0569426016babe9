"""Stage 2 quality rules: structure, answer length, dosages, forbidden phrases.

Pure functions over records and strings; every list and threshold comes from the
`filter` config section. `filter_record` applies the rules in order and returns either
the cleaned (question, answer) pair or the first failed rule as a rejection reason.

    result = filter_record(record, cfg.filter)
    if result.reason: rejected.write_record(result.rejected(record))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from healthai.config.filtering import FilterConfig

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def normalise_apostrophes(text: str) -> str:
    """Curly and modifier apostrophes -> ASCII, so "don’t worry" matches "don't worry"."""
    return text.translate(_APOSTROPHES)


def count_words(text: str) -> int:
    return len(text.split())


# -- structure -----------------------------------------------------------------------
def check_structure(record: dict) -> tuple[str, str] | None:
    """None when `record` has exactly one user turn then one assistant turn with non-empty text;
    else (reason, detail)."""
    messages = record.get("messages")
    if not isinstance(messages, list):
        return "bad_structure", f"'messages' must be a list, got {type(messages).__name__}"
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles != ["user", "assistant"]:
        return "bad_structure", f"expected roles [user, assistant], got {roles}"
    for m in messages:
        content = m.get("content")
        if not isinstance(content, str):
            return "bad_structure", f"{m['role']} content must be a string, got {type(content).__name__}"
        if not content.strip():
            return "bad_structure", f"empty {m['role']} content"
    if not isinstance(record.get("id"), str) or not record["id"]:
        return "bad_structure", "missing or non-string 'id'"
    return None


# -- dosages -------------------------------------------------------------------------
@lru_cache(maxsize=32)
def _dosage_regex(units: tuple[str, ...], not_after: tuple[str, ...], freqs: tuple[str, ...],
                  words: tuple[str, ...] = ()) -> re.Pattern:
    digits = r"\d+(?:[.,]\d+)?(?:\s*(?:-|to|/)\s*\d+(?:[.,]\d+)?)?"
    spelled = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=len, reverse=True))
    number = rf"{digits}|\b(?:{spelled})" if spelled else digits
    unit = "|".join(f"(?:{u})" for u in units)
    lab = "|".join(re.escape(s) for s in not_after)
    amount = rf"(?<![\w.])(?:{number})\s*(?:{unit})\b" + (rf"(?!\s*(?:{lab}))" if lab else "")
    freq = "|".join(f"(?:{f})" for f in freqs)
    parts = [amount] + ([rf"\b(?:{freq})(?!\w)"] if freq else [])
    return re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE)


def dosage_regex(cfg: FilterConfig) -> re.Pattern:
    return _dosage_regex(tuple(cfg.dosage_units), tuple(cfg.dosage_not_after), tuple(cfg.dosage_frequencies),
                         tuple(cfg.dosage_number_words))


def find_dosages(text: str, cfg: FilterConfig) -> list[str]:
    """Every specific dose or regimen in `text`: "500 mg", "2 tablets", "every 6 hours", "twice daily"."""
    return [m.group(0) for m in dosage_regex(cfg).finditer(text)]


# -- forbidden phrases -----------------------------------------------------------------
@lru_cache(maxsize=32)
def _phrase_regex(phrases: tuple[str, ...]) -> re.Pattern | None:
    if not phrases:
        return None
    alts = sorted((re.escape(normalise_apostrophes(p.lower())).replace(r"\ ", r"\s+") for p in phrases),
                  key=len, reverse=True)
    return re.compile(rf"\b(?:{'|'.join(alts)})\b", re.IGNORECASE)


def find_forbidden(text: str, cfg: FilterConfig) -> list[str]:
    """Forbidden phrases present in `text` (case-insensitive, whole words)."""
    regex = _phrase_regex(tuple(cfg.forbidden_phrases))
    return [] if regex is None else [m.group(0) for m in regex.finditer(normalise_apostrophes(text))]


def remove_forbidden(text: str, cfg: FilterConfig) -> str:
    """Remove every forbidden phrase without leaving a broken sentence.

    A phrase that opens a sentence is cut with the rest of its clause
    ("Don't worry, rest and drink fluids." -> "Rest and drink fluids."); a sentence with a
    phrase inside it is dropped whole ("It is nothing to worry about, it is common." -> "").
    """
    regex = _phrase_regex(tuple(cfg.forbidden_phrases))
    text = normalise_apostrophes(text)
    if regex is None or not regex.search(text):
        return text
    clause = re.compile(rf"^\s*(?:{regex.pattern})[^.!?,;\n]*[\s,;:!.?-]*", re.IGNORECASE)
    kept = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        while regex.search(sentence):
            cut = clause.sub("", sentence, count=1)
            if cut == sentence:  # the phrase sits inside the sentence: drop it whole
                sentence = ""
                break
            sentence = cut[:1].upper() + cut[1:]
        if sentence.strip():
            kept.append(sentence.strip())
    out = " ".join(kept)
    # a phrase split over a line break ("nothing to\nworry") meets again once joined: one more pass (no "\n" left)
    return remove_forbidden(out, cfg) if "\n" in text and regex.search(out) else out


# -- the whole rule set ----------------------------------------------------------------
@dataclass
class FilterResult:
    """Outcome of `filter_record`: the cleaned pair, or the failed rule."""

    question: str = ""
    answer: str = ""
    reason: str | None = None
    detail: str = ""
    phrases_removed: int = 0

    def rejected(self, record: object) -> dict:
        rid = record.get("id") if isinstance(record, dict) else None
        return {"id": rid if isinstance(rid, str) else None, "reason": self.reason, "detail": self.detail,
                "record": record}


def filter_record(record: dict, cfg: FilterConfig) -> FilterResult:
    """Apply structure -> forbidden phrases -> length -> dosage, first failure wins."""
    bad = check_structure(record)
    if bad:
        return FilterResult(reason=bad[0], detail=bad[1])
    question = record["messages"][0]["content"].strip()
    answer = record["messages"][1]["content"].strip()
    removed = 0
    phrases = find_forbidden(answer, cfg)
    if phrases:
        if cfg.forbidden_policy == "reject":
            return FilterResult(reason="forbidden_phrase", detail=f"contains {phrases[0]!r}")
        answer = remove_forbidden(answer, cfg)
        removed = len(phrases)
    words = count_words(answer)
    if words < cfg.min_words:
        return FilterResult(reason="too_short", detail=f"{words} words < min_words={cfg.min_words}")
    if words > cfg.max_words:
        return FilterResult(reason="too_long", detail=f"{words} words > max_words={cfg.max_words}")
    doses = find_dosages(answer, cfg)
    if doses:
        return FilterResult(reason="dosage", detail=f"specific dosage {doses[0]!r}")
    return FilterResult(question=question, answer=answer, phrases_removed=removed)
