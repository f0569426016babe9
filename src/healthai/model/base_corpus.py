"""The domain-base corpus: answers (and questions) of a JSONL corpus, in the urgent rule's style.

    texts = read_answers(path)                  # assistant answers of curated/raw records
    texts = urgent_style_texts(path, cfg)       # (question, answer) pairs, prefix first when urgent
    held_out_split_paths(cfg)                   # 3.merge val/test: their questions never enter the base

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
