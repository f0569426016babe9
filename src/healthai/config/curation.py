"""Stage 1 (initial curation) settings."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field


@dataclass
class InputSpec:
    """One raw input file."""

    path: str = ""
    """File path ({repo} / {project_dir} expanded; relative paths are under the repo)."""
    format: str = "auto"
    """auto | chatdoctor_json | chatdoctor_jsonl | evals_chat | messages | csv | tsv."""
    question_column: str = "question"
    """CSV/TSV only: the column holding the patient's question."""
    answer_column: str = "answer"
    """CSV/TSV only: the column holding the doctor's answer."""
    source: str | None = None
    """Source name kept in each record's meta (default: the file name without extension)."""


@dataclass
class CurationConfig:
    """Read raw Q&A, clean, filter, deduplicate, scrub personal data (stage 1)."""

    inputs: list[InputSpec] = field(default_factory=lambda: [
        InputSpec(path="data/raw/icliniq_2k_chat.jsonl"),
        InputSpec(path="data/raw/healthcaremagic_82_sample.jsonl"),
        InputSpec(path="data/raw/chatdoctor5k.json"),
    ])
    """Raw inputs read in order (the bundled real samples by default)."""
    min_answer_words: int = field(20, min=1)
    """Answers shorter than this (words, after cleaning) are rejected as too short."""
    max_answer_words: int = field(400, min=1)
    """Answers longer than this (words) are rejected as too long."""
    min_question_words: int = field(5, min=1)
    """Questions shorter than this (words) are rejected."""
    review_sample_size: int = field(50, min=0)
    """Records exported for manual validation (stratified by source)."""
