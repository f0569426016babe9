"""Embedded base model settings: a tiny Qwen3.5-architecture model built and trained here."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field


@dataclass
class EmbeddedModelConfig:
    """Sizes of the tiny stand-in model and its domain-base training."""

    vocab_size: int = field(6000, min=512)
    """Byte-level BPE vocabulary trained on the curated corpus (plus Qwen special tokens)."""
    hidden_size: int = field(128, min=16)
    """Model width."""
    num_hidden_layers: int = field(4, min=1)
    """Layers: 3 linear-attention (Gated DeltaNet) per full-attention layer, as in Qwen3.5."""
    seed: int = 1234
    """Seed for tokenizer sampling and weight initialisation."""
