"""Stages 1-3 and the clinical builder: read, clean, scrub, filter, rewrite, review, merge, split."""
