"""Levers that teach the fine-tuned model the urgent rule ("Seek emergency care immediately." first).

A measured prototype (docs/TRIAGE.md) found that plain LoRA learns the closing sentence but
never the urgent prefix: the first assistant token is one decision against a strong base
prior, and with tied, frozen embeddings the output rows cannot move. The levers here are
small, independent and switched by `finetune.*` keys:

    rows, flags = oversample_urgent(rows, flags, factor=3.0, seed=0)      # more urgent examples
    loss_fn = first_tokens_loss(n_first=8, weight=5.0)                     # Trainer(compute_loss_func=...)
    ids = format_token_ids(tokenizer, [prefix, closing])                   # the format tokens
    handles = train_token_rows(model, ids)                                 # only those rows learn
    save_token_rows(model, ids, adapter_dir / TOKEN_ROWS_FILE)             # next to the LoRA adapter
    apply_token_rows(model, adapter_dir / TOKEN_ROWS_FILE)                 # at inference

peft's `trainable_token_indices` does the same as `train_token_rows` but crashes inside TRL
1.16 (`TrainableTokensWrapper has no attribute bias`); a gradient-mask hook on the embedding
(and on the output embedding when it is not tied) works with any trainer.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any, Callable, Sequence

log = logging.getLogger("healthai.finetune")

TOKEN_ROWS_FILE = "token_rows.safetensors"
"""Trained embedding rows saved next to the LoRA adapter (safetensors: token_ids, input_rows[, output_rows])."""


# -- data --------------------------------------------------------------------------------
def oversample_urgent(rows: Sequence[Any], is_urgent: Sequence[bool], factor: float,
                      seed: int = 0) -> tuple[list[Any], list[bool]]:
    """Repeat the urgent rows so that each appears `factor` times on average, then shuffle (seeded).

    factor 1.0 returns the rows unchanged (same order); 2.5 gives every urgent row two copies
    and half of them (seeded draw) a third. Non-urgent rows appear once.
    """
    if len(rows) != len(is_urgent):
        raise ValueError(f"{len(rows)} rows but {len(is_urgent)} urgent flags")
    if factor < 1.0:
        raise ValueError(f"oversampling factor must be >= 1, got {factor}")
    if factor == 1.0:
        return list(rows), [bool(u) for u in is_urgent]
    rng = random.Random(seed)
    whole, frac = int(math.floor(factor)), factor - math.floor(factor)
    out: list[tuple[Any, bool]] = []
    for row, urgent in zip(rows, is_urgent):
        copies = (whole + (1 if rng.random() < frac else 0)) if urgent else 1
        out.extend([(row, bool(urgent))] * copies)
    rng.shuffle(out)
    return [r for r, _ in out], [u for _, u in out]


# -- loss --------------------------------------------------------------------------------
def first_token_weights(labels, n_first: int, weight: float, ignore_index: int = -100):
    """Per-position weights for the shifted labels: `weight` on the first `n_first` supervised
    tokens of each row (the assistant's opening, where the urgent decision is), 1 elsewhere, 0 on
    ignored positions. `labels` are the unshifted (batch, seq) labels; the result is (batch, seq-1)."""
    import torch

    target = labels[:, 1:]
    supervised = target != ignore_index
    rank = supervised.long().cumsum(dim=1)  # 1 at the first supervised token of the row
    w = torch.ones_like(target, dtype=torch.float32)
    w = torch.where(supervised & (rank <= n_first), torch.full_like(w, float(weight)), w)
    return w * supervised


def first_tokens_loss(n_first: int, weight: float, ignore_index: int = -100) -> Callable:
    """A `compute_loss_func(outputs, labels, num_items_in_batch=None)` for transformers' Trainer /
    TRL's SFTTrainer: causal-LM cross-entropy with the first `n_first` supervised tokens of each
    row weighted `weight` (normalised by the supervised-token count, as the plain loss is, so
    weight > 1 adds gradient on the opening tokens without shrinking the rest)."""
    import torch.nn.functional as F

    def loss_fn(outputs, labels, num_items_in_batch=None):
        logits = outputs.logits[:, :-1, :].float()
        target = labels[:, 1:].to(logits.device)
        w = first_token_weights(labels, n_first, weight, ignore_index).to(logits.device)
        ce = F.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
        denom = num_items_in_batch if num_items_in_batch else (target != ignore_index).sum()
        denom = denom.to(ce.device) if hasattr(denom, "to") else denom
        return (ce * w).sum() / max(denom, 1)

    return loss_fn


# -- trainable format-token rows ---------------------------------------------------------
def format_token_ids(tokenizer, texts: Sequence[str]) -> list[int]:
    """The token ids of `texts` (e.g. the urgent prefix and the closing sentence), encoded both at
    the start of a turn and after a space, so every spelling the model emits is covered."""
    ids: set[int] = set()
    for text in texts:
        for variant in (text, " " + text):
            ids.update(tokenizer.encode(variant, add_special_tokens=False))
    return sorted(ids)


def _embedding_weights(model) -> list:
    """The input embedding weight, and the output embedding weight when it is a different tensor."""
    inp = model.get_input_embeddings().weight
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weights = [inp]
    if out_emb is not None and out_emb.weight is not inp and out_emb.weight.data_ptr() != inp.data_ptr():
        weights.append(out_emb.weight)
    return weights


def train_token_rows(model, token_ids: Sequence[int]) -> list:
    """Make only the `token_ids` rows of the (input and, if untied, output) embedding trainable.

    The whole weight gets requires_grad (so the trainer's optimizer picks it up) and a hook
    zeroes the gradient of every other row; with Adam and no weight decay on it the other rows
    never move. Returns the hook handles (call .remove() to undo). Set weight_decay to 0 or keep
    the embedding out of decayed groups: decoupled decay would shrink the frozen rows.
    """
    import torch

    if not token_ids:
        return []
    handles = []
    for weight in _embedding_weights(model):
        mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
        mask[list(token_ids)] = 1
        weight.requires_grad_(True)
        handles.append(weight.register_hook(lambda grad, m=mask: grad * m.to(grad.dtype)))
    log.info("format-token rows trainable: %d rows in %d embedding matrix(es)", len(token_ids), len(handles))
    return handles


def save_token_rows(model, token_ids: Sequence[int], path: str | Path) -> Path:
    """Write the trained rows (safetensors) so inference can put them back on the base model."""
    import torch
    from safetensors.torch import save_file

    weights = _embedding_weights(model)
    idx = torch.tensor(list(token_ids), dtype=torch.long)
    tensors = {"token_ids": idx, "input_rows": weights[0].detach()[idx].float().contiguous().cpu()}
    if len(weights) > 1:
        tensors["output_rows"] = weights[1].detach()[idx].float().contiguous().cpu()
    path = Path(path)
    save_file(tensors, str(path))
    return path


def apply_token_rows(model, path: str | Path) -> int:
    """Copy saved rows into the model's embedding(s); returns the number of rows (0 if no file)."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        return 0
    tensors = load_file(str(path))
    idx = tensors["token_ids"].long()
    weights = _embedding_weights(model)
    with torch.no_grad():
        weights[0][idx] = tensors["input_rows"].to(weights[0].dtype).to(weights[0].device)
        if len(weights) > 1 and "output_rows" in tensors:
            weights[1][idx] = tensors["output_rows"].to(weights[1].dtype).to(weights[1].device)
    return int(idx.numel())


# -- base corpus -------------------------------------------------------------------------
def urgent_style_answer(question: str, answer: str, fcfg) -> str:
    """The answer as the rule wants it for the domain base corpus: the urgent prefix first when
    the stage-2 detector flags the question (and the answer does not already start with it)."""
    from healthai.triage import is_urgent

    prefix = fcfg.urgent_prefix
    if is_urgent(question, fcfg) and not answer.lstrip().startswith(prefix):
        return f"{prefix} {answer.lstrip()}"
    return answer
