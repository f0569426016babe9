"""Text cleaning and redundant-phrase removal for patient–doctor answers (pure functions).

Two separate steps, counted separately in the statistics block:

- `clean_text`: mojibake and unicode repair (ftfy), HTML entities and tags, whitespace,
  repeated punctuation. Applied to questions and answers ("Text cleaned").
- `remove_boilerplate`: ChatDoctor artefacts, the opening salutation, inline notes such as
  "(attachment removed to protect patient identity)", and every sentence that is a
  greeting or sign-off or carries the ChatDoctor anonymisation token ("Phrases cleaned").

The ChatDoctor token often stands where ChatDoctor cut out text up to a sentence end
("… anti-inflammatory  ChatDoctor.  For more …"), so the sentence that holds it is broken:
it is dropped whole rather than patched, and no broken sentence is left behind.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import ftfy

from healthai.config.curation import CurationConfig
from healthai.data.textmatch import Matcher, folded

_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]{0,300})?/?>")
_BR = re.compile(r"<\s*(?:br|/p|p)\s*/?>", re.I)
# A run of 2+ blanks, or one blank that is not a plain space, becomes " " (a single " " is left alone: fast).
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]{2,}|[\t\u00a0\u2000-\u200b\u202f\u205f\u3000]")
_NEWLINES = re.compile(r"\s*\n\s*")
_DOTS = re.compile(r"\.{4,}")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])(?=\s|$)")
_ABBREVIATIONS = {"dr", "mr", "mrs", "ms", "prof", "st", "e.g", "i.e", "vs", "etc", "approx", "no", "fig", "sr",
                  "jr", "mg", "ml", "tab", "cap", "inj", "syp", "hr", "hrs", "min", "max", "nos", "resp", "dept"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u2060\ufeff]")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")
_LAST_TOKEN = re.compile(r"([A-Za-z.]+)\.$")
_CLAUSE_END = re.compile(r"(?<=[,;])\s+")
_FINAL_PUNCT = re.compile(r"[.!?]$")
_LEADING_JUNK = re.compile(r"^[\s,.;:!?)\-–—]+")
_TRAILING_JUNK = re.compile(r"([.!?])[\s\-–—]+$")


@dataclass(frozen=True)
class Rules:
    """Compiled phrase rules of one config (compile once, apply to 100k records).

    The `Matcher`s wrap the same patterns with a literal pre-check (`healthai.textmatch`):
    a pattern only runs on a text that holds the words every match needs.
    """

    artifacts: tuple[tuple[re.Pattern, str], ...]
    inline: tuple[re.Pattern, ...]
    greeting: re.Pattern
    token: re.Pattern
    clause_min_words: int
    drop: tuple[re.Pattern, ...]
    residue: tuple[re.Pattern, ...]
    repeat: re.Pattern
    max_repeat: int
    artifacts_m: tuple[tuple[Matcher, str], ...] = ()
    inline_m: tuple[Matcher, ...] = ()
    token_m: Matcher | None = None
    drop_m: tuple[Matcher, ...] = ()
    residue_m: tuple[Matcher, ...] = ()
    closing: re.Pattern | None = None
    closing_formula: re.Pattern | None = None
    closing_m: Matcher | None = None
    repair: bool = False


def compile_rules(cfg: CurationConfig) -> Rules:
    return _compile(tuple(cfg.artifact_replacements.items()), tuple(cfg.inline_patterns), cfg.greeting_pattern,
                    cfg.token_pattern, cfg.clause_level_min_words, tuple(cfg.drop_sentence_patterns),
                    tuple(cfg.residue_patterns), cfg.max_repeated_punctuation, tuple(cfg.closing_formulas),
                    cfg.repair_sentence_boundaries)


@lru_cache(maxsize=8)
def _compile(artifacts, inline, greeting, token, clause_min_words, drop, residue, max_repeat, closing=(),
             repair=False) -> Rules:
    flags = re.IGNORECASE
    compiled_artifacts = tuple((re.compile(p), r) for p, r in artifacts)
    compiled_inline = tuple(re.compile(p, flags) for p in inline)
    compiled_token = re.compile(token, flags)
    compiled_drop = tuple(re.compile(p, flags) for p in drop)
    compiled_residue = tuple(re.compile(p, flags) for p in residue)
    return Rules(
        artifacts=compiled_artifacts,
        inline=compiled_inline,
        greeting=re.compile(greeting, flags),
        token=compiled_token,
        clause_min_words=clause_min_words,
        drop=compiled_drop,
        residue=compiled_residue,
        repeat=re.compile(r"([!?,;:])(?:\s*\1){%d,}" % max_repeat),
        max_repeat=max_repeat,
        artifacts_m=tuple((Matcher(p), r) for p, r in compiled_artifacts),
        inline_m=tuple(Matcher(p) for p in compiled_inline),
        token_m=Matcher(compiled_token),
        drop_m=tuple(Matcher(p) for p in compiled_drop),
        residue_m=tuple(Matcher(p) for p in compiled_residue),
        closing=_closing_pattern(closing) if closing else None,
        closing_formula=re.compile("|".join(f"(?:{f})" for f in closing), re.I) if closing else None,
        closing_m=Matcher(re.compile("|".join(f"(?:{f})" for f in closing), re.I)) if closing else None,
        repair=repair,
    )


# A sign-off's signature: an optional title, one to three name words (a lower-case one only after a title:
# "Dr.xxxx"), an optional qualification after a comma ("Dr. X, Pulmonologist").
_SIGNATURE = (r"(?:(?:dr|doctor|prof)\b\.?\s*(?:[A-Za-z][\w'’-]*)(?:\s+(?-i:[A-Z])[\w'’-]*){0,2}"
              r"|(?-i:[A-Z])[\w'’-]*(?:\s+(?-i:[A-Z])[\w'’-]*){0,2})"
              r"(?:\s*[,(-]\s*(?-i:[A-Z])[\w.]*(?:\s+[A-Za-z][\w.]*){0,3}\)?)?")


def _closing_pattern(formulas: tuple[str, ...]) -> re.Pattern:
    """A closing formula, its optional signature, then only punctuation to the end of the text."""
    alternatives = "|".join(f"(?:{f})" for f in formulas)
    # a bare signature after a full stop ("… avoid travel. Dr. X.") is a sign-off too (`strip_closing`)
    return re.compile(rf"(?:(?:{alternatives})\b[\s,.!:;-]*(?:{_SIGNATURE})?|(?=(?:dr|doctor|prof)\b){_SIGNATURE})"
                      rf"[\s.!]*$", re.IGNORECASE)


# -- text cleaning ----------------------------------------------------------------------
def normalize_whitespace(text: str) -> str:
    """Collapse runs of spaces, keep single newlines as paragraph breaks, strip the ends."""
    text = _SPACES.sub(" ", text)
    if "\n" in text:
        text = _NEWLINES.sub("\n", text)
    return text.strip()


def fix_encoding(text: str) -> str:
    """Repair mojibake (UTF-8 read as Latin-1/cp1252) and normalise unicode to NFC."""
    return ftfy.fix_text(text, normalization="NFC")


def strip_html(text: str) -> str:
    """Unescape HTML entities (twice, for double-escaped text) and drop tags; <br>/<p> become newlines."""
    if "&" in text:
        text = html.unescape(html.unescape(text))
    if "<" in text:
        text = _BR.sub("\n", text)
        text = _TAG.sub(" ", text)
    return text


def collapse_punctuation(text: str, rules: Rules) -> str:
    """'!!!' -> '!', '??' -> '?', ',,' -> ','; 4+ dots -> '...'; no space before , . ; : ! ?"""
    if "...." in text:
        text = _DOTS.sub("...", text)
    text = rules.repeat.sub(lambda m: m.group(1) * rules.max_repeat, text)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def clean_text(text: str, cfg: CurationConfig, rules: Rules | None = None) -> str:
    """Encoding repair, HTML, whitespace and punctuation clean-up of one text."""
    rules = rules or compile_rules(cfg)
    if cfg.fix_mojibake and not text.isascii():  # pure ASCII cannot hold mojibake: skip ftfy (slow)
        text = fix_encoding(text)
    else:
        text = unicodedata.normalize("NFC", text)
    if cfg.strip_html:
        text = strip_html(text)
    text = _CONTROL.sub("", text)
    text = normalize_whitespace(text)
    return collapse_punctuation(text, rules)


# -- glued sentences -----------------------------------------------------------------------
# "safety.Regards", "really?Yes", "39 C.Tap": a sentence end with no space before the next capitalised word;
# the character before is a lower-case letter, a bracket or a unit after a number, so "3.5" and "U.S.A"
# never match.
_GLUED_STOP = re.compile(r"([.!?])(?=[A-Z][a-z]|[AI]\s)(?:(?<=[a-z)\]].)|(?<=\d [A-Z].))")  # punctuation first: fast scan
# "RegardsDr.", "careDoctor": a title glued to the end of a word (a sign-off run into the signature).
_GLUED_TITLE = re.compile(r"(?<=[a-z])(?=(?:Dr|Doctor|Prof)(?:\.|(?=[A-Z])|\b))")
# "HelloThanks", "Hello dearWarm welcome" ("Hi.Welcome" is a glued stop): a greeting run into the next word.
_GLUED_GREETING = re.compile(r"\b([Hh]i+|[Hh]ello+|[Hh]ey|[Dd]ear|Greetings)(?=[A-Z][a-z])")
_GREETING_ZONE = 40
# "Healthcaremagic.comI have": a domain run into the next sentence.
_GLUED_DOMAIN = re.compile(r"(?<=[a-z]\.com|[a-z]\.org|[a-z]\.net)(?=[A-Z])")
# "thoroughly.* The pain": a bullet glued to a sentence end hides the boundary from the splitter.
_GLUED_BULLET = re.compile(r"(?<=[.!?:;])[*•]+(?=\s)")
_NOT_A_BOUNDARY = ("://", "www.", "@")
_CLOSING_TAIL = 120  # a formula and its signature: "Thanks and best regards, Dr. Anna Maria Rossi, General Physician"
_TITLE = re.compile(r"(?:dr|doctor|prof)\b", re.I)
_TITLES = (" dr", "\ndr", ".dr", "doctor", "prof")  # a title as a word ("drink" holds "dr")


def repair_glued_title(text: str) -> str:
    """ "RegardsDr. X" -> "Regards Dr. X": a sign-off run into its signature."""
    if "Dr" not in text and "Doctor" not in text and "Prof" not in text:  # a zero-width pattern is slow
        return text
    return _GLUED_TITLE.sub(" ", text) if _GLUED_TITLE.search(text) else text


def repair_boundaries(text: str) -> str:
    """Insert the space a glued sentence end, sign-off title or greeting lacks; not inside URLs or e-mails.

    Abbreviations glued to a word ("e.g.Rest", "Dr.Smith") get a space too, which reads the same and
    lets the sentence splitter (abbreviation-aware) and the PII rules see the words.
    """
    if _GLUED_GREETING.search(text, 0, _GREETING_ZONE):
        text = _GLUED_GREETING.sub(r"\1, ", text[:_GREETING_ZONE]) + text[_GREETING_ZONE:]
    if ".com" in text or ".org" in text or ".net" in text:
        text = _GLUED_DOMAIN.sub(" ", text)
    if "*" in text or "•" in text:
        text = _GLUED_BULLET.sub("", text)
    text = repair_glued_title(text)
    if not _GLUED_STOP.search(text):
        return text

    def space(match: re.Match) -> str:
        start = text.rfind(" ", 0, match.start()) + 1
        end = text.find(" ", match.end())
        token = text[start:end if end >= 0 else len(text)]
        if any(marker in token.lower() for marker in _NOT_A_BOUNDARY):
            return match.group(1)  # www.CareLine.com, http://Example.org, john@Mail.com
        return match.group(1) + " "

    return _GLUED_STOP.sub(space, text)


def strip_closing(text: str, rules: Rules) -> str:
    """Remove closing formulas at the end of an answer with their signature ("… safety. Regards Dr. X.").

    A formula glued to the previous sentence without a full stop ("… for safety Regards Dr. X") only
    counts when it starts with a capital (a new sentence run on); the text before it gets the full stop.
    """
    if rules.closing is None:
        return text
    for _ in range(3):  # "Thanks. Take care. Regards, Dr. X"
        tail = folded(text[-_CLOSING_TAIL:])  # literal pre-check: most answers end with no formula or title
        if tail is not None and not rules.closing_m.possible(tail) and not tail.startswith("dr") \
                and not any(t in tail for t in _TITLES):
            break
        # a closing formula and its signature are short: look at the tail only (the pattern is anchored at $)
        match = rules.closing.search(text, max(0, len(text) - _CLOSING_TAIL))
        if match is None:
            break
        start = match.start()
        while text[start].isspace():
            start += 1
        before = text[:start].rstrip()
        bare = _TITLE.match(text, start) is not None and not rules.closing_formula.match(text, start)
        if before and before[-1] not in ".!?\n":
            if bare or not text[start].isupper() or before[-1] in "([":
                break  # "... you must take care": part of the sentence
            before = before.rstrip(" ,;:-") + "."
        text = before
    return text


# -- sentences --------------------------------------------------------------------------
def split_sentences(text: str) -> list[str]:
    """Split on . ! ? (and newlines) followed by space; not after common abbreviations ('Dr.', 'e.g.', '5 mg.')."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        chunk = text[start:match.start()]
        if not chunk.strip():
            continue
        word = _last_token(chunk)
        nxt = text[match.end():match.end() + 1]
        if word and "\n" not in match.group(0) and (
                word.group(1).lower().rstrip(".") in _ABBREVIATIONS and nxt[:1].isalnum()
                or (len(word.group(1)) == 1 and word.group(1).isupper())):
            continue  # "Dr. Smith", "e.g. rest", "J. Doe": not a sentence end
        pieces.append(text[start:match.start()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return [p for p in pieces if p]


def _last_token(chunk: str) -> re.Match | None:
    """`_LAST_TOKEN.search(chunk)`, looking only at the chunk's tail when that gives the same match."""
    if not (chunk.endswith(".") or chunk.endswith(".\n")):
        return None  # the pattern ends in r"\.$"
    tail = max(0, len(chunk) - 48)
    match = _LAST_TOKEN.search(chunk, tail)
    if match is not None and tail and match.start() == tail:
        return _LAST_TOKEN.search(chunk)  # the letters run on before the tail: search the whole chunk
    return match


def join_sentences(sentences: list[str]) -> str:
    return " ".join(s.strip() for s in sentences if s.strip())


# -- redundant phrases --------------------------------------------------------------------
def strip_greeting(text: str, rules: Rules) -> str:
    """Remove opening salutations ("Hi,", "Hello Dr. X.", "Dear Sir,"), repeatedly ("Hi. Hello,")."""
    for _ in range(3):
        match = rules.greeting.match(text)
        if not match or match.end() == 0:
            break
        text = text[match.end():].lstrip(" ,.;:!-")
    return text


Active = tuple[Matcher | None, tuple[Matcher, ...]]
"""The token matcher (None: cannot occur) and the drop matchers that can match somewhere in an answer."""


def active_rules(text: str, rules: Rules) -> Active:
    """The phrase rules that can match somewhere in `text`, hence in any of its sentences or clauses."""
    lowered = folded(text)
    if lowered is None:
        return rules.token_m, rules.drop_m
    token = rules.token_m if rules.token_m.possible(lowered) else None
    return token, tuple(m for m in rules.drop_m if m.possible(lowered))


def is_boilerplate_sentence(sentence: str, rules: Rules, active: Active | None = None) -> bool:
    token, drop = active or (rules.token_m, rules.drop_m)
    lowered = folded(sentence)
    return bool(token and token.search(sentence, lowered)) or _matches_any(drop, sentence, lowered)


def _matches_any(matchers: tuple[Matcher, ...], text: str, lowered: str | None) -> bool:
    for matcher in matchers:
        if matcher.search(text, lowered):
            return True
    return False


def _substitute(pairs: tuple[tuple[Matcher, str], ...], text: str) -> str:
    """Apply `pattern.sub(replacement)` in order, skipping patterns that cannot match."""
    lowered = folded(text)
    for matcher, replacement in pairs:
        if matcher.possible(lowered):
            new = matcher.pattern.sub(replacement, text)
            if new != text:
                text, lowered = new, folded(new)
    return text


def drop_boilerplate(sentence: str, rules: Rules, active: Active | None = None) -> str:
    """'' for a boilerplate sentence; a long sentence keeps its clauses that are not boilerplate.

    A sentence with the ChatDoctor token always goes whole (the token marks cut text).
    `active` (from `active_rules` on the whole answer) skips rules that cannot match it.
    """
    token, drop = active or (rules.token_m, rules.drop_m)
    if not is_boilerplate_sentence(sentence, rules, (token, drop)):
        return sentence
    if (token and token.search(sentence)) or len(sentence.split()) < rules.clause_min_words:
        return ""
    clauses = _CLAUSE_END.split(sentence)
    kept = [c for c in clauses if not _matches_any(drop, c, folded(c))]
    if not kept or sum(len(c.split()) for c in kept) < 4:
        return ""
    text = " ".join(kept).rstrip(" ,;")
    return text if _FINAL_PUNCT.search(text) else text + "."


def remove_inline(text: str, rules: Rules) -> str:
    """ChatDoctor's artefacts fixed, inline notes ("(attachment removed to protect patient identity)") removed."""
    text = _substitute(rules.artifacts_m, text)
    return _substitute(tuple((m, " ") for m in rules.inline_m), text)


def remove_boilerplate(text: str, cfg: CurationConfig, rules: Rules | None = None) -> str:
    """Drop greetings, sign-offs and ChatDoctor-token sentences from an answer; tidy what is left."""
    rules = rules or compile_rules(cfg)
    text = remove_inline(text, rules)
    if rules.repair:
        text = repair_boundaries(text)
    # a run-on sign-off ("… for you Regards Dr. X") first: the sentence drops would take its sentence whole
    text = strip_greeting(strip_closing(normalize_whitespace(text), rules), rules)
    active = active_rules(text, rules)  # sentences and clauses are parts of text
    paragraphs = []
    for paragraph in text.split("\n"):
        if active[0] is None and not active[1]:  # no rule can match: every sentence stays
            kept = split_sentences(paragraph)
        else:
            kept = [k for k in (drop_boilerplate(s, rules, active) for s in split_sentences(paragraph)) if k]
        if kept:
            kept[0] = strip_greeting(kept[0], rules)
            paragraphs.append(join_sentences(kept))
    text = strip_closing("\n".join(p for p in paragraphs if p.strip()), rules)
    text = _LEADING_JUNK.sub("", text)
    text = _TRAILING_JUNK.sub(r"\1", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", normalize_whitespace(text))
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    return text


def residual_boilerplate(text: str, rules: Rules) -> list[str]:
    """The residue patterns an answer still matches (empty list: clean)."""
    lowered = folded(text)
    return [m.pattern.pattern for m in rules.residue_m if m.search(text, lowered)]


# -- small helpers used by the filters ------------------------------------------------------
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def words(text: str) -> list[str]:
    return _WORD.findall(text)
