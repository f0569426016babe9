"""Final LoRA fine-tuning settings."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field


@dataclass
class FinetuneConfig:
    """LoRA SFT of the base model on the merged set."""

    dataset: str = field("qa", choices=("qa", "clinical"))
    """Which dataset to train on: the merged Q&A (3.merge) or the clinical-reasoning set (4.clinical)."""
    lora_r: int = field(16, min=1)
    """LoRA rank."""
    lora_alpha: int = field(32, min=1)
    """LoRA alpha (scale = alpha / r)."""
    lora_dropout: float = field(0.05, min=0.0, max=0.9)
    """LoRA dropout."""
    learning_rate: float = field(2e-4, min=0.0)
    """Peak learning rate."""
    epochs: float = field(2.0, min=0.0)
    """Training epochs."""
