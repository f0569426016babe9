"""LoRA on every linear layer, the trainable format-token rows, saving and merging adapters.

    peft_model, counts = apply_lora(model, hp, "all-linear")   # counts: wrapped modules per leaf name
    enable_token_rows(model, ids); apply_token_rows(model, adapter_dir)
    save_adapter(model, tokenizer, folder); merge_into(model, tokenizer, folder)

For Qwen3.5 "all-linear" includes the Gated DeltaNet projections
(`linear_attn.in_proj_qkv/in_proj_z/in_proj_a/in_proj_b/out_proj`); a wrong target list that
wraps nothing is an error, not a silent no-op.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Iterable

from healthai.errors import ModelError

TOKEN_ROWS = "token_rows.safetensors"


def wrapped_module_counts(model) -> dict[str, int]:
    """LoRA-wrapped modules per leaf name ('in_proj_qkv': 24, 'q_proj': 8, ...)."""
    counts: Counter = Counter()
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer"):
            counts[name.rsplit(".", 1)[-1]] += 1
    return dict(sorted(counts.items()))


def lora_config(hp: dict, target_modules: str | list[str]):
    from peft import LoraConfig

    return LoraConfig(r=hp["lora_r"], lora_alpha=hp["lora_alpha"], lora_dropout=hp["lora_dropout"],
                      target_modules=target_modules, bias="none", task_type="CAUSAL_LM")


def apply_lora(model, hp: dict, target_modules: str | list[str] = "all-linear"):
    """The PEFT model; raises ModelError when no module was wrapped (a wrong target list)."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config(hp, target_modules))
    counts = wrapped_module_counts(peft_model)
    if not counts:
        raise ModelError(f"LoRA wrapped no module (finetune.target_modules = {target_modules!r})")
    return peft_model, counts


def format_token_ids(tokenizer, phrases: Iterable[str]) -> list[int]:
    """Token ids of the phrases the urgent/closing levers care about (with and without a leading space)."""
    ids: set[int] = set()
    for phrase in phrases:
        for text in (phrase, " " + phrase):
            ids.update(tokenizer(text, add_special_tokens=False).input_ids)
    return sorted(ids)


def enable_token_rows(model, ids: list[int]):
    """Make rows `ids` of the input embedding (and an untied output head) trainable; others get zero grad."""
    import torch

    tensors = []
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is None or any(module.weight is t for t in tensors):
            continue
        w = module.weight
        w.requires_grad_(True)
        mask = torch.zeros(w.shape[0], 1, dtype=w.dtype, device=w.device)
        mask[ids] = 1
        w.register_hook(lambda grad, mask=mask: grad * mask)
        tensors.append(w)
    return tensors


def token_rows_state(model, ids: list[int]) -> dict:
    import torch

    state = {"ids": torch.tensor(ids, dtype=torch.long),
             "input_embeddings": model.get_input_embeddings().weight[ids].detach().cpu().contiguous()}
    out = model.get_output_embeddings()
    if out is not None and out.weight is not model.get_input_embeddings().weight:
        state["output_embeddings"] = out.weight[ids].detach().cpu().contiguous()
    return state


def apply_token_rows(model, adapter_dir: str | os.PathLike) -> bool:
    """Copy the trained format-token rows saved next to an adapter into `model` (False: none saved)."""
    import torch
    from safetensors.torch import load_file

    path = Path(adapter_dir) / TOKEN_ROWS
    if not path.is_file():
        return False
    state = load_file(str(path))
    ids = state["ids"].tolist()
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[ids] = state["input_embeddings"].to(emb.dtype).to(emb.device)
        out = model.get_output_embeddings()
        if "output_embeddings" in state and out is not None and out.weight is not emb:
            out.weight[ids] = state["output_embeddings"].to(out.weight.dtype).to(out.weight.device)
    return True


def save_adapter(model, tokenizer, folder: Path, row_ids: list[int] = ()) -> Path:
    """adapter_model.safetensors + adapter_config.json + tokenizer + chat template (+ token rows), atomically."""
    from safetensors.torch import save_file

    tmp = folder.with_name(f".{folder.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if not (tmp / "chat_template.jinja").is_file():
        (tmp / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    if row_ids:
        save_file(token_rows_state(model, list(row_ids)), str(tmp / TOKEN_ROWS))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def merge_into(model, tokenizer, folder: Path) -> Path:
    """The adapter (and any trained token rows) merged into the base weights: one plain model folder."""
    tmp = folder.with_name(f".{folder.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    merged = model.merge_and_unload()
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if not (tmp / "chat_template.jinja").is_file():
        (tmp / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder
