"""Exact pre-checks for regular expressions: the literal words every match must contain.

A pattern such as r"\\btake\\s+care\\b" can only match a text that holds "take" and "care".
`required_literals` reads such words from the parsed pattern; `Matcher.possible` tests them
with substring checks on the lower-cased text (C `in`, ~20x cheaper than running a pattern
of the phrase tables), so the pattern only runs on texts where it can match. Stage 1 runs
about 40 patterns over every sentence of 100k answers: this is most of its regex time.

Exact by construction: a text is skipped only when a literal that every match needs is
absent. Only ASCII texts are pre-checked: case-insensitive matching folds a few non-ASCII
characters onto ASCII letters (the Kelvin sign onto "k", the long s onto "s"), so other
texts always run the pattern.
"""

from __future__ import annotations

import re

try:  # Python 3.11+
    from re import _constants as _c
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

_REPEATS = tuple(getattr(_c, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(_c, name))
_MAX_CLAUSES = 3
_AUTO = object()

Clauses = tuple[frozenset[str], ...]
"""A conjunction of alternatives: every clause must have one of its literals in the (lower-cased) text."""


def _literal_char(op, av) -> str | None:
    """The lower-case ASCII character a parsed item always matches (letter case aside), else None."""
    if op is _c.LITERAL:
        chars = {chr(av).lower()}
    elif op is _c.IN and av and all(o is _c.LITERAL for o, _ in av):
        chars = {chr(v).lower() for _, v in av}  # [Hh]
    else:
        return None
    if len(chars) != 1:
        return None
    ch = chars.pop()
    return ch if ch.isascii() else None


def _sequence(items) -> list[frozenset[str]]:
    """Clauses that any match of a sequence of parsed items satisfies."""
    clauses: list[frozenset[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            clauses.append(frozenset(["".join(run)]))
            run.clear()

    for op, av in items:
        ch = _literal_char(op, av)
        if ch is not None:
            run.append(ch)
            continue
        flush()
        if op is _c.SUBPATTERN:
            clauses += _sequence(av[-1])
        elif op is _c.BRANCH:
            alternatives = [_best(_sequence(branch)) for branch in av[1]]
            if alternatives and all(alternatives):
                clauses.append(frozenset().union(*alternatives))
        elif op in _REPEATS:
            low, _high, inner = av
            if low >= 1:
                clauses += _sequence(inner)
        elif op is getattr(_c, "ATOMIC_GROUP", None):
            clauses += _sequence(av)
        # AT, ANY, IN, CATEGORY, NOT_LITERAL, ASSERT(_NOT), GROUPREF...: no literal required
    flush()
    return clauses


def _selectivity(clause: frozenset[str]) -> int:
    return min(len(literal) for literal in clause)


def _best(clauses: list[frozenset[str]]) -> frozenset[str] | None:
    return max(clauses, key=_selectivity) if clauses else None


def required_literals(pattern: str | re.Pattern, flags: int = 0) -> Clauses:
    """Up to three clauses (most selective first) that every match of `pattern` satisfies.

    `()` means nothing is known (the pattern always runs).
    """
    if isinstance(pattern, re.Pattern):
        pattern, flags = pattern.pattern, pattern.flags
    try:
        parsed = _sre_parse.parse(pattern, flags)
    except Exception:  # noqa: BLE001 - an unparsable pattern gets no pre-check (re.compile reports it)
        return ()
    clauses = [c for c in _sequence(parsed) if all(c)]
    clauses.sort(key=_selectivity, reverse=True)
    return tuple(clauses[:_MAX_CLAUSES])


def folded(text: str) -> str | None:
    """The lower-cased text the pre-checks look in; None for a non-ASCII text (never pre-checked)."""
    return text.lower() if text.isascii() else None


class Matcher:
    """A compiled pattern with its literal pre-check."""

    __slots__ = ("pattern", "need")

    def __init__(self, pattern: re.Pattern):
        self.pattern = pattern
        self.need = required_literals(pattern)

    def possible(self, lowered: str | None) -> bool:
        """False only when the pattern cannot match the text `lowered` was folded from."""
        if lowered is None:
            return True
        for clause in self.need:
            for literal in clause:
                if literal in lowered:
                    break
            else:
                return False
        return True

    def search(self, text: str, lowered: str | None | object = _AUTO) -> re.Match | None:
        """`pattern.search(text)`, skipped when impossible (pass `folded(text)` when you have it)."""
        if not self.possible(folded(text) if lowered is _AUTO else lowered):
            return None
        return self.pattern.search(text)

    def __repr__(self) -> str:
        return f"Matcher({self.pattern.pattern!r}, need={[sorted(c) for c in self.need]})"
