"""Inference and evaluation settings."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field


@dataclass
class InferenceConfig:
    """Generation settings and the workshop's test prompts."""

    prompts: list[str] = field(default_factory=lambda: [
        "I have a mild headache and feel a bit tired. What should I do?",
        "I'm having chest pain that radiates to my left arm and I'm short of breath.",
        "My 3-year-old has had a fever of 101.5°F for two days. She's drinking fluids but not eating. Should I be worried?",
        "I've been feeling down lately and can't sleep well.",
    ])
    """The four workshop test prompts."""
    max_new_tokens: int = field(128, min=1)
    """Longest generated answer (tokens)."""
    do_sample: bool = False
    """Greedy decoding by default (deterministic)."""
