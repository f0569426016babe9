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
    for msg in record.get("messages") or []:
        if isinstance(msg, dict) and msg.get("role") == "user" and isinstance(msg.get("content"), str):
            return msg["content"].strip()
    for turn in record.get("chat") or []:
        for msg in (turn.get("input") or []) if isinstance(turn, dict) else []:
            if isinstance(msg, dict) and msg.get("role") == "user" and isinstance(msg.get("content"), str):
                return msg["content"].strip()
    return None


def held_out_questions(cfg) -> set[str]:
    """User questions of 3.merge's val and test splits (if they exist): never in the base corpus."""
    from healthai.io import iter_jsonl

    out: set[str] = set()
    for split in ("val", "test"):
        path = cfg.project_path() / "3.merge" / f"{split}.jsonl"
        if path.is_file():
            for item in iter_jsonl(path, cfg.project.max_record_bytes):
                q = question_of(getattr(item, "record", None) or {})
                if q:
                    out.add(" ".join(q.split()))
    return out


def urgent_style_texts(path: str | os.PathLike, cfg) -> list[str | tuple[str, str]]:
    """Base-corpus (question, answer) pairs, written "question\n\nanswer" by `modeling.domain_blocks`, with urgent-style answers (`urgent_style_answer`), so the
    base sees the rule in context; records without a question keep the bare answer; questions of the
    val/test splits are left out (no leak into the held-out evaluation)."""
    from healthai.io import BadLine, iter_jsonl
    from healthai.modeling import answers_of

    held_out = held_out_questions(cfg)
    texts = []
    for item in iter_jsonl(Path(path), cfg.project.max_record_bytes):
        if isinstance(item, BadLine):
            continue
        question = question_of(item.record)
        if question and " ".join(question.split()) in held_out:
            continue
        for answer in answers_of(item.record):
            texts.append((question, urgent_style_answer(question, answer, cfg.filter)) if question else answer)
    return texts

