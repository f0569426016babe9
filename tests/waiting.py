"""Waiting in tests for a state another process reaches: re-read until true, bounded, and say what never came.

A poll here never sleeps *instead of* checking: it re-reads the state it needs (a study record,
a complete checkpoint, a process gone) and only paces the re-reads. The deadline is generous
because CI may run on a loaded box; a pass never depends on it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
DEADLINE_S = 300.0


def wait_for(check: Callable[[], T], what: str, deadline_s: float = DEADLINE_S, interval_s: float = 0.1,
             proc: subprocess.Popen | None = None) -> T:
    """The first truthy value of `check()`; AssertionError naming `what` after `deadline_s`.

    With `proc`, stop early when that process has ended without reaching the state (its exit
    code and output tail in the message) instead of waiting out the deadline.
    """
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = check()  # it may have reached the state just before ending
            if value:
                return value
            out = ""
            if proc.stdout is not None or proc.stderr is not None:
                stdout, stderr = proc.communicate()
                out = f"; output tail: {((stdout or '') + (stderr or ''))[-2000:]}"
            raise AssertionError(f"never appeared: {what} (the process ended with code {proc.returncode}{out})")
        if time.monotonic() >= end:
            raise AssertionError(f"never appeared within {deadline_s:.0f} s: {what}")
        time.sleep(interval_s)  # pacing between re-reads, not synchronisation
