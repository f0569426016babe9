"""Stage 4: pharmacological tables -> clinical-reasoning Q&A (tables, matching, splits, tasks, leakage, stage)."""
