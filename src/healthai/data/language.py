"""Non-English detection: a fast English stop-word share first, langdetect (seeded) only when in doubt.

langdetect costs ~5 ms a text; on 100k records that alone would exceed the stage's time
budget. Real English prose has 30–50% stop words, so texts above
`curation.language_fast_accept` are accepted without it; the rest (short, technical or
foreign texts) go to langdetect with `DetectorFactory.seed` fixed, because langdetect
is random otherwise.
"""

from __future__ import annotations

import re

from langdetect import DetectorFactory, detect_langs
from langdetect.lang_detect_exception import LangDetectException

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves also may might must shall im i'm it's don't
""".split())

_WORD = re.compile(r"[A-Za-z']+")
_NON_LATIN = re.compile(r"[^\x00-\u024f\u2000-\u206f]")


def stopword_share(text: str) -> float:
    if text.isascii():  # lower-casing ASCII maps A-Z to a-z only: the same tokens, one call
        tokens = _WORD.findall(text.lower())
    else:
        tokens = [t.lower() for t in _WORD.findall(text)]
    if not tokens:
        return 0.0
    if not text.isascii() and len(_NON_LATIN.findall(text)) > 0.2 * len(text):  # mostly non-Latin script
        return 0.0
    return sum(map(STOPWORDS.__contains__, tokens)) / len(tokens)


def detect_language(text: str, seed: int = 0) -> tuple[str, float]:
    """(language code, probability) from langdetect with a fixed seed; ('unknown', 0) when it cannot tell."""
    DetectorFactory.seed = seed
    try:
        best = detect_langs(text)[0]
    except LangDetectException:
        return "unknown", 0.0
    return best.lang, best.prob


def is_language(text: str, language: str = "en", fast_accept: float = 0.25, seed: int = 0) -> tuple[bool, str]:
    """(kept?, detected code). English texts with enough stop words skip langdetect."""
    if language == "en" and stopword_share(text) >= fast_accept:
        return True, "en"
    code, _ = detect_language(text, seed)
    return code == language, code
