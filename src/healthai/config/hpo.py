"""Optuna hyperparameter search settings."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field


@dataclass
class HPOConfig:
    """Search over LoRA hyperparameters (the workshop's N_TRIALS=5 space)."""

    n_trials: int = field(5, min=1)
    """Total trials (completed + pruned) across all workers."""
    study_name: str = "healthai-lora"
    """Optuna study name in the journal file."""
