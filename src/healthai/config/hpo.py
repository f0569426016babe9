"""Optuna hyperparameter search settings: the search space, the study, pruning, trial length."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from healthai.config.loader import field
from healthai.config.training import FinetuneConfig


@dataclass
class ParamSpace:
    """One searched hyperparameter: an int or float range, or a list of choices."""

    type: Literal["int", "float", "categorical"] = "float"
    """Distribution: int (low..high by step), float (low..high, log or step), categorical (choices; low/high ignored)."""
    low: int | float | None = None
    """Lower bound, inclusive (int and float)."""
    high: int | float | None = None
    """Upper bound, inclusive (int and float)."""
    step: int | float | None = None
    """Spacing of the values (int: default 1; float: null = continuous)."""
    log: bool = False
    """Sample on a log scale (needs low > 0; not with a step other than 1)."""
    choices: list[str | int | float | bool] | None = None
    """The values of a categorical parameter."""

    def validate(self) -> None:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("empty search space: a categorical parameter needs a non-empty 'choices' list")
            # keys of another type are dropped: a site profile or --set that switches the type of a
            # parameter merges with the bounds of pipeline.yaml
            self.low = self.high = self.step = None
            self.log = False
            return
        self.choices = None
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs both 'low' and 'high'")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("'low' and 'high' must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"inverted range: low {self.low} > high {self.high}")
        if self.low == self.high:
            raise ValueError(f"empty range: low == high == {self.low} (fix the value in the finetune section "
                             f"instead of searching it)")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"'step' must be > 0, got {self.step}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, got {self.low}")
        if self.type == "int":
            for key in ("low", "high", "step"):
                value = getattr(self, key)
                if value is not None and not float(value).is_integer():
                    raise ValueError(f"an int parameter needs an integer '{key}', got {value}")
            self.low, self.high = int(self.low), int(self.high)
            self.step = int(self.step) if self.step is not None else 1
            if self.log and self.step != 1:
                raise ValueError("an int parameter cannot have both log: true and a step other than 1")
        elif self.log and self.step is not None:
            raise ValueError("a float parameter cannot have both log: true and a step")
        if self.step is not None and self.step > self.high - self.low:
            raise ValueError(f"empty range: step {self.step} is larger than high - low = {self.high - self.low}, "
                             f"only low={self.low} could be sampled")


def _tunable_types() -> dict[str, type]:
    """The hyperparameters the training function accepts: the numeric fields of the finetune section."""
    hints = {f.name: f.type for f in dataclasses.fields(FinetuneConfig)}
    out = {}
    for name, tp in hints.items():
        tp = tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))
        if tp in ("int", "float"):
            out[name] = int if tp == "int" else float
    return out


@dataclass
class HPOConfig:
    """Search over LoRA hyperparameters (the workshop's N_TRIALS=5 space)."""

    n_trials: int = field(5, min=1)
    """Total trials (completed + pruned) across all workers; failed trials do not count."""
    study_name: str = "healthai-lora"
    """Optuna study name in the journal file (a file holding another study name is refused)."""
    storage: str = "{project_dir}/hpo/journal.log"
    """Optuna journal file (JournalFileBackend): the study resumes from it after a crash or requeue."""
    sampler: Literal["tpe", "random"] = "tpe"
    """Optuna sampler (TPE samples at random for its first 10 trials)."""
    seed: int = 42
    """Base seed: sampler seed = seed + 1000 * restart count + array task id; trial seed = seed + trial number."""
    pruner: Literal["median", "none"] = "median"
    """Stop a trial whose validation loss is worse than the median of finished trials at the same step."""
    n_startup_trials: int = field(2, min=0)
    """MedianPruner: no pruning until this many trials have completed."""
    n_warmup_steps: int = field(10, min=0)
    """MedianPruner: no pruning before this training step within a trial."""
    eval_steps: int = field(10, min=1)
    """Evaluate on the validation split every N training steps (the points where pruning can act)."""
    epochs_per_trial: float = field(1.0, min=0.0)
    """Training epochs per trial (short: only the ranking of trials matters)."""
    max_steps_per_trial: int | None = field(None, min=1)
    """Cap on training steps per trial; null = epochs_per_trial decides."""
    train_function: str = "healthai.model.trainer:train_lora"
    """The training function each trial calls (module:function), the same one the final fine-tuning uses."""
    space: dict[str, ParamSpace] = field(default_factory=lambda: {
        "lora_r": ParamSpace("int", 8, 56, step=16),
        "lora_alpha": ParamSpace("int", 16, 64, step=16),
        "lora_dropout": ParamSpace("float", 0.01, 0.1),
        "learning_rate": ParamSpace("float", 1e-5, 5e-4, log=True),
    })
    """Searched hyperparameters, each a key of the finetune section: type, low, high, step, log, choices."""

    def validate(self) -> None:
        if not self.space:
            raise ValueError("'space' is empty: nothing to search")
        tunable = _tunable_types()
        for name, spec in self.space.items():
            if name not in tunable:
                raise ValueError(f"unknown parameter 'space.{name}': the training function accepts "
                                 f"{', '.join(sorted(tunable))}")
            if spec.type == "float" and tunable[name] is int:
                raise ValueError(f"'space.{name}' is type float but finetune.{name} is an integer: use type int")
        if ":" not in self.train_function:
            raise ValueError(f"'train_function' must be module:function, got {self.train_function!r}")
        if self.epochs_per_trial == 0 and self.max_steps_per_trial is None:
            raise ValueError("a trial needs epochs_per_trial > 0 or max_steps_per_trial")
