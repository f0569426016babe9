"""Slurm time limits: SIGUSR1 (`--signal=B:USR1@60`) makes the trainer checkpoint and stop.

`healthai_run_requeueable` (slurm/common.sh) relays the signal and requeues the job; the next
run resumes from the last checkpoint (see `trainer.last_checkpoint`).
"""

from __future__ import annotations

import logging
import signal
import threading

from healthai.errors import StageError

log = logging.getLogger("healthai.finetune")


class TimeLimit:
    """SIGUSR1 sets a flag; the trainer callback then saves a checkpoint and stops."""

    def __init__(self):
        self.requested = threading.Event()
        self.previous = None

    def install(self) -> "TimeLimit":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGUSR1, self._handle)
        return self

    def uninstall(self) -> None:
        if self.previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self.previous)
            self.previous = None

    def _handle(self, signum, frame) -> None:
        log.warning("SIGUSR1: time limit near; saving a checkpoint after this step and stopping")
        self.requested.set()


class TrainingInterrupted(StageError):
    """Training stopped on the time-limit signal after saving a checkpoint; rerun (requeue) to resume."""


def _any_rank(flag: bool) -> bool:
    """True when `flag` is set on any process of a distributed run (a max all-reduce; local: the flag)."""
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def stop_on_signal_class():
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def __init__(self, limit: TimeLimit):
            self.limit = limit
            self.stopped_at = None

        def on_step_end(self, args, state, control, **kwargs):
            if _any_rank(self.limit.requested.is_set()):  # every rank stops at the same step (no DDP hang)
                control.should_save = True
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    return StopOnSignal
