"""Urgent-rule lever for the domain base corpus: answers in the style the rule wants.

The fine-tuning levers (oversampling urgent examples, weighting the first answer tokens,
trainable format-token rows through a gradient-mask hook) live in `healthai.training`, the one
trainer, switched by `finetune.*` keys; this module holds the base-corpus lever, which needs the
stage-2 urgent detector:

    text = urgent_style_answer(question, answer, cfg.filter)   # prefix first when the question is urgent
    texts = urgent_style_texts(corpus, cfg)                     # embedded.urgent_style_corpus: the base corpus

Measured effects and the chosen defaults: docs/TRIAGE.md.
"""

from __future__ import annotations

import os
from pathlib import Path


def urgent_style_answer(question: str, answer: str, fcfg) -> str:
    """The answer as the rule wants it: the urgent prefix first when the stage-2 detector flags
    the question (and the answer does not already start with it); other answers unchanged."""
    from healthai.triage import is_urgent

    prefix = fcfg.urgent_prefix
    if is_urgent(question, fcfg) and not answer.lstrip().startswith(prefix):
        return f"{prefix} {answer.lstrip()}"
    return answer


def question_of(record: dict) -> str | None:
    """The patient question of a curated/merged record (`messages`) or a raw iCliniq line (`chat`)."""
    from healthai.review import message_text

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
    from healthai.io import iter_jsonl

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
    from healthai.modeling import answers_of, read_corpus

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

