"""Hyperparameter search with Optuna over the LoRA fine-tuning (`fine-tuning/fine-tuning-optuna.py`).

    summary = run_search(cfg)          # one worker: trials until the study holds hpo.n_trials
    
Each worker (a process, or one task of a Slurm job array) opens the same study in an
Optuna journal file (`hpo.storage`), claims trials under a lock until the study holds
`hpo.n_trials` completed + pruned trials (failed trials do not count), and trains each
one with `healthai.model.trainer.train_lora` (the one trainer) on a short budget. A trainer
callback reports the validation loss to Optuna and raises `optuna.TrialPruned` when the
pruner says so. Trials left RUNNING by a killed worker are marked FAILED by the next
worker that starts (a journal has no heartbeat). The worker that finishes the last trial
writes `best_params.yaml`, `trials.csv`, `best_trial.json` and the PNG plots under the
stage contract (`StageRun`: lock, manifest last).
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from healthai.config import PipelineConfig
from healthai.errors import ConfigError, InputError, StageError
from healthai.model.hparams import accepted_hparams, format_params
from healthai.pipeline.io import ensure_dir

from healthai.model.hpo_report import BEST_TRIAL, PLOTS, TRIALS_CSV, best_trial, write_report  # noqa: F401
from healthai.model.hpo_study import (  # noqa: F401  (COUNTED, is_stale: the search's names, one import away)
    COUNTED, METRIC, check_space, claim_lock, claim_trial, count_trials, fail_stale_trials, format_counts,
    format_value, is_stale, open_storage, open_study, sampler_seed, storage_path, study_key, to_distributions,
    trial_seed, worker_identity,
)

log = logging.getLogger("healthai.hpo")

optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log lines say what happens


class PruningReporter:
    """Report each evaluation's loss to Optuna; raise TrialPruned when the pruner says stop.

    `steps` is the last training step seen, so a trial records how far it trained. The
    Trainer gets it as a `transformers.TrainerCallback` (see `make_pruning_callback`).
    """

    def __init__(self, trial: optuna.Trial, metric: str = METRIC):
        self.trial = trial
        self.metric = metric
        self.steps = 0
        self.reports: list[tuple[int, float]] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps = state.global_step

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.metric)
        if value is None:
            return
        step = state.global_step
        self.steps = step
        self.reports.append((step, float(value)))
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            log.info("trial %d pruned at step %d (%s %.4f)", self.trial.number, step, self.metric, value)
            raise optuna.TrialPruned(f"pruned at step {step}: {self.metric} {value:.4f}")


@functools.lru_cache(maxsize=1)
def _pruning_callback_class() -> type:
    from transformers import TrainerCallback  # imports torch (seconds): only when a real trainer runs

    return type("PruningCallback", (PruningReporter, TrainerCallback), {"__doc__": PruningReporter.__doc__})


def make_pruning_callback(trial: optuna.Trial, trainer: bool = True) -> PruningReporter:
    """The pruning callback; a TrainerCallback subclass unless `trainer` is False (a stand-in trainer)."""
    return (_pruning_callback_class() if trainer else PruningReporter)(trial)


TrainFn = Callable[..., dict]


@dataclass
class WorkerSummary:
    worker: dict
    sampler_seed: int
    ran: list[dict] = field(default_factory=list)
    stale_failed: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    report_written: bool = False
    interrupted: bool = False
    seconds: float = 0.0


class Interrupted(Exception):
    """Slurm's time-limit warning (SIGUSR1, `--signal=B:USR1@N`) arrived during a trial."""


def _raise_interrupted(signum, frame):
    raise Interrupted("SIGUSR1: time limit near")


def _catch_time_limit_signal() -> None:
    """SIGUSR1 ends the current trial as FAILED (it would not finish) so the requeued job starts clean."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, _raise_interrupted)


def load_train_fn(spec: str) -> TrainFn:
    """`module:function` (hpo.train_function) -> the callable; a wrong name is a one-line ConfigError."""
    import importlib

    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"hpo.train_function: cannot import '{module_name}' ({exc})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"hpo.train_function: '{module_name}' has no function '{name}'")
    return fn


TRIAL_FINETUNE = {"compare_prompts": 0, "merge": False, "tensorboard": False, "mlflow": False,
                  "early_stopping_patience": 0, "checkpoint_steps": 0}


"""Finetune settings a trial overrides: no before/after generation, merged export, loggers or early
stopping (the pruner decides when a trial stops; early stopping would blur the step counts)."""


def call_train_fn(train_fn: TrainFn, cfg: PipelineConfig, train_path: Path, val_path: Path, trial_dir: Path,
                  hparams: dict, callback: PruningReporter, seed: int) -> dict:
    """Call the trainer with this trial's budget, passing each setting the way its signature takes it.

    Wanted: callbacks, max_steps, eval_steps (so pruning can act), seed, save=False (no adapter per
    trial), epochs. A setting the function has no keyword for goes through `hparams` (epochs) or a
    copy of the config (project.seed); without `callbacks` pruning would be impossible: an error.
    """
    import copy
    import inspect

    params = inspect.signature(train_fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    wanted = {"callbacks": [callback], "max_steps": cfg.hpo.max_steps_per_trial,
              "eval_steps": cfg.hpo.eval_steps, "seed": seed, "save": False, "epochs": cfg.hpo.epochs_per_trial}
    kwargs = {k: v for k, v in wanted.items() if takes_any or k in params}
    if "callbacks" not in kwargs:
        raise ConfigError(f"hpo.train_function {getattr(train_fn, '__name__', train_fn)} takes no 'callbacks': "
                          f"the pruning callback cannot be attached")
    hparams = dict(hparams)
    if "epochs" not in kwargs:
        hparams.setdefault("epochs", cfg.hpo.epochs_per_trial)
    cfg = copy.deepcopy(cfg)
    for key, value in TRIAL_FINETUNE.items():  # a trial is a measurement, not a deliverable
        if hasattr(cfg.finetune, key):
            setattr(cfg.finetune, key, value)
    if "seed" not in kwargs:
        cfg.project.seed = seed
        if hasattr(cfg.finetune, "seed"):
            cfg.finetune.seed = seed
    for missing in ("eval_steps", "max_steps"):
        if missing not in kwargs:
            log.warning("%s takes no '%s': hpo.%s is not applied", getattr(train_fn, "__name__", "train_fn"),
                        missing, {"eval_steps": "eval_steps", "max_steps": "max_steps_per_trial"}[missing])
    return train_fn(cfg, train_path, val_path, trial_dir, hparams=hparams, **kwargs)


def needs_trainer_callback(train_fn: TrainFn) -> bool:
    """A real trainer (the project's, or anything once transformers is loaded) needs a TrainerCallback;
    a stand-in trainer gets the plain reporter, so that a search without a model never imports torch."""
    return "transformers" in sys.modules or getattr(train_fn, "__module__", "").startswith("healthai.model.")


def run_trial(trial: optuna.Trial, cfg: PipelineConfig, train_fn: TrainFn, train_path: Path, val_path: Path,
              trial_dir: Path) -> dict:
    """Train one trial; returns what the worker tells Optuna (state, value, steps, metrics)."""
    callback = make_pruning_callback(trial, trainer=needs_trainer_callback(train_fn))
    hparams = dict(trial.params)
    seed = trial.user_attrs.get("seed", trial_seed(cfg.hpo.seed, trial.number))
    t0 = time.time()
    log.info("trial %d: %s (seed %d)", trial.number, format_params(hparams), seed)
    result = {"number": trial.number, "params": hparams, "seed": seed}
    try:
        metrics = call_train_fn(train_fn, cfg, train_path, val_path, trial_dir, hparams, callback, seed)
    except optuna.TrialPruned:
        last = callback.reports[-1][1] if callback.reports else None
        result.update(state=TrialState.PRUNED, value=last, steps=callback.steps, metrics={})
    else:
        value = metrics.get(METRIC)
        if value is None and callback.reports:
            value = callback.reports[-1][1]
        steps = int(metrics.get("train_steps") or metrics.get("global_step") or callback.steps)
        ok = value is not None and math.isfinite(float(value))
        result.update(state=TrialState.COMPLETE if ok else TrialState.FAIL,
                      value=float(value) if ok else None, steps=steps, metrics=_jsonable(metrics))
    finally:
        shutil.rmtree(trial_dir, ignore_errors=True)
    result["seconds"] = round(time.time() - t0, 2)
    return result


def run_worker(cfg: PipelineConfig, train_path: Path, val_path: Path, train_fn: TrainFn | None = None,
               pruning: bool = True, force: bool = False,
               job_alive: Callable[[str], bool] | None = None) -> WorkerSummary:
    """Claim and run trials until the study holds hpo.n_trials counted (+ running elsewhere) trials."""
    train_fn = train_fn or load_train_fn(cfg.hpo.train_function)
    check_space(cfg.hpo.space, accepted_hparams())
    for p in (train_path, val_path):
        if not p.is_file():
            raise InputError("input file not found (run stage 3, 3.Merge, first)", file=str(p))
    t0 = time.time()
    me = worker_identity()
    path = storage_path(cfg)
    ensure_dir(path.parent)
    key = study_key(cfg, train_path, val_path)
    distributions = to_distributions(cfg.hpo.space)
    with claim_lock(path):
        existing = 0
        if path.is_file():
            try:
                existing = len(optuna.load_study(study_name=cfg.hpo.study_name,
                                                 storage=open_storage(path)).trials)
            except KeyError:
                existing = 0
        seed = sampler_seed(cfg.hpo.seed, n_existing=existing)
        study = open_study(cfg, key, seed, pruning=pruning, force=force)
        summary = WorkerSummary(worker=me, sampler_seed=seed)
        summary.stale_failed = fail_stale_trials(study, me, job_alive)
    log.info("study '%s' in %s: %s; this worker's sampler seed %d", cfg.hpo.study_name, path,
             format_counts(count_trials(study.trials)), seed)
    _catch_time_limit_signal()
    while True:
        with claim_lock(path):
            trial = claim_trial(study, cfg, me, distributions, job_alive)
        if trial is None:
            break
        try:
            result = run_trial(trial, cfg, train_fn, train_path, val_path,
                               path.parent / "trials" / f"trial-{trial.number:04d}")
        except BaseException as exc:  # an error, Ctrl-C, the time-limit signal: the trial will not finish
            # the trainer catches SIGUSR1 itself while it trains and raises its TrainingInterrupted after
            time_limit = isinstance(exc, Interrupted) or type(exc).__name__ == "TrainingInterrupted"
            reason = "interrupted: time limit near, job requeued" if time_limit else \
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _finish(study, trial, TrialState.FAIL, None, {"fail_reason": reason[:300]})
            log.warning("trial %d failed (%s)", trial.number, reason)
            if time_limit:
                summary.interrupted = True
                break
            raise
        attrs = {"steps": result["steps"], "seconds": result["seconds"]}
        if result["metrics"]:
            attrs["metrics"] = result["metrics"]
        if result["state"] == TrialState.FAIL:
            attrs["fail_reason"] = f"{METRIC} missing or not finite"
        if not _finish(study, trial, result["state"], result["value"], attrs):
            continue
        log.info("trial %d %s: %s=%s after %d steps in %.1f s", trial.number, result["state"].name.lower(),
                 METRIC, format_value(result["value"]), result["steps"], result["seconds"])
        summary.ran.append(result)
    summary.counts = count_trials(study.get_trials(deepcopy=False))
    summary.seconds = round(time.time() - t0, 2)
    return summary


def _finish(study: optuna.Study, trial: optuna.Trial, state: TrialState, value: float | None,
            attrs: dict) -> bool:
    """Record and close a trial; False when another worker already closed it (it judged us gone)."""
    try:
        for key, val in attrs.items():
            trial.set_user_attr(key, val)
        if state == TrialState.COMPLETE:
            study.tell(trial, value)
        else:
            study.tell(trial, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        log.warning("trial %d was already closed by another worker (it took this worker for dead): "
                    "its result is dropped", trial.number)
        return False
    return True


def run_search(cfg: PipelineConfig, force: bool = False, train_fn: TrainFn | None = None) -> WorkerSummary:
    """The stage: run this worker's trials; when the study is complete, write the report (once)."""
    train_path, val_path = train_val_paths(cfg)
    summary = run_worker(cfg, train_path, val_path, train_fn=train_fn, force=force)
    counts = summary.counts
    if summary.interrupted:
        print(f"[hpo] interrupted by the time-limit signal ({format_counts(counts)}); the requeued job resumes")
        return summary
    if counts["counted"] < cfg.hpo.n_trials:
        print(f"[hpo] this worker is done; {counts['running']} trial(s) still running in other workers "
              f"({format_counts(counts)}): the worker that finishes the last one writes the report")
        return summary
    study = optuna.load_study(study_name=cfg.hpo.study_name, storage=open_storage(storage_path(cfg)))
    try:
        write_report(cfg, study, train_path, val_path, force=force)
        summary.report_written = True
    except StageError as exc:
        if "already running" not in exc.reason:
            raise
        print(f"[hpo] another worker is writing the report ({exc.reason.split(';')[0]})")
    return summary


def train_val_paths(cfg: PipelineConfig) -> tuple[Path, Path]:
    """The training data of the search: stage 3's train/val split (the finetune.dataset choice)."""
    root = cfg.project_path()
    if getattr(cfg.finetune, "dataset", "qa") == "clinical":
        return root / "4.clinical" / "train.jsonl", root / "4.clinical" / "dev.jsonl"
    return root / "3.merge" / "train.jsonl", root / "3.merge" / "val.jsonl"


def _jsonable(metrics: dict) -> dict:
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
    return out
