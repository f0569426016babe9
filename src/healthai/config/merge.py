"""Stage 3 (review and merge) settings."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field


@dataclass
class MergeConfig:
    """Manual review selection, merge policy and splits (stage 3)."""

    review_size: int = field(120, min=0)
    """Examples sent to manual review."""
    target_total: int = field(451, min=1)
    """Final number of examples (the workshop run ended with 451)."""
    unreviewed_policy: str = field("accept_valid", choices=("accept_valid", "reject"))
    """What happens to review items with no decision: accept those that pass validation, or reject."""
    val_ratio: float = field(0.1, min=0.0, max=0.5)
    """Share of the final set in the validation split."""
    test_ratio: float = field(0.15, min=0.0, max=0.5)
    """Share of the final set in the test split."""
    min_test_urgent: int = field(20, min=0)
    """The test split keeps at least this many urgent examples (for the evaluation)."""
