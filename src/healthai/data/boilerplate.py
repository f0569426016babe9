"""Boilerplate mined from the corpus itself: the opening and closing sentences a source repeats.

The hand lists (`curation.drop_sentence_patterns`, …) fit the bundled sources; a new platform brings
its own call-to-action ("Would you like to video or text chat with me?") and sign-off, repeated word
for word under hundreds of answers. In the spirit of C4's and datatrove's repeated-line filters:

1. edges (`edge_units`, in the worker processes, on each answer the stage keeps, after the hand rules and
   the PII scrub): the normalised keys of its first and last `edge_sentences` sentences and of its first /
   last line; the main process counts them per source (`BoilerplateMiner.add`, one Counter update each);
2. mine (`BoilerplateMiner.mine`, once the whole corpus is counted): a key in the same position in at
   least `min_share_per_source` and `min_count_per_source` of a source's kept answers (or the `_overall`
   thresholds over all of them) is a candidate; one with medical content ("drink plenty of fluids") or on
   the veto list is reported and kept, the others are removed;
3. strip (`MinedBoilerplate.strip`, main process, only the answers whose edge keys hit a removed one):
   drop those edge sentences (also when run on to their neighbour without a full stop).

Why after the per-record work and not in a first pass over the inputs: the keys come from the stage's own
cleaned, split and scrubbed sentences (a first pass would have to redo that work serially, ~10 % of the
stage on 100k records), and the workers compute them in parallel. The price: exact and near-duplicate
detection sees answers with their boilerplate (a shared sentence raises two answers' similarity a little).

Keys: lower-case ASCII words, digits as 0, apostrophes dropped ("Call 555 0101" ~ "Call 555 0199").
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from healthai.config.curation import BoilerplateMiningConfig
from healthai.data.cleaning import _ABBREVIATIONS

_KEY_TABLE = {c: (None if chr(c) == "'" else "0" if chr(c).isdigit() else " ")
              for c in range(128) if not ("a" <= chr(c) <= "z")}
"""sentence_key: digits become 0, apostrophes vanish ("don't" = "dont"), other ASCII non-letters separate words."""
_KEY_WORD = re.compile(r"[a-z']+|\d+")
_WINDOW = 200
"""Characters at each end of a long line that `edge_units` splits (a longer sentence is never boilerplate here:
the workers key every kept answer, so this is most of the mining's cost)."""
_RUN_ON_MIN_WORDS = 1
"""A run-on mined sentence is cut off only when at least this many words stay in its sentence."""
OVERALL = "*"
"""The 'source' of a candidate mined over all sources together."""
MINED_COLUMNS = ("source", "position", "answers", "share", "action", "sentence")


def sentence_key(sentence: str) -> str:
    """The normalised form two repeats of a sentence share: lower-case ASCII words, every digit 0 (a
    str.translate, not a regex: the counting pass keys ~10 sentences an answer)."""
    return " ".join(sentence.lower().encode("ascii", "ignore").decode("ascii").translate(_KEY_TABLE).split())


def edge_units(text: str, n: int, min_words: int = 1, positions: tuple[str, ...] = ("opening", "closing")
               ) -> list[tuple[str, str, str]]:
    """(position, key, sentence) of an answer's first / last `n` sentences, and of its first / last line when
    it has several (a line-level repeat: "Dr. X, MD | CareLine"); each key once per position.

    Only `_WINDOW` characters at each end are split (the sentence the window cuts is left out): the workers
    run this on every kept answer.
    """
    first, last = (text.split("\n", 1)[0], text.rsplit("\n", 1)[-1]) if "\n" in text else (text, text)
    if first is last and len(first) <= 2 * _WINDOW:  # one short line (most answers): split it once
        sentences = edge_sentences(first)
        units = {"opening": sentences[:n], "closing": sentences[-n:]}
    else:
        units = {"opening": _head(first, n), "closing": _tail(last, n)}
    if "\n" in text:
        units["opening"].append(first)
        units["closing"].append(last)
    out = []
    for position in positions:
        seen = set()
        for sentence in units[position]:
            key = sentence_key(sentence)
            if key and key not in seen and key.count(" ") + 1 >= min_words:
                seen.add(key)
                out.append((position, key, sentence))
    return out


_END = re.compile(r"[.!?][\"')\]]*\s+")


def edge_sentences(line: str) -> list[str]:
    """The sentences of one line by `cleaning.split_sentences`' rules (not after "Dr.", "e.g.", "J."), in a
    loop that is cheaper: the workers split both ends of every kept answer. Local rules only, so a window
    cut out of a line splits like the line (bar its cut first / last piece)."""
    pieces, start = [], 0
    for match in _END.finditer(line):
        stop = match.start()
        if line[stop] == ".":
            word = line[line.rfind(" ", start, stop) + 1:stop]
            follows = line[match.end():match.end() + 1]
            if (word.lower().rstrip(".") in _ABBREVIATIONS and follows.isalnum()
                    or len(word) == 1 and word.isupper()):
                continue  # "Dr. Smith", "e.g. rest", "J. Doe"
        piece = line[start:match.end()].strip()
        if piece:
            pieces.append(piece)
        start = match.end()
    tail = line[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


def _head(line: str, n: int) -> list[str]:
    if len(line) <= 2 * _WINDOW:
        return edge_sentences(line)[:n]
    pieces = edge_sentences(line[:_WINDOW])
    return (pieces[:-1] or pieces)[:n]  # the cut sentence only when it is all there is (a run-on's start)


def _tail(line: str, n: int) -> list[str]:
    if len(line) <= 2 * _WINDOW:
        return edge_sentences(line)[-n:]
    pieces = edge_sentences(line[-_WINDOW:])
    return (pieces[1:] or pieces)[-n:]  # the cut sentence only when it is all there is (a run-on's end)


@dataclass
class Candidate:
    """A sentence repeated in one position: where, how often, and what the stage does with it."""

    source: str
    position: str
    key: str
    answers: int
    share: float
    sentence: str
    action: str = "removed"
    """removed | kept_medical (medical content) | vetoed (in the veto list)."""

    def row(self) -> dict:
        return {"source": self.source, "position": self.position, "answers": self.answers,
                "share": round(self.share, 4), "action": self.action, "sentence": self.sentence}


@dataclass
class MinedBoilerplate:
    """What the stage removes: (position, key) per source and over all sources, and every candidate found."""

    edge_sentences: int = 2
    by_source: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    overall: frozenset[tuple[str, str]] = frozenset()
    candidates: list[Candidate] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.overall) or any(self.by_source.values())

    def removable(self, source: str) -> frozenset[tuple[str, str]]:
        return self.by_source.get(source, frozenset()) | self.overall

    def hits(self, source: str, units: list[tuple]) -> bool:
        """Whether an answer with these edge units ((position, key, …)) may lose a sentence (exact key, or a
        mined one run on): the cheap test that spares `strip` the answers it would not change."""
        mined = self.removable(source)
        for position, key, *_ in units:
            if (position, key) in mined:
                return True
            for pos, mined_key in mined:
                if pos == position and (key.endswith(" " + mined_key) if pos == "closing"
                                        else key.startswith(mined_key + " ")):
                    return True
        return False

    def strip(self, text: str, source: str) -> tuple[str, list[str]]:
        """The answer without its mined edge sentences / lines, and the sentences removed (in order)."""
        mined = self.removable(source)
        if not mined or not text:
            return text, []
        n = self.edge_sentences
        lines = text.split("\n")
        removed: list[str] = []
        if len(lines) > 1:  # whole repeated first / last lines
            if ("opening", sentence_key(lines[0])) in mined:
                removed.append(lines.pop(0))
            if len(lines) > 1 and ("closing", sentence_key(lines[-1])) in mined:
                removed.append(lines.pop())
        first, last = 0, len(lines) - 1
        pieces = {i: edge_sentences(lines[i]) for i in {first, last}}
        for i, sentences in pieces.items():
            keep = []
            for j, sentence in enumerate(sentences):
                key = sentence_key(sentence)
                at_start = i == first and j < n and ("opening", key) in mined
                at_end = i == last and j >= len(sentences) - n and ("closing", key) in mined
                if at_start or at_end:
                    removed.append(sentence)
                else:
                    keep.append(sentence)
            if len(keep) != len(sentences):
                lines[i] = " ".join(keep)
        lines, run_on = self._strip_run_on(lines, mined)  # run on to its neighbour without a full stop
        removed += run_on
        if not removed:
            return text, []
        out = "\n".join(line for line in lines if line.strip()).strip()
        if out[:1].islower():
            out = out[0].upper() + out[1:]
        return out, removed


    @staticmethod
    def _strip_run_on(lines: list[str], mined: frozenset[tuple[str, str]]) -> tuple[list[str], list[str]]:
        """"… check your country's phase Would you like to video chat?": the closing sentence ends with a mined
        one that starts with a capital (a sentence the writer ran on); likewise an opening one at the start."""
        removed: list[str] = []
        for position, index in (("closing", -1), ("opening", 0)):
            keys = [key.split(" ") for pos, key in mined if pos == position]
            if not keys:
                continue
            sentences = edge_sentences(lines[index])
            if not sentences:
                continue
            edge = sentences[index]
            tokens = [t for t in _KEY_WORD.finditer(edge.lower()) if sentence_key(t.group())]
            words = [sentence_key(t.group()) for t in tokens]
            for key in keys:
                m = len(key)
                if len(words) < m + _RUN_ON_MIN_WORDS:
                    continue
                if position == "closing" and words[-m:] == key and edge[tokens[-m].start()].isupper():
                    cut = tokens[-m].start()
                    removed.append(edge[cut:])
                    sentences[index] = edge[:cut].rstrip(" ,;:-") + "."
                    break
                if position == "opening" and words[:m] == key:
                    rest = edge[tokens[m - 1].end():].lstrip(" .,;:!?-")
                    if rest[:1].isupper():
                        removed.append(edge[:len(edge) - len(rest)].strip())
                        sentences[index] = rest
                        break
            lines[index] = " ".join(sentences)
        return lines, removed


class BoilerplateMiner:
    """Counts edge sentences per source in one pass; `mine` turns the counts into a `MinedBoilerplate`."""

    def __init__(self, cfg: BoilerplateMiningConfig):
        self.cfg = cfg
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.answers: Counter = Counter()
        self.examples: dict[tuple[str, str], str] = {}

    def add(self, source: str, units: list[tuple[str, str, str]]) -> None:
        """Count one kept answer's edge units (`edge_units`: position, key, sentence)."""
        self.answers[source] += 1
        counter = self.counts[source]
        for position, key, sentence in units:
            item = (position, key)
            counter[item] += 1
            if counter[item] == 2:  # keep an example only of what repeats (memory)
                self.examples.setdefault(item, sentence)

    def mine(self) -> MinedBoilerplate:
        cfg = self.cfg
        medical = [re.compile(p, re.I) for p in cfg.medical_patterns] if cfg.keep_medical else []
        anyway = [re.compile(p, re.I) for p in cfg.remove_anyway]
        vetoed = {sentence_key(v) for v in cfg.veto}
        candidates: list[Candidate] = []
        total: Counter = Counter()
        for counter in self.counts.values():
            total.update(counter)
        scopes = [(s, self.counts[s], self.answers[s], cfg.min_share_per_source, cfg.min_count_per_source)
                  for s in sorted(self.counts)]
        if len(self.counts) > 1:
            scopes.append((OVERALL, total, sum(self.answers.values()), cfg.min_share_overall, cfg.min_count_overall))
        for source, counter, n_answers, min_share, min_count in scopes:
            threshold = max(min_count, min_share * n_answers)
            for item, count in counter.most_common():
                if count < threshold:
                    break
                position, key = item
                sentence = self.examples.get(item, key)
                action = "removed"
                if key in vetoed:
                    action = "vetoed"
                elif any(p.search(sentence) for p in medical) and not any(p.search(sentence) for p in anyway):
                    action = "kept_medical"
                candidates.append(Candidate(source, position, key, count, count / n_answers, sentence, action))
        removed = [c for c in candidates if c.action == "removed"]
        by_source: dict[str, set] = defaultdict(set)
        for c in removed:
            by_source[c.source].add((c.position, c.key))
        overall = frozenset(by_source.pop(OVERALL, set()))
        return MinedBoilerplate(cfg.edge_sentences, {s: frozenset(v) for s, v in by_source.items()}, overall,
                                candidates, dict(self.answers))


def report(mined: MinedBoilerplate, top: int) -> dict:
    """The stats.json section: answers counted per source, and the top candidates per source."""
    by_source: dict[str, list[dict]] = defaultdict(list)
    for c in mined.candidates:
        if len(by_source[c.source]) < top:
            by_source[c.source].append(c.row())
    actions = Counter(c.action for c in mined.candidates)
    return {"answers_counted": dict(sorted(mined.answers.items())), "candidates": dict(actions),
            "top": dict(sorted(by_source.items()))}


def candidates_csv(mined: MinedBoilerplate) -> str:
    """Every candidate, for a person to veto one (`curation.boilerplate_mining.veto`: paste the sentence)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MINED_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(c.row() for c in mined.candidates)
    return buf.getvalue()


def format_mined(mined: MinedBoilerplate, top: int = 5) -> str:
    """A short block after the statistics: what was mined, per source (the full list is in the CSV)."""
    lines = ["--- MINED BOILERPLATE ---"]
    by_source: dict[str, list[Candidate]] = defaultdict(list)
    for c in mined.candidates:
        by_source[c.source].append(c)
    for source in sorted(by_source):
        shown = by_source[source][:top]
        lines.append(f"{'all sources' if source == OVERALL else source}: {len(by_source[source])} candidates")
        lines += [f"  {c.answers:>6} ({100 * c.share:4.1f}%) {c.position:<7} {c.action:<12} {c.sentence[:70]}"
                  for c in shown]
    return "\n".join(lines)
