"""Inference and evaluation settings (inference/inference.py, run-inference.sh, run-evaluate.sh)."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field


@dataclass
class InferenceConfig:
    """Generation settings, the workshop's test prompts and the base-vs-fine-tuned evaluation."""

    prompts: list[str] = field(default_factory=lambda: [
        "I have a mild headache and feel a bit tired. What should I do?",
        "I'm having chest pain that radiates to my left arm and I'm short of breath.",
        "My 3-year-old has had a fever of 101.5°F for two days. She's drinking fluids but not eating. Should I be worried?",
        "I've been feeling down lately and can't sleep well.",
    ])
    """The four workshop test prompts (answered by run-inference.sh and shown in the report)."""
    prompts_file: str | None = None
    """A file of prompts used instead of `prompts`: one per line (.txt) or JSONL with "prompt"/"question"/"messages"; {repo}/{project_dir} expanded."""
    max_new_tokens: int = field(128, min=1)
    """Longest generated answer (tokens); the evaluation needs >= 96 for a 1-5 sentence answer."""
    do_sample: bool = False
    """Greedy decoding by default (deterministic); true samples with temperature/top_p and `seed`."""
    temperature: float = field(0.7, min=0.01, max=2.0)
    """Sampling temperature (only when do_sample is true)."""
    top_p: float = field(0.9, min=0.01, max=1.0)
    """Nucleus sampling mass (only when do_sample is true)."""
    repetition_penalty: float = field(1.0, min=1.0, max=2.0)
    """>1 discourages repeated tokens (1.0 = off, the workshop's generate() default)."""
    seed: int = 42
    """Seed set before every generate call (matters only when sampling)."""
    batch_size: int = field(8, min=1)
    """Prompts per generate call for prompt files and the evaluation (left-padded; a batch of one is never padded)."""
    eval_split: str = field("test", choices=("test", "val"))
    """Which 3.merge split the evaluation answers (test = the held-out split; val while tuning)."""
    eval_limit: int = field(0, min=0)
    """Evaluate only the first N items of the split (0 = all); the rest are counted as skipped."""
    ci_level: float = field(0.95, min=0.5, max=0.999)
    """Confidence level of the Wilson intervals for urgent recall and over-triage."""
    worst_cases: int = field(3, min=0)
    """How many worst answers per model the report shows (missed urgent first, then leaks, format)."""
    triage_set: str | None = "data/triage/triage_labels.jsonl"
    """Hand-labelled triage set (clinician labels, docs/TRIAGE.md) also answered by both models for the
    report's urgent recall / over-triage / P("Seek") section; null = skip it."""
    triage_max_new_tokens: int = field(12, min=1)
    """Tokens generated per triage-set question: enough to read the urgent prefix, not a whole answer."""

    def validate(self) -> None:
        if not self.prompts and not self.prompts_file:
            raise ValueError("set at least one of 'prompts' or 'prompts_file'")
