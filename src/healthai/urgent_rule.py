"""Urgent-rule lever for the domain base corpus: answers in the style the rule wants.

The fine-tuning levers (oversampling urgent examples, weighting the first answer tokens,
trainable format-token rows through a gradient-mask hook) live in `healthai.training`, the one
trainer, switched by `finetune.*` keys; this module holds the base-corpus lever, which needs the
stage-2 urgent detector:

    text = urgent_style_answer(question, answer, cfg.filter)   # prefix first when the question is urgent

Measured effects and the chosen defaults: docs/TRIAGE.md.
"""

from __future__ import annotations


def urgent_style_answer(question: str, answer: str, fcfg) -> str:
    """The answer as the rule wants it: the urgent prefix first when the stage-2 detector flags
    the question (and the answer does not already start with it); other answers unchanged."""
    from healthai.triage import is_urgent

    prefix = fcfg.urgent_prefix
    if is_urgent(question, fcfg) and not answer.lstrip().startswith(prefix):
        return f"{prefix} {answer.lstrip()}"
    return answer
