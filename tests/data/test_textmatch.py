"""The literal pre-checks must never skip a pattern that would match (they only save time)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from healthai.data.cleaning import split_sentences
from healthai.config.curation import CurationConfig
from healthai.data.pii import EMAIL, ID_LABEL, URL
from healthai.data.textmatch import Matcher, folded, required_literals

RAW = Path(__file__).resolve().parents[2] / "data" / "raw"


def test_required_literals_of_phrase_patterns():
    assert required_literals(re.compile(r"\btake\s+care\b", re.I)) == (frozenset({"take"}), frozenset({"care"}))
    # alternatives become one clause; an optional part requires nothing
    assert required_literals(re.compile(r"\b(?:regards|wishes)\b(?:\s+to)?", re.I)) == (
        frozenset({"regards", "wishes"}),)
    # a character class of case variants is a letter: [Hh][Tt][Tt][Pp]
    assert frozenset({"http", "ftp://", "www."}) <= required_literals(re.compile(r"[Hh][Tt][Tt][Pp]s?://|[Ff][Tt][Pp]://|[Ww][Ww][Ww]\."))[0]
    # an alternative with nothing literal (or an empty one) means nothing is required
    assert required_literals(re.compile(r"(?:hello|\w+)x?")) == ()
    assert required_literals(re.compile(r"ab(?:|c)", re.I)) == (frozenset({"ab"}),)
    # a non-ASCII letter that folds onto ASCII under IGNORECASE (long s ~ s): never required
    assert required_literals(re.compile("\u017f", re.I)) == ()
    # the Kelvin sign lower-cases to "k": ASCII texts it matches hold a "k"
    assert required_literals(re.compile("\u212a", re.I)) == (frozenset({"k"}),)


def test_matcher_agrees_with_search_on_edge_cases():
    cases = [
        (r"\btake\s+care\b", "TAKE   Care of it"),  # case and spacing
        (r"\btake\s+care\b", "take a care"),  # literals present, no match
        (r"regards", "Kind REGARDS"),
        ("k", "\u212a"),  # Kelvin sign: non-ASCII text is never pre-checked
        (r"s", "\u017f"),  # long s folds onto s under IGNORECASE
        ("\u212a", "Kidney"),  # the Kelvin sign in a pattern matches an ASCII k
        ("\u017f", "stone"),  # the long s in a pattern matches an ASCII s
        (r"hope\s+this\s+helps", "Hope this helps."),
        (r"chat\s*doctor", "ChatDoctor"),
    ]
    for pattern, text in cases:
        compiled = re.compile(pattern, re.I)
        assert bool(Matcher(compiled).search(text)) == bool(compiled.search(text)), (pattern, text)


def test_matcher_agrees_with_search_on_real_sentences():
    """Every phrase and PII pattern, every sentence of 300 real iCliniq answers and questions."""
    cfg = CurationConfig()
    patterns = [re.compile(p, re.I) for p in cfg.drop_sentence_patterns + cfg.residue_patterns + cfg.inline_patterns
                + cfg.pii_name_triggers + cfg.pii_name_intro_triggers + [cfg.token_pattern]]
    patterns += [EMAIL, URL, ID_LABEL]
    texts = []
    with open(RAW / "icliniq_2k_chat.jsonl", encoding="utf-8") as fh:
        for _, line in zip(range(300), fh):
            chat = json.loads(line)["chat"][0]
            texts += split_sentences(chat["ideal"]) + [chat["input"][0]["content"]]
    matchers = [Matcher(p) for p in patterns]
    hits = 0
    for text in texts:
        lowered = folded(text)
        for matcher in matchers:
            expected = matcher.pattern.search(text)
            got = matcher.search(text, lowered)
            assert bool(got) == bool(expected), (matcher, text)
            hits += bool(expected)
    assert hits > 100  # the sample does exercise matching patterns, not only skipped ones
