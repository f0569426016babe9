"""The training memory plan (pure arithmetic over config.json on the meta device), checked before loading.

    plan = check_memory(cfg, base, hp, device, dtype)   # prints the plan; StageError when it cannot fit
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from healthai.errors import StageError
from healthai.model.folder import count_params, meta_model
from healthai.model.lora import apply_lora


@dataclass
class MemoryPlan:
    """Bytes the training needs, in GiB, and whether that fits the device."""

    device: str
    weights: float
    lora_and_optimizer: float
    activations: float
    logits: float
    total: float
    available: float
    fits: bool

    def lines(self) -> list[str]:
        return [f"memory plan on {self.device}: weights {self.weights:.2f} GiB + LoRA/optimizer "
                f"{self.lora_and_optimizer:.2f} + activations {self.activations:.2f} + logits {self.logits:.2f} "
                f"= {self.total:.2f} GiB of {self.available:.1f} GiB usable -> {'fits' if self.fits else 'DOES NOT FIT'}"]


GIB = 1024 ** 3


def plan_memory(config, total_params: int, trainable_params: int, batch: int, length: int, weight_bytes: int,
                checkpointing: bool, available_gib: float, device: str = "cuda") -> MemoryPlan:
    """Rough upper estimate: frozen weights + fp32 LoRA weights, grads, Adam moments (16 B/param) +
    activations (checkpointing: one hidden state per layer kept, one layer live; else ~18 hidden-sized
    tensors per layer and token) + fp32 logits and their gradient over the vocabulary."""
    config = getattr(config, "text_config", None) or config
    h, layers = config.hidden_size, config.num_hidden_layers
    inter = getattr(config, "intermediate_size", 4 * h)
    tokens = batch * length
    act_bytes = weight_bytes if weight_bytes < 4 else 4
    per_layer = tokens * (18 * h + 3 * inter) * act_bytes
    if checkpointing:
        activations = layers * tokens * h * act_bytes + per_layer
    else:
        activations = layers * per_layer
    logits = 2 * tokens * config.vocab_size * 4
    weights = total_params * weight_bytes
    lora = trainable_params * 16
    total = (weights + lora + activations + logits) / GIB
    return MemoryPlan(device=device, weights=weights / GIB, lora_and_optimizer=lora / GIB,
                      activations=activations / GIB, logits=logits / GIB, total=total,
                      available=available_gib, fits=total <= available_gib)


def device_memory_gib(device: str, configured: float | None) -> float:
    if configured:
        return float(configured)
    if device == "cuda":
        import torch

        return torch.cuda.get_device_properties(0).total_memory / GIB
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError, AttributeError):
        return 16.0


def check_memory(cfg, base: Path, hp: dict, device: str, dtype) -> MemoryPlan:
    """Plan from config.json on the meta device before loading; StageError when it cannot fit."""
    import torch

    fc = cfg.finetune
    model = meta_model(base)
    if not fc.train_format_rows:
        model, _ = apply_lora(model, hp, fc.target_modules)
    total, trainable = count_params(model)
    if fc.train_format_rows:  # full embedding rows carry optimizer state (only the masked rows change)
        model, _ = apply_lora(model, hp, fc.target_modules)
        _, lora_only = count_params(model)
        trainable = lora_only + model.get_input_embeddings().weight.numel()
        total, _ = count_params(model)
    weight_bytes = torch.empty(0, dtype=dtype).element_size()
    plan = plan_memory(model.config, total - trainable, trainable, hp["batch_size"], fc.max_length, weight_bytes,
                       use_checkpointing(fc, device), fc.memory_headroom * device_memory_gib(device, fc.gpu_memory_gib),
                       device)
    for line in plan.lines():
        print(f"[finetune] {line}")
    if not plan.fits:
        raise StageError(f"the model does not fit: {plan.total:.1f} GiB needed, {plan.available:.1f} GiB usable "
                         f"on {device}; lower finetune.batch_size or finetune.max_length, turn on "
                         f"finetune.activation_checkpointing, or use a bigger GPU")
    return plan


def use_checkpointing(fc, device: str) -> bool:
    return fc.activation_checkpointing == "on" or (fc.activation_checkpointing == "auto" and device == "cuda")
