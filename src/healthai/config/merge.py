"""Stage 3 (manual review, merge, splits, dataset card) settings."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field


@dataclass
class MergeConfig:
    """Manual review selection, merge policy and splits (stage 3)."""

    review_size: int = field(120, min=0)
    """Examples sent to manual review (the workshop sent 120)."""
    review_urgent_share: float = field(0.4, min=0.0, max=1.0)
    """Share of the review selection that is urgent (above the ~25% of the sample: urgent answers matter most)."""
    review_file: str = "{project_dir}/3.merge/review/review.csv"
    """Review decisions CSV (columns id, category, is_urgent, question, answer, decision, edited_answer, note); read when it holds a decision."""
    target_total: int = field(451, min=1)
    """Final number of examples (the workshop run ended with 451); split per category by filter.categories weights."""
    trim_to_target: bool = True
    """Leave out valid records beyond a category's target (reason over_target in rejected.jsonl), as the workshop kept exactly 451."""
    unreviewed_policy: str = field("accept_valid", choices=("accept_valid", "reject"))
    """Review items with no decision (or skipped): accept_valid keeps those that pass validation (the CPU demo), reject drops them."""
    val_ratio: float = field(0.1, min=0.0, max=0.5)
    """Share of the final set in the validation split."""
    test_ratio: float = field(0.15, min=0.0, max=0.5)
    """Share of the final set in the test split."""
    min_test_urgent: int = field(20, min=0)
    """The test split keeps at least this many urgent examples (for the evaluation)."""
    near_dup_threshold: float = field(0.7, min=0.0, max=1.0)
    """Jaccard similarity of the user questions' word shingles at or above which two examples are one group (never split apart)."""
    shingle_words: int = field(3, min=1)
    """Words per shingle for the near-duplicate MinHash."""
    num_perm: int = field(128, min=16)
    """MinHash permutations (datasketch); more = closer Jaccard estimates, slower."""
    seed: int = 42
    """Seed of the review selection, the trimming/top-up order and the splits."""
    sources_file: str = "data/raw/SOURCES.md"
    """Source notes whose licence lines go into the dataset card (relative to the repo)."""
    histogram_bins: int = field(20, min=2)
    """Bins of the answer-length histogram (answer_lengths.png)."""

    def validate(self) -> None:
        if self.val_ratio + self.test_ratio >= 1.0:
            raise ValueError(f"val_ratio + test_ratio must be < 1, got {self.val_ratio + self.test_ratio}")
        if self.review_size > self.target_total * 2:
            raise ValueError(f"review_size ({self.review_size}) is more than twice target_total ({self.target_total})")
