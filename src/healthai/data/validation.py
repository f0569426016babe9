"""Post-generation validation of a rewritten answer, whichever backend wrote it.

    checks = validate_answer(answer, original, is_urgent, cfg.filter)
    # {"non_empty": True, "sentences": True, "closing_sentence": True, "urgent_prefix": True,
    #  "no_forbidden_phrase": True, "no_bullet_list": True, "no_dosage": True, "no_new_drug": True}
    ok = all(checks.values())

Importable by later stages (stage 3 re-checks reviewed answers with it). Sentence
boundaries come from pysbd (rule-based, handles "Dr.", "e.g.", decimals), drug names from
the DrugBank vocabulary bundled in data/raw plus the configured extra names.
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path

from healthai.config.filtering import FilterConfig
from healthai.errors import ConfigError
from healthai.data.filtering import find_dosages, find_forbidden, normalise_apostrophes

RULES = ("non_empty", "sentences", "closing_sentence", "urgent_prefix", "no_forbidden_phrase",
         "no_bullet_list", "no_dosage", "no_new_drug")
"""Rule names in the order they are reported."""

_WORD = re.compile(r"[a-z0-9][a-z0-9\-']*")


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (pysbd), stripped, empty ones dropped."""
    text = text.strip()
    if not text:
        return []
    return [s.strip() for s in _segmenter().segment(text) if s.strip()]


# -- drug vocabulary ---------------------------------------------------------------------
def _resolve(path: str) -> Path:
    from healthai.config import REPO_DIR, expand

    p = Path(expand(path, repo=REPO_DIR)).expanduser()
    return p if p.is_absolute() else REPO_DIR / p


@lru_cache(maxsize=8)
def _load_vocabulary(path: str | None, extra: tuple[str, ...], stop: tuple[str, ...], min_chars: int,
                     max_words: int) -> frozenset[str]:
    names: set[str] = {e.lower().strip() for e in extra if e.strip()}
    if path:
        file = _resolve(path)
        if not file.is_file():
            raise ConfigError("filter.drug_vocabulary: file not found", file=str(file))
        with open(file, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            column = next((c for c in (reader.fieldnames or []) if c.strip().lower() == "common name"), None)
            if column is None:
                raise ConfigError("filter.drug_vocabulary: no 'Common name' column", file=str(file))
            for row in reader:
                name = (row.get(column) or "").strip().lower()
                if len(name) >= min_chars and len(name.split()) <= max_words and _WORD.fullmatch(name.split()[0]):
                    names.add(name)
    return frozenset(names - {s.lower() for s in stop})


def drug_vocabulary(cfg: FilterConfig) -> frozenset[str]:
    return _load_vocabulary(cfg.drug_vocabulary, tuple(cfg.extra_drug_names), tuple(cfg.drug_name_stoplist),
                            cfg.drug_min_chars, cfg.max_drug_name_words)


def find_drugs(text: str, cfg: FilterConfig) -> set[str]:
    """Drug names (lower case) of the vocabulary that occur in `text` as whole words."""
    vocab = drug_vocabulary(cfg)
    words = _WORD.findall(normalise_apostrophes(text).lower())
    found = set()
    for n in range(1, cfg.max_drug_name_words + 1):
        for i in range(len(words) - n + 1):
            gram = " ".join(words[i:i + n])
            if gram in vocab:
                found.add(gram)
    return found


# -- the rules -----------------------------------------------------------------------------
def has_bullets(text: str, cfg: FilterConfig) -> bool:
    return re.search(cfg.bullet_pattern, text) is not None


def validate_answer(answer: str, original: str, is_urgent: bool, cfg_filter: FilterConfig) -> dict[str, bool]:
    """Every validation rule (see RULES) -> passed? for one rewritten answer.

    `original` is the doctor's answer the rewrite came from (a drug it does not name may not
    appear); `is_urgent` decides whether the answer must (True) or must not (False) open with
    the urgent prefix.
    """
    cfg = cfg_filter
    text = answer.strip() if isinstance(answer, str) else ""
    sentences = split_sentences(text)
    return {
        "non_empty": bool(text),
        "sentences": cfg.min_sentences <= len(sentences) <= cfg.max_sentences,
        "closing_sentence": bool(sentences) and sentences[-1] == cfg.closing_sentence
        and text.endswith(cfg.closing_sentence),
        "urgent_prefix": text.startswith(cfg.urgent_prefix) == bool(is_urgent),
        "no_forbidden_phrase": not find_forbidden(text, cfg),
        "no_bullet_list": not has_bullets(text, cfg),
        "no_dosage": not find_dosages(text, cfg),
        "no_new_drug": not (find_drugs(text, cfg) - find_drugs(original or "", cfg)),
    }


def failed_rules(checks: dict[str, bool]) -> list[str]:
    return [rule for rule, ok in checks.items() if not ok]
