"""The stage contract (lock, manifest, atomic outputs), file io, the stage CLI and the job chain."""
