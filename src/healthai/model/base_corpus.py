"""The domain-base corpus: answers (and questions) of a JSONL corpus, in the urgent rule's style.

    texts = read_answers(path)                  # assistant answers of curated/raw records
    texts = urgent_style_texts(path, cfg)       # (question, answer) pairs, prefix first when urgent
    held_out_split_paths(cfg)                   # 3.merge val/test: their questions never enter the base
    pairs = read_pairs(path)                    # (question, answer) of any reader format (MedQuAD .jsonl.gz)
    universe = held_out_universe(cfg)           # every question a demo split or the triage set can hold
    leaks = find_leaks(universe.questions, pairs, threshold)   # exact / near duplicates in the base corpus

The base-corpus lever of the urgent rule needs the stage-2 urgent detector; the fine-tuning
levers live with the trainer. Measured effects and the chosen defaults: docs/TRIAGE.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from healthai.errors import InputError

log = logging.getLogger("healthai.modeling")


QA_SEPARATOR = "\n\n"  # a (question, answer) base-corpus text is written question + QA_SEPARATOR + answer


def answers_of(record: dict) -> list[str]:
    """The assistant answers of one record: curated/merged `messages`, or raw iCliniq `chat[].ideal`."""
    out = []
    for msg in record.get("messages") or []:
        if isinstance(msg, dict) and msg.get("role") == "assistant" and isinstance(msg.get("content"), str):
            out.append(msg["content"])
    for turn in record.get("chat") or []:
        if isinstance(turn, dict) and isinstance(turn.get("ideal"), str):
            out.append(turn["ideal"])
    return [a.strip() for a in out if a and a.strip()]


def read_corpus(path: str | os.PathLike, max_record_bytes: int = 1_000_000) -> list[dict]:
    """Records of a JSONL corpus (bad lines are logged and skipped: the corpus only shapes a base)."""
    from healthai.pipeline.io import BadLine, iter_jsonl

    path = Path(path)
    if not path.is_file():
        raise InputError("answer corpus not found", file=str(path))
    records, bad = [], 0
    for item in iter_jsonl(path, max_record_bytes=max_record_bytes):
        if isinstance(item, BadLine):
            bad += 1
            log.warning("%s: %s (%s), skipped", item.where(), item.reason, item.detail)
            continue
        records.append(item.record)
    if bad:
        log.warning("%s: %d bad line(s) skipped", path, bad)
    return records


def read_answers(path: str | os.PathLike, max_record_bytes: int = 1_000_000) -> list[str]:
    """Assistant answers of a JSONL corpus (`read_corpus`); none at all is an error."""
    texts = [answer for record in read_corpus(path, max_record_bytes) for answer in answers_of(record)]
    if not texts:
        raise InputError("no assistant answers in the corpus", file=str(path))
    return texts


def corpus_path(cfg) -> Path:
    """`embedded.corpus` (curated answers), else the fallback corpus with a warning."""
    primary = cfg.resolve(cfg.embedded.corpus)
    if primary.is_file():
        return primary
    if cfg.embedded.fallback_corpus:
        fallback = cfg.resolve(cfg.embedded.fallback_corpus)
        if fallback.is_file():
            log.warning("%s does not exist yet (run stage 1, 1.Initial-curation); using the raw answers of %s",
                        primary, fallback)
            return fallback
    raise InputError("curated corpus not found: run stage 1 (cd 1.Initial-curation && sbatch run-curation.sh)",
                     file=str(primary))


def urgent_style_answer(question: str, answer: str, fcfg) -> str:
    """The answer as the rule wants it: the urgent prefix first when the stage-2 detector flags
    the question (and the answer does not already start with it); other answers unchanged."""
    from healthai.data.triage import is_urgent

    prefix = fcfg.urgent_prefix
    if is_urgent(question, fcfg) and not answer.lstrip().startswith(prefix):
        return f"{prefix} {answer.lstrip()}"
    return answer


def question_of(record: dict) -> str | None:
    """The patient question of a curated/merged record (`messages`) or a raw iCliniq line (`chat`)."""
    from healthai.data.review import message_text

    question = message_text(record, "user").strip()
    if question:
        return question
    for turn in record.get("chat") or []:
        for msg in (turn.get("input") or []) if isinstance(turn, dict) else []:
            if isinstance(msg, dict) and msg.get("role") == "user" and isinstance(msg.get("content"), str):
                return msg["content"].strip()
    return None


def held_out_split_paths(cfg) -> list[Path]:
    """3.merge's val and test splits, whose questions the base corpus must leave out."""
    return [cfg.project_path() / "3.merge" / f"{split}.jsonl" for split in ("val", "test")]


def held_out_questions(cfg) -> set[str]:
    """User questions of the held-out splits (those that exist): never in the base corpus."""
    from healthai.pipeline.io import iter_jsonl

    out: set[str] = set()
    for path in held_out_split_paths(cfg):
        if path.is_file():
            for item in iter_jsonl(path, cfg.project.max_record_bytes):
                q = question_of(getattr(item, "record", None) or {})
                if q:
                    out.add(" ".join(q.split()))
    return out


def urgent_style_texts(path: str | os.PathLike, cfg) -> list[str | tuple[str, str]]:
    """Base-corpus (question, urgent-style answer) pairs, so the base sees the rule in context
    (`modeling.domain_blocks` writes them "question\n\nanswer"); records without a question keep the
    bare answer; questions of the val/test splits are left out (no leak into the held-out evaluation)."""
    from healthai.errors import InputError
    from healthai.model.base_corpus import answers_of, read_corpus

    held_out = held_out_questions(cfg)
    texts = []
    for record in read_corpus(path, cfg.project.max_record_bytes):
        question = question_of(record)
        if question and " ".join(question.split()) in held_out:
            continue
        for answer in answers_of(record):
            texts.append((question, urgent_style_answer(question, answer, cfg.filter)) if question else answer)
    if not texts:
        raise InputError("no assistant answers in the corpus (outside the val/test questions)", file=str(path))
    return texts


# -- the shipped base's held-out check ------------------------------------------------------------
# The shipped base is pretrained once, before any split exists, so it is checked against every question
# the demo's splits can ever draw from (each curation input) and the hand-labelled triage set: whatever
# stage 3 deals to val and test, none of it was in the base corpus. `fingerprint` keys that universe
# (its files' sha256); the chain refuses a base recorded with another one (base_stage).


def read_pairs(path: str | os.PathLike, max_record_bytes: int = 1_000_000) -> list[tuple[str, str]]:
    """(question, answer) pairs of a corpus in any reader format; bad lines logged and counted."""
    from healthai.data.readers import RawRecord, read_input

    pairs, bad = [], 0
    for item in read_input(path, max_record_bytes=max_record_bytes):
        if isinstance(item, RawRecord):
            pairs.append((item.question.strip(), item.answer.strip()))
        else:
            bad += 1
            log.warning("%s: %s (%s), skipped", item.where(), item.reason, item.detail)
    if not pairs:
        raise InputError("no question-answer pairs in the corpus", file=str(path))
    return pairs


class HeldOut:
    """The held-out universe: its questions and the fingerprint of the files they come from."""

    def __init__(self, questions: list[str], files: dict[str, str]):
        self.questions = questions
        self.files = files  # repo-relative path (or absolute) -> sha256

    @property
    def fingerprint(self) -> str:
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.files, sort_keys=True).encode("utf-8")).hexdigest()


def held_out_files(cfg) -> list[Path]:
    """The files whose questions may be held out: every curation input and the triage set."""
    files = [cfg.resolve(spec.path) for spec in cfg.curation.inputs]
    if cfg.inference.triage_set:
        files.append(cfg.resolve(cfg.inference.triage_set))
    return files


def held_out_universe(cfg) -> HeldOut:
    """Questions of every held-out file (curation inputs through the readers, the triage set's `question`)."""
    from healthai.config import REPO_DIR
    from healthai.data.readers import RawRecord, read_input
    from healthai.pipeline.io import Line, iter_jsonl, sha256_file

    questions: list[str] = []
    files: dict[str, str] = {}
    triage = cfg.resolve(cfg.inference.triage_set) if cfg.inference.triage_set else None
    for path in held_out_files(cfg):
        if not path.is_file():
            raise InputError("held-out file not found (a curation input or inference.triage_set)", file=str(path))
        try:
            key = str(path.resolve().relative_to(REPO_DIR))
        except ValueError:
            key = str(path.resolve())
        files[key] = sha256_file(path)
        if path == triage:
            questions += [item.record["question"] for item in iter_jsonl(path)
                          if isinstance(item, Line) and isinstance(item.record.get("question"), str)]
        else:
            questions += [r.question for r in read_input(path) if isinstance(r, RawRecord)]
    return HeldOut(questions, files)


def _shingles(text: str, size: int = 3) -> set[str]:
    from healthai.data.splitting import shingles

    return shingles(text, size)


def find_leaks(held_out: list[str], pairs: list[tuple[str, str]], threshold: float,
               shingle_words: int = 3) -> list[dict]:
    """Corpus pairs holding a held-out question: exact (same normalised text as the corpus question) or
    near (at least `threshold` of the held-out question's word shingles inside one corpus question+answer,
    which a Jaccard >= threshold with the corpus question implies). One dict per (corpus index, question)."""
    from collections import Counter, defaultdict

    from healthai.data.splitting import normalise_text

    exact = defaultdict(list)
    index: dict[str, list[int]] = defaultdict(list)
    sizes = []
    for j, question in enumerate(held_out):
        exact[normalise_text(question)].append(j)
        sh = _shingles(question, shingle_words)
        sizes.append(len(sh))
        for s in sh:
            index[s].append(j)
    leaks = []
    for i, (question, answer) in enumerate(pairs):
        same = exact.get(normalise_text(question), ())
        for j in same:
            leaks.append({"corpus": i, "held_out": j, "kind": "exact", "overlap": 1.0})
        hits = Counter()
        for s in _shingles(f"{question} {answer}", shingle_words):
            for j in index.get(s, ()):
                hits[j] += 1
        for j, n in hits.items():
            share = n / max(1, sizes[j])
            if share >= threshold and j not in same:
                leaks.append({"corpus": i, "held_out": j, "kind": "near", "overlap": round(share, 3)})
    return leaks
