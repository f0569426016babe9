"""Stage 4 (clinical-reasoning dataset) settings."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field


@dataclass
class ClinicalConfig:
    """Pharmacological tables -> clinical-reasoning Q&A (stage 4)."""

    medicines_csv: str = "data/raw/Medicine_Details.csv"
    """Commercial medicine catalogue."""
    drugbank_csv: str = "data/raw/drugbank_vocabulary.csv"
    """DrugBank open vocabulary (CC0)."""
    drug_features_csv: str = "data/raw/primekg_drug_features_subset.csv"
    """PrimeKG drug features (DrugBank-derived text, CC BY-NC)."""
    train_ratio: float = field(0.8, min=0.0, max=1.0)
    """Share of split keys in train."""
    dev_ratio: float = field(0.1, min=0.0, max=1.0)
    """Share of split keys in dev (test gets the rest)."""
