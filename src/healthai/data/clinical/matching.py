"""Map catalogue ingredient names to DrugBank ids; recover drug names in the PrimeKG feature table.

    index = build_index(drugbank_frame)
    m = match_name("metoprolol succinate", index, cfg)   # Match("DB00264", "Metoprolol", "salt_stripped", ...)

A plain lower-cased exact match on DrugBank common names and synonyms reaches 83.6% of
the catalogue's ingredient names; the misses are mostly salt / ester forms ("olmesartan
medoxomil"), British spellings ("beclometasone"), salt-first names ("sodium valproate"),
"A/B" alternatives ("lidocaine/lignocaine") and names DrugBank lists only with an ester
("cyproterone" -> "Cyproterone acetate"). `match_name` tries these forms in a fixed order
and records which rule found the id, so precision can be checked per rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

DRUGBANK_COLUMNS = ("DrugBank ID", "Common name", "Synonyms")
FEATURE_NAME = re.compile(r"^(?P<name>.+?) is (?:a (?:solid|liquid|gas)\b|approved\b|an? |investigational\b|"
                          r"experimental\b|withdrawn\b|illicit\b|nutraceutical\b|vet_approved\b)")


@dataclass(frozen=True)
class Match:
    """The DrugBank entry found for one ingredient name, and how."""

    drugbank_id: str
    drugbank_name: str
    method: str
    """exact | variant | alternative | prefix_stripped | salt_stripped | acid_form | reordered | with_salt | parenthesis."""
    candidate: str
    """The name form that hit the index."""


@dataclass
class DrugIndex:
    """Lower-case DrugBank names -> ids (common names win over synonyms, then the lowest id)."""

    by_name: dict[str, tuple[str, bool]]
    names: dict[str, str]
    by_stem: dict[str, str]
    """Common names "<stem> <salt word>" keyed by stem (DrugBank lists "Cyproterone acetate" only)."""


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _id_number(db_id: str) -> int:
    digits = re.sub(r"\D", "", db_id)
    return int(digits) if digits else 10**9


def build_index(frame: pd.DataFrame, salt_words: list[str] | tuple[str, ...] = ()) -> DrugIndex:
    """Index a DrugBank vocabulary frame (columns DrugBank ID, Common name, Synonyms ' | ')."""
    by_name: dict[str, tuple[str, bool]] = {}
    names: dict[str, str] = {}

    def add(key: str, db_id: str, common: bool) -> None:
        if not key:
            return
        old = by_name.get(key)
        if old is None or (common and not old[1]) or (common == old[1] and _id_number(db_id) < _id_number(old[0])):
            by_name[key] = (db_id, common)

    ids = frame["DrugBank ID"].astype(str).tolist()
    commons = frame["Common name"].astype(str).tolist()
    synonyms = frame["Synonyms"].astype(str).tolist()
    for db_id, common, syn in zip(ids, commons, synonyms):
        db_id = db_id.strip()
        if not db_id:
            continue
        names[db_id] = common.strip()
        add(_key(common), db_id, True)
        for s in syn.split(" | "):
            add(_key(s), db_id, False)
    salts = {s.lower() for s in salt_words}
    by_stem: dict[str, str] = {}
    for db_id, common in sorted(zip(ids, commons), key=lambda t: _id_number(t[0])):
        words = _key(common).split()
        if len(words) >= 2 and words[-1] in salts:
            by_stem.setdefault(" ".join(words[:-1]), db_id.strip())
    return DrugIndex(by_name=by_name, names=names, by_stem=by_stem)


def _variants(name: str, table: dict[str, str]) -> list[str]:
    """Whole-name replacement, then word / phrase replacements from the spelling table."""
    out = []
    if name in table:
        out.append(table[name])
    replaced = name
    for src, dst in table.items():
        if " " in src or "-" in src:
            if src in replaced and src != replaced:
                replaced = replaced.replace(src, dst)
        else:
            replaced = re.sub(rf"\b{re.escape(src)}\b", dst, replaced)
    if replaced != name:
        out.append(replaced)
    return out


_PREFIX = re.compile(r"^(?:l|d|s|r|dl)[- ](?=[a-z])")
_ACID = re.compile(r"ate$")


def _forms(name: str, cfg) -> list[tuple[str, str]]:
    """(method, candidate) pairs in the order they are tried."""
    salts = {s.lower() for s in cfg.salt_words}
    forms: list[tuple[str, str]] = [("exact", name)]
    forms += [("variant", v) for v in _variants(name, cfg.spelling_variants)]
    if "/" in name:
        for alt in name.split("/"):
            alt = alt.strip()
            if alt:
                forms.append(("alternative", alt))
                forms += [("alternative", v) for v in _variants(alt, cfg.spelling_variants)]
    stripped = _PREFIX.sub("", name)
    stripped = re.sub(r"\b(?:l|d|s)-(?=[a-z])", "", stripped)
    if stripped != name:
        forms.append(("prefix_stripped", stripped))
    for joined in {name.replace("-", ""), name.replace("-", " "), name.replace(" ", "")} - {name}:
        forms.append(("variant", joined))
    bases = [f for _, f in forms]
    for base in bases:
        words = base.split()
        # Peel salt words off either end, one at a time (longest remaining form first).
        # A form made of salt words only ("potassium") names the counter-ion, not the drug: skip it.
        trail = list(words)
        while len(trail) > 1 and trail[-1] in salts:
            trail = trail[:-1]
            if any(w not in salts for w in trail):
                forms.append(("salt_stripped", " ".join(trail)))
        lead = list(trail)
        while len(lead) > 1 and lead[0] in salts:
            lead = lead[1:]
            if any(w not in salts for w in lead):
                forms.append(("salt_stripped", " ".join(lead)))
        if len(words) >= 2 and words[0] in salts and words[-1] not in salts:
            forms.append(("reordered", " ".join(words[1:] + words[:1])))
        core = " ".join(lead)
        if core.endswith("ate") and len(core) > 5 and any(w not in salts for w in lead):
            forms.append(("acid_form", _ACID.sub("ic acid", core)))
        forms += [("variant", v) for v in _variants(core, cfg.spelling_variants) if core != base]
    return forms


def match_name(name: str, index: DrugIndex, cfg, detail: str | None = None) -> Match | None:
    """The DrugBank entry for one ingredient base name, or None (see the module docstring).

    `detail` is the text of a parenthesis in the name ("Salmon" in "Calcitonin (Salmon)").
    """
    name = _key(name)
    detail = (detail or "").lower().strip()
    forms = _forms(name, cfg)
    for method, candidate in forms:
        hit = index.by_name.get(candidate)
        if hit:
            return Match(hit[0], index.names.get(hit[0], ""), method, candidate)
    if detail:
        for candidate in (f"{detail} {name}", f"{name} {detail}", detail):
            hit = index.by_name.get(candidate)
            if hit:
                return Match(hit[0], index.names.get(hit[0], ""), "parenthesis", candidate)
    for _, candidate in forms:
        db_id = index.by_stem.get(candidate)
        if db_id:
            return Match(db_id, index.names.get(db_id, ""), "with_salt", candidate)
    return None


class Matcher:
    """`match_name` with a cache: the catalogue repeats ~1,000 names over ~19,000 ingredients."""

    def __init__(self, index: DrugIndex, cfg):
        self.index, self.cfg = index, cfg
        self._cache: dict[tuple[str, str], Match | None] = {}

    def __call__(self, name: str, detail: str | None = None) -> Match | None:
        key = (name, detail or "")
        if key not in self._cache:
            self._cache[key] = match_name(name, self.index, self.cfg, detail)
        return self._cache[key]


# -- PrimeKG drug features --------------------------------------------------------------------

def parse_feature_name(state: str, group: str = "", description: str = "") -> str | None:
    """The drug name in "<name> is a solid." / "<name> is approved and investigational." sentences."""
    for text in (state, group, description):
        m = FEATURE_NAME.match((text or "").strip())
        if m:
            return m.group("name").strip()
    return None


_CITATION = re.compile(r"\s*\[(?:[A-Z]{0,3}\d+(?:,\s*)?)+\]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


def first_sentences(text: str, n: int) -> str:
    """The first `n` sentences of DrugBank text, citation markers like [A1234] removed."""
    text = _CITATION.sub("", re.sub(r"\s+", " ", text or "")).strip()
    if not text:
        return ""
    parts = _SENTENCE.split(text)
    out = " ".join(parts[:n]).strip()
    if out and out[-1] not in ".!?":
        out += "."
    return out
