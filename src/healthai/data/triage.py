"""Triage of patient questions: the urgent detector and the category of the sampling table.

Both are table-driven (patterns, keywords, negation cues and the age limit live in the
`filter` config section) so that the detector can be measured and tuned on a labelled set
without touching code.

    is_urgent("I have crushing chest pain since an hour", cfg.filter)   # True
    is_urgent("No chest pain, only a mild cough", cfg.filter)           # False (negated)
    categorize("My 45 year old husband has a cough", cfg.filter)        # "mild symptoms"
    categorize("My 4 year old son has a cough", cfg.filter)             # "pediatric"

Matching is on word boundaries and case-insensitive. A match is negated when a cue
("no", "without", "denies", ...) stands within `negation_window` words before it in the
same clause (a clause ends at . , ; : ! ? or the word "but"), a small NegEx. An urgent match
also does not count in a historical, hypothetical or chronic context ("ten years ago I had a
stroke", "risk of overdose"; `urgent_context_*` keys, a small ConText), and a fever in a
baby younger than `urgent_infant_max_months` is urgent by itself. The keys were tuned on the
hand-labelled set `data/triage/triage_labels.jsonl` (benchmarks/triage_detector.py, docs/TRIAGE.md).
"""

from __future__ import annotations

import re
from functools import lru_cache

from healthai.config.filtering import FilterConfig
from healthai.data.filtering import normalise_apostrophes

_CLAUSE_END = re.compile(r"[.,;:!?\n]|\bbut\b|\bhowever\b", re.IGNORECASE)
_AGE_KEYWORD = re.compile(r"\b(?:years?|yrs?)[\s-]*old\b", re.IGNORECASE)
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_AGE = re.compile(
    r"\b(\d{1,3}|" + "|".join(_NUMBER_WORDS) + r")(?:\.\d+)?\s*(?:-|\s)?\s*"
    r"(?:and a half\s+)?(years?|yrs?|months?|mo|weeks?|days?)[\s-]*old\b", re.IGNORECASE)


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern:
    # Keyword text is literal unless it carries regex syntax; spaces match any run of spaces.
    body = pattern.replace(" ", r"[\s-]+")
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


@lru_cache(maxsize=32)
def _negation_regex(cues: tuple[str, ...]) -> re.Pattern | None:
    if not cues:
        return None
    alts = sorted((re.escape(normalise_apostrophes(c)).replace(r"\ ", r"\s+") for c in cues), key=len, reverse=True)
    return re.compile(rf"\b(?:{'|'.join(alts)})\b", re.IGNORECASE)


def is_negated(text: str, start: int, cfg: FilterConfig) -> bool:
    """Is the match starting at `start` preceded by a negation cue in the same clause?"""
    cues = _negation_regex(tuple(cfg.negation_cues))
    if cues is None or cfg.negation_window == 0:
        return False
    before = text[:start]
    ends = list(_CLAUSE_END.finditer(before))
    clause = before[ends[-1].end():] if ends else before
    words = clause.split()
    window = " ".join(words[-(cfg.negation_window + 3):])  # +3: a multi-word cue counts as one
    pseudo = _negation_regex(tuple(cfg.negation_pseudo))
    if pseudo is not None:
        window = pseudo.sub(lambda m: "_" * len(m.group(0).split()), window)
    for m in cues.finditer(window):
        # words between the end of the cue and the match
        if len(window[m.end():].split()) <= cfg.negation_window:
            return True
    return False


def find_matches(text: str, patterns: list[str], cfg: FilterConfig) -> list[str]:
    """Patterns with at least one non-negated match in `text`."""
    text = normalise_apostrophes(text)
    hits = []
    for pattern in patterns:
        if any(not is_negated(text, m.start(), cfg) for m in _compile(pattern).finditer(text)):
            hits.append(pattern)
    return hits


@lru_cache(maxsize=32)
def _cue_regex(cues: tuple[str, ...]) -> re.Pattern | None:
    if not cues:
        return None
    alts = "|".join(f"(?:{c.replace(' ', r'[ -]+')})" for c in cues)
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


def in_context(text: str, start: int, end: int, cfg: FilterConfig) -> bool:
    """Is the urgent match text[start:end] historical, hypothetical or chronic (ConText-style)?

    True when a `urgent_context_cues` cue ends within `urgent_context_window` words before the
    match, or a `urgent_context_post_cues` cue starts within that many words after it, in the
    same clause: "ten years ago I had a stroke", "a stroke 15 years back", "risk of overdose".
    """
    window = cfg.urgent_context_window
    if window == 0:
        return False
    before = text[:start]
    ends = list(_CLAUSE_END.finditer(before))
    clause = " ".join(before[ends[-1].end():].split() if ends else before.split())
    pre = _cue_regex(tuple(cfg.urgent_context_cues))
    if pre is not None:
        for m in pre.finditer(clause):
            if len(clause[m.end():].split()) <= window:
                return True
    after = text[end:]
    stop = _CLAUSE_END.search(after)
    clause = " ".join((after[:stop.start()] if stop else after).split())
    post = _cue_regex(tuple(cfg.urgent_context_post_cues))
    if post is not None:
        for m in post.finditer(clause):
            if len(clause[:m.start()].split()) <= window:
                return True
    return False


def infant_fever(question: str, cfg: FilterConfig) -> bool:
    """A fever word (not negated) in a question about a baby younger than `urgent_infant_max_months`."""
    if cfg.urgent_infant_max_months == 0:
        return False
    infant = any(age * 12 < cfg.urgent_infant_max_months for age in parse_ages(question))
    infant = infant or bool(find_matches(question, cfg.urgent_infant_words, cfg))
    return infant and bool(find_matches(question, cfg.urgent_infant_fever_patterns, cfg))


def urgent_matches(question: str, cfg: FilterConfig) -> list[str]:
    """The urgent patterns that fire on `question` (for reports and the labelled-set study).

    A match counts unless it is negated ("no chest pain") or in a historical / hypothetical /
    chronic context (`in_context`); in a question that says it was already evaluated
    (`urgent_evaluated_cues`: "ECG normal", "diagnosed with") the `urgent_evaluated_soft`
    patterns (bare symptom words) do not count; "infant fever" is added for a fever under the infant age.
    """
    text = normalise_apostrophes(question)
    hits = []
    for pattern in cfg.urgent_patterns:
        for m in _compile(pattern).finditer(text):
            if not is_negated(text, m.start(), cfg) and not in_context(text, m.start(), m.end(), cfg):
                hits.append(pattern)
                break
    if hits and _cue_regex(tuple(cfg.urgent_evaluated_cues)) is not None \
            and _cue_regex(tuple(cfg.urgent_evaluated_cues)).search(text):
        # Already seen by a doctor (normal tests, a diagnosis): the soft symptom words no longer count.
        soft = set(cfg.urgent_evaluated_soft)
        hits = [h for h in hits if h not in soft]
    if infant_fever(text, cfg):
        hits.append("infant fever")
    return hits


def is_urgent(question: str, cfg: FilterConfig) -> bool:
    """True when any urgent pattern matches `question` and is not negated."""
    return bool(urgent_matches(question, cfg))


def parse_ages(text: str) -> list[float]:
    """Ages in years written as "<N> year old", "4-year-old", "six months old", "2 yrs old"."""
    ages = []
    for m in _AGE.finditer(text):
        raw, unit = m.group(1).lower(), m.group(2).lower()
        value = float(_NUMBER_WORDS.get(raw, raw) if raw in _NUMBER_WORDS else raw)
        if unit.startswith(("month", "mo")):
            value /= 12
        elif unit.startswith("week"):
            value /= 52
        elif unit.startswith("day"):
            value /= 365
        ages.append(value)
    return ages


def _keyword_hits(question: str, keyword: str, category: str, cfg: FilterConfig) -> bool:
    if category == cfg.pediatric_category and _AGE_KEYWORD.fullmatch(keyword.strip()):
        # "year old" means a child only when the stated age is a child's age.
        return any(age <= cfg.pediatric_max_age for age in parse_ages(question))
    # Keywords are literal words; a plain plural still matches ("child" -> "children", "cough" -> "coughs").
    return bool(find_matches(question, [re.escape(keyword).replace("\\ ", " ") + "(?:s|es|ren)?"], cfg))


def categorize(question: str, cfg: FilterConfig) -> str:
    """The first category (config order = priority) whose keywords match; urgent questions first.

    A question the urgent detector flags goes to `urgent_category` whatever its keywords say;
    a question no keyword matches goes to the last category with no keywords ("other").
    """
    if is_urgent(question, cfg):
        return cfg.urgent_category
    fallback = cfg.categories[-1].name
    for category in cfg.categories:
        if not category.keywords:
            fallback = category.name
            continue
        if any(_keyword_hits(question, kw, category.name, cfg) for kw in category.keywords):
            return category.name
    return fallback
