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
    urgent_oversample: float = field(1.0, min=1.0, max=20.0)
    """Urgent-rule lever: each urgent training example appears this many times on average (1 = off;
    docs/TRIAGE.md). Chosen on the validation split, never on test."""
    first_token_weight: float = field(1.0, min=0.0, max=100.0)
    """Urgent-rule lever: loss weight of the first `first_token_count` assistant tokens, where the
    "Seek emergency care immediately." decision is made (1 = plain loss)."""
    first_token_count: int = field(8, min=1)
    """How many opening assistant tokens `first_token_weight` applies to (covers an empty think block)."""
    train_format_rows: bool = False
    """Urgent-rule lever: also train the embedding rows of the urgent-prefix and closing-sentence tokens
    (gradient-mask hook; saved as token_rows.safetensors next to the adapter, applied at inference)."""
