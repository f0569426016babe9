"""Config sections shared by every stage: the project, the site, the model folders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from healthai.config.loader import field


@dataclass
class ProjectConfig:
    """Where outputs go and how strict every stage is with bad input."""

    dir: str | None = None
    """Project directory for all stage outputs. null: $HEALTHAI_PROJECT_DIR, else the site's, else <repo>/runs."""
    max_bad_fraction: float = field(0.05, min=0.0, max=1.0)
    """Fraction of malformed input lines tolerated per file (quarantined); above it the stage fails."""
    max_record_bytes: int = field(1_000_000, min=1024)
    """A single input line larger than this (bytes) is rejected as 'record_too_large'."""
    seed: int = 42
    """Global seed for sampling, splits and training, unless a stage sets its own."""


@dataclass
class SiteConfig:
    """Machine-specific settings: set by `configs/sites/<name>.yaml`, chosen by --site or $HEALTHAI_SITE."""

    name: str = "local"
    """Profile name (local, deucalion)."""
    project_dir: str | None = None
    """Default project directory on this site ({repo} and {user} are expanded)."""
    activate: str = ""
    """Shell lines that activate the Python environment inside a job (read by slurm/common.sh)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Compute device for models: auto picks cuda when a GPU is visible."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Model weight dtype: auto = bfloat16 on GPU, float32 on CPU."""
    gpu_account: str = "f2026aivlab00021bscaifg"
    """Slurm account for GPU stages (Deucalion: project id + 'g')."""
    gpu_partition: str = "normal-a100-40"
    """Slurm partition for GPU stages."""
    cpu_account: str = "f2026aivlab00021bscaifg"
    """Slurm account for CPU-only stages (Deucalion: project id + 'x' for x86 partitions)."""
    cpu_partition: str = "normal-a100-40"
    """Slurm partition for CPU-only stages (the workshop ran everything on normal-a100-40)."""


@dataclass
class ModelsConfig:
    """Model folders. {project_dir} and {repo} are expanded. Only local folders: nothing is downloaded."""

    base: str = "{project_dir}/models/embedded-base"
    """The base causal LM for fine-tuning and inference (Deucalion: Qwen3.5-9B)."""
    rewriter: str | None = None
    """The LLM that rewrites answers in stage 2 (Deucalion: Qwen3.5-2B); null = the base model."""
    adapter: str = "{project_dir}/ft/adapter"
    """Where the final LoRA adapter is written and read for 'ft' inference."""
