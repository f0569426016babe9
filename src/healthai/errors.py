"""The package's own error types: each carries what a user needs to fix the problem.

Entry scripts catch these at the boundary and print one line (never a traceback);
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class HealthAIError(Exception):
    """Base class: a failure that is explained to the user in one line."""

    exit_code = 1

    def __init__(self, reason: str, file: str | None = None, line: int | None = None):
        self.reason = reason
        self.file = str(file) if file is not None else None
        self.line = line
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = self.file or ""
        if self.file and self.line is not None:
            where = f"{self.file}:{self.line}"
        return f"{where}: {self.reason}" if where else self.reason


class ConfigError(HealthAIError):
    """A bad config file, key, value, override or command-line usage (exit 2)."""

    exit_code = 2


class InputError(HealthAIError):
    """Input data that cannot be used: missing file, too many malformed lines."""


class StageError(HealthAIError):
    """A stage could not finish: disk full, lock held, a check that failed."""


class ModelError(HealthAIError):
    """A model folder that is missing pieces or cannot be loaded safely."""
