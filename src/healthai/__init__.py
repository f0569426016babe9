"""Health AI assistant pipeline: the CNCA AI Factory workshop pipeline as a package.

Stage entry scripts in the numbered folders are thin; the logic lives here, one
module per concern (readers, cleaning, dedup, filtering, sampling, rewriting,
review/merge, clinical, modeling, training, hpo, inference, evaluation, config,
io/manifest).
"""

__version__ = "0.1.0"
