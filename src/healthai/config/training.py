"""Final LoRA fine-tuning settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    batch_size: int = field(8, min=1)
    """Examples per device per optimizer micro-step."""
    gradient_accumulation_steps: int = field(1, min=1)
    """Micro-steps per optimizer step (effective batch = batch_size x this x processes)."""
    max_length: int = field(512, min=16)
    """Longest tokenised example (system + user + assistant); longer ones are truncated (logged)."""
    warmup_ratio: float = field(0.03, min=0.0, max=0.5)
    """Fraction of steps with linear learning-rate warm-up."""
    weight_decay: float = field(0.0, min=0.0)
    """AdamW weight decay."""
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule after warm-up."""
    target_modules: str | list[str] = "all-linear"
    """LoRA targets: 'all-linear' (every nn.Linear of the language model but the output head; for
    Qwen3.5 that includes the Gated DeltaNet projections) or an explicit list of module names."""
    early_stopping_patience: int = field(2, min=0)
    """Stop after this many evaluations without a better validation loss (0 = never); the best epoch is kept."""
    group_by_length: bool = True
    """Length-grouped batches (less padding; packing is off: it leaks across examples on Qwen3.5 without fla)."""
    logging_steps: int = field(5, min=1)
    """Log the training loss every N optimizer steps."""
    checkpoint_steps: int = field(0, min=0)
    """Also checkpoint every N steps (0 = at each epoch end and on the time-limit signal only)."""
    save_total_limit: int = field(2, min=1)
    """Checkpoints kept in ft/checkpoints (the best one is always kept)."""
    seed: int | None = None
    """Training seed (data order, LoRA init, dropout); null = project.seed."""
    activation_checkpointing: Literal["auto", "on", "off"] = "auto"
    """Recompute activations in the backward pass: auto = on GPU only (on CPU it costs 2-3x speed)."""
    gpu_memory_gib: float | None = field(None, min=1.0)
    """Device memory the plan checks against (null: what the GPU reports; CPU: the machine's RAM)."""
    memory_headroom: float = field(0.9, min=0.1, max=1.0)
    """Use at most this fraction of the device memory in the plan."""
    tensorboard: bool = True
    """Write TensorBoard logs to ft/tensorboard (Deucalion has a TensorBoard app)."""
    mlflow: bool = False
    """Also log to MLflow (needs the `mlflow` extra: pip install -e .[mlflow])."""
    mlflow_tracking_uri: str = "{project_dir}/mlruns"
    """MLflow file store (Deucalion has an mlflow app that can open it)."""
    mlflow_experiment: str = "healthai-finetune"
    """MLflow experiment name."""
    merge: bool = False
    """Also write the adapter merged into the base weights to ft/merged (what serving wants; --merge)."""
    compare_prompts: int = field(16, min=0)
    """After training, answer this many validation prompts with and without the adapter (greedy) and
    report the change (closing sentence, urgent prefix, length) in metrics.json; 0 = skip."""
    compare_max_new_tokens: int = field(96, min=8)
    """Token budget per answer in that comparison."""
    urgent_oversample: float = field(3.0, min=1.0, max=20.0)
    """Urgent-rule lever: each urgent training example appears this many times on average (1 = off;
    docs/TRIAGE.md). 3 was chosen on the validation split (best recall minus over-triage), never on test."""
    first_token_weight: float = field(1.0, min=0.0, max=100.0)
    """Urgent-rule lever: loss weight of the first `first_token_count` assistant tokens, where the
    "Seek emergency care immediately." decision is made (1 = plain loss)."""
    first_token_count: int = field(8, min=1)
    """How many opening assistant tokens `first_token_weight` applies to (covers an empty think block)."""
    train_format_rows: bool = False
    """Urgent-rule lever: also train the embedding rows of the urgent-prefix and closing-sentence tokens
    (gradient-mask hook; saved as token_rows.safetensors next to the adapter, applied at inference)."""
