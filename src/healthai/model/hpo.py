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
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

from healthai.config import PipelineConfig
from healthai.config.hpo import ParamSpace
from healthai.errors import ConfigError, InputError, StageError
from healthai.model.hparams import BEST_PARAMS, accepted_hparams, format_params
from healthai.pipeline.io import ensure_dir, sha256_file

log = logging.getLogger("healthai.hpo")


log = logging.getLogger("healthai.hpo")


TRIALS_CSV = "trials.csv"


BEST_TRIAL = "best_trial.json"


PLOTS = ("optimization_history.png", "param_importances.png", "parallel_coordinate.png",
         "intermediate_values.png")


METRIC = "eval_loss"


COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log lines say what happens


def to_distributions(space: dict[str, ParamSpace]) -> dict[str, BaseDistribution]:
    """The config's search space as Optuna distributions (already validated by the config loader)."""
    out: dict[str, BaseDistribution] = {}
    for name, spec in space.items():
        if spec.type == "int":
            out[name] = IntDistribution(int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
        elif spec.type == "float":
            out[name] = FloatDistribution(float(spec.low), float(spec.high), step=spec.step, log=spec.log)
        else:
            out[name] = CategoricalDistribution(list(spec.choices or []))
    return out


def check_space(space: dict[str, ParamSpace], accepted: set[str] | frozenset[str]) -> None:
    """Every searched name must be a hyperparameter the training function accepts."""
    for name in space:
        if name not in accepted:
            raise ConfigError(f"unknown parameter 'hpo.space.{name}': the training function accepts "
                              f"{', '.join(sorted(accepted))}")


def worker_identity(env: dict | None = None) -> dict:
    """Who runs a trial: enough to tell later whether that process or Slurm job is still alive."""
    env = os.environ if env is None else env
    array_job, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "slurm_job_id": env.get("SLURM_JOB_ID") or None,
            # what squeue needs to see exactly this task (an array's first task shares the array's id)
            "slurm_job": f"{array_job}_{task}" if array_job and task else (env.get("SLURM_JOB_ID") or None),
            "array_job_id": env.get("SLURM_ARRAY_JOB_ID") or None,
            "array_task_id": env.get("SLURM_ARRAY_TASK_ID") or None,
            "restart": int(env.get("SLURM_RESTART_COUNT") or 0)}


def sampler_seed(base: int, env: dict | None = None, n_existing: int = 0) -> int:
    """A different sampler seed per array task and per requeue, so workers do not repeat each other.

    Slurm: base + 1000 * SLURM_RESTART_COUNT + SLURM_ARRAY_TASK_ID. Outside Slurm the number
    of trials already in the study stands in for the restart count (a resumed worker moves on).
    """
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID"):
        restart = int(env.get("SLURM_RESTART_COUNT") or 0)
        task = int(env.get("SLURM_ARRAY_TASK_ID") or 0)
        return base + 1000 * restart + task
    return base + 1000 * n_existing


def trial_seed(base: int, number: int) -> int:
    """The training seed of trial `number` (recorded in the trial, reproducible)."""
    return base + number


def count_trials(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials per state, plus 'counted' = completed + pruned (what hpo.n_trials means)."""
    out = {state.name.lower(): 0 for state in TrialState}
    for t in trials:
        out[t.state.name.lower()] += 1
    out["counted"] = out["complete"] + out["pruned"]
    return out


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def is_stale(trial: FrozenTrial, me: dict, job_alive: Callable[[str], bool] | None = None) -> bool:
    """Is this RUNNING trial orphaned (its worker killed), so that it will never finish?

    A trial carries the identity of its worker. It is stale when: it has none (killed between
    claim and record; claims happen under the lock, so no live worker is in between); its Slurm
    job is this very job (we are the requeued run of the worker that claimed it); its Slurm job
    no longer runs; or, outside Slurm, its process on this host is gone. Another host's
    process outside Slurm cannot be checked and is assumed alive.
    """
    worker = trial.user_attrs.get("worker")
    if not isinstance(worker, dict):
        return True
    job = worker.get("slurm_job_id")
    if job:
        if job == me.get("slurm_job_id"):
            return True
        return not (job_alive or _slurm_job_alive)(str(worker.get("slurm_job") or job))
    if worker.get("host") != me.get("host"):
        return False
    if worker.get("pid") == me.get("pid"):
        return False  # our own trial (cannot be orphaned while we look at it)
    return not _process_alive(int(worker.get("pid", -1)))


ALIVE_STATES = {"RUNNING", "PENDING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED",
                "RESIZING", "STOPPED", "SIGNALING"}


def _slurm_job_alive(job: str) -> bool:
    """Is this Slurm job (or array task, `JOBID_TASK`) still pending or running? Unknown counts as alive."""
    import subprocess

    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return True
    if out.returncode != 0:
        return "invalid job id" not in out.stderr.lower()
    return bool(set(out.stdout.split()) & ALIVE_STATES)


def storage_path(cfg: PipelineConfig) -> Path:
    return cfg.resolve(cfg.hpo.storage)


def open_storage(path: Path) -> JournalStorage:
    """The journal file storage (several processes, one host or a shared file system)."""
    ensure_dir(path.parent)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


@contextmanager
def claim_lock(path: Path) -> Iterator[None]:
    """Serialise 'count the trials, then claim one' across workers (so the study ends at exactly N).

    The critical section is short; a lock left by a killed worker is broken after 30 s.
    """
    ensure_dir(path.parent)
    lock = JournalFileOpenLock(str(path) + ".claim", grace_period=30)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def make_sampler(cfg: PipelineConfig, seed: int) -> optuna.samplers.BaseSampler:
    if cfg.hpo.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(cfg: PipelineConfig, enabled: bool = True) -> optuna.pruners.BasePruner:
    if not enabled or cfg.hpo.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=cfg.hpo.n_startup_trials,
                                       n_warmup_steps=cfg.hpo.n_warmup_steps)


def study_key(cfg: PipelineConfig, train_path: Path, val_path: Path) -> dict:
    """What a study's trials depend on: data, base model, trial settings (not n_trials: a search can grow)."""
    hpo = cfg.section("hpo")
    for key in ("n_trials", "study_name", "storage"):
        hpo.pop(key)
    base = cfg.resolve(cfg.models.base)
    base_config = base / "config.json"
    return {"train_sha256": sha256_file(train_path), "val_sha256": sha256_file(val_path),
            "base_model": str(base),
            "base_config_sha256": sha256_file(base_config) if base_config.is_file() else None,
            "hpo": hpo, "finetune": cfg.section("finetune")}


def _key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def open_study(cfg: PipelineConfig, key: dict, seed: int, pruning: bool = True,
               force: bool = False) -> optuna.Study:
    """Create or resume the study in the journal file; refuse a file of another study or other inputs.

    `force`: a study made from other data or settings is set aside (journal renamed with a
    time stamp) and a new one started. Call under `claim_lock`.
    """
    path = storage_path(cfg)
    name = cfg.hpo.study_name
    storage = open_storage(path)
    names = optuna.get_all_study_names(storage)
    if names and name not in names:
        raise ConfigError(f"the journal holds study {', '.join(repr(n) for n in names)}, not '{name}' "
                          f"(hpo.study_name): set --set hpo.study_name={names[0]} to resume it, or move the "
                          f"file away to start a new search", file=str(path))
    digest = _key_digest(key)
    if name in names:
        old = optuna.load_study(study_name=name, storage=storage)
        old_digest = old.user_attrs.get("key_digest")
        if old_digest not in (None, digest):
            if not force:
                changed = sorted(k for k, v in key.items() if old.user_attrs.get("key", {}).get(k) != v)
                raise StageError(f"study '{name}' in {path} was made from other inputs or settings (changed: "
                                 f"{', '.join(changed) or '?'}); rerun with --force to set it aside and start "
                                 f"a new search, or point hpo.storage elsewhere")
            kept = path.with_name(f"{path.stem}.{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
            log.warning("inputs or settings changed: old journal kept as %s, starting a new study", kept)
            del storage, old
            path.rename(kept)
            storage = open_storage(path)
    sampler, pruner = make_sampler(cfg, seed), make_pruner(cfg, pruning)
    if name in optuna.get_all_study_names(storage):  # load, not create: create appends to the journal
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    else:
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize",
                                    load_if_exists=True, sampler=sampler, pruner=pruner)
    if study.user_attrs.get("key_digest") is None:
        study.set_user_attr("key", key)
        study.set_user_attr("key_digest", digest)
    return study


def fail_stale_trials(study: optuna.Study, me: dict,
                      job_alive: Callable[[str], bool] | None = None) -> list[int]:
    """Mark RUNNING trials of killed workers FAILED (they never count toward n_trials)."""
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_stale(t, me, job_alive):
            study._storage.set_trial_user_attr(t._trial_id, "fail_reason", "worker gone (killed or requeued)")
            study.tell(t.number, state=TrialState.FAIL)
            failed.append(t.number)
    if failed:
        log.warning("marked %d trial(s) left RUNNING by a killed worker as FAILED: %s",
                    len(failed), ", ".join(map(str, failed)))
    return failed


def claim_trial(study: optuna.Study, cfg: PipelineConfig, me: dict,
                distributions: dict[str, BaseDistribution],
                job_alive: Callable[[str], bool] | None = None) -> optuna.Trial | None:
    """Under the claim lock: fail stale trials, stop at N counted + running, else ask for a new trial."""
    fail_stale_trials(study, me, job_alive)
    counts = count_trials(study.get_trials(deepcopy=False))
    if counts["counted"] + counts["running"] >= cfg.hpo.n_trials:
        return None
    trial = study.ask(distributions)
    trial.set_user_attr("worker", me)
    trial.set_user_attr("seed", trial_seed(cfg.hpo.seed, trial.number))
    return trial


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
             _fmt_counts(count_trials(study.trials)), seed)
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
                 METRIC, _fmt_value(result["value"]), result["steps"], result["seconds"])
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


def trials_table(study: optuna.Study):
    """One row per trial: number, state, value, params, steps, seconds, seed, worker."""
    import pandas as pd

    rows = []
    for t in study.trials:
        worker = t.user_attrs.get("worker") or {}
        row = {"number": t.number, "state": t.state.name, METRIC: t.value,
               "steps": t.user_attrs.get("steps"), "seconds": t.user_attrs.get("seconds"),
               "seed": t.user_attrs.get("seed")}
        row.update({f"param_{k}": v for k, v in t.params.items()})
        row["worker"] = (f"job {worker.get('slurm_job_id')}" if worker.get("slurm_job_id")
                         else f"pid {worker.get('pid')}") if worker else ""
        row["note"] = t.user_attrs.get("fail_reason", "")
        rows.append(row)
    return pd.DataFrame(rows)


def format_table(df) -> str:
    """The trials table as printed at the end of the search."""
    if df.empty:
        return "(no trials)"
    shown = df.drop(columns=["worker", "note"], errors="ignore").copy()
    shown.columns = [c.removeprefix("param_") for c in shown.columns]
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")


def best_trial(study: optuna.Study) -> FrozenTrial:
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise StageError(f"study '{study.study_name}' has no completed trial (all pruned or failed): "
                         f"lower hpo.n_startup_trials or raise hpo.n_trials")
    return min(complete, key=lambda t: t.value)


def best_params_text(study: optuna.Study, best: FrozenTrial, storage: Path) -> str:
    """best_params.yaml: the winning hyperparameters plus where they came from."""
    doc = {"study_name": study.study_name, "trial": best.number, METRIC: round(float(best.value), 6),
           "seed": best.user_attrs.get("seed"), "storage": str(storage), "params": dict(best.params)}
    head = (f"# Best hyperparameters of Optuna study '{study.study_name}' (trial {best.number}, "
            f"{METRIC} {best.value:.4f}).\n# Read by the final fine-tuning (fine-tuning/run-ft.sh): "
            f"'params' override the finetune section.\n")
    return head + yaml.safe_dump(doc, sort_keys=False)


def write_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Optimisation history, importances, parallel coordinates, learning curves (optuna.visualization.matplotlib)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    target = "validation loss"
    makers = {"optimization_history.png": lambda s: ovm.plot_optimization_history(s, target_name=target),
              "param_importances.png": lambda s: ovm.plot_param_importances(s, target_name=target),
              "parallel_coordinate.png": lambda s: ovm.plot_parallel_coordinate(s, target_name=target),
              # the validation loss at each evaluation of every trial: where pruned trials stopped
              "intermediate_values.png": ovm.plot_intermediate_values}
    written = []
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    for name, make in makers.items():
        if name == "param_importances.png" and len(complete) < 2:
            log.info("skipping %s: needs at least 2 completed trials", name)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
            ax = make(study)
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(9, 5)
        fig.tight_layout()
        path = out_dir / name
        tmp = path.with_name(path.name + f".tmp.{os.getpid()}")
        fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        os.replace(tmp, path)
        written.append(path)
    return written


def write_report(cfg: PipelineConfig, study: optuna.Study, train_path: Path, val_path: Path,
                 force: bool = False) -> dict | None:
    """best_params.yaml, trials.csv, best_trial.json, plots, manifest (StageRun); returns the manifest."""
    from healthai.pipeline.stage import StageRun

    path = storage_path(cfg)
    with StageRun("hpo", cfg, inputs=[train_path, val_path, path], config_sections=["hpo", "finetune", "models"],
                  out_dir=path.parent, force=force) as run:
        if run.up_to_date:
            return run.previous
        best = best_trial(study)
        df = trials_table(study)
        counts = count_trials(study.trials)
        with_steps = df[df["steps"].notna()]
        run.writer(BEST_PARAMS).write(best_params_text(study, best, path))
        run.writer(TRIALS_CSV).write(df.to_csv(index=False))
        run.writer(BEST_TRIAL).write(json.dumps(
            {"trial": best.number, METRIC: best.value, "params": best.params, "seed": best.user_attrs.get("seed"),
             "steps": best.user_attrs.get("steps"), "seconds": best.user_attrs.get("seconds"),
             "intermediate": {str(k): v for k, v in sorted(best.intermediate_values.items())},
             "metrics": best.user_attrs.get("metrics", {})}, indent=2, ensure_ascii=False) + "\n")
        for png in write_plots(study, run.out_dir):
            run.add_output(png)
        run.conserve(n_in=len(study.trials), kept=counts["complete"], rejected=counts["fail"],
                     pruned=counts["pruned"], running=counts["running"] + counts["waiting"])
        run.stats.update(study_name=study.study_name, n_trials=cfg.hpo.n_trials, counts=counts,
                         best_trial=best.number, best_value=best.value, best_params=best.params,
                         total_steps=int(with_steps["steps"].sum()) if len(with_steps) else 0)
        print(f"--- OPTUNA TRIALS (study '{study.study_name}', {_fmt_counts(counts)}) ---")
        print(format_table(df))
        print(f"best: trial {best.number}, {METRIC} {best.value:.4f}, {format_params(best.params)}")
        print(f"wrote {run.out_dir / BEST_PARAMS}")
    return run.previous


def run_search(cfg: PipelineConfig, force: bool = False, train_fn: TrainFn | None = None) -> WorkerSummary:
    """The stage: run this worker's trials; when the study is complete, write the report (once)."""
    train_path, val_path = train_val_paths(cfg)
    summary = run_worker(cfg, train_path, val_path, train_fn=train_fn, force=force)
    counts = summary.counts
    if summary.interrupted:
        print(f"[hpo] interrupted by the time-limit signal ({_fmt_counts(counts)}); the requeued job resumes")
        return summary
    if counts["counted"] < cfg.hpo.n_trials:
        print(f"[hpo] this worker is done; {counts['running']} trial(s) still running in other workers "
              f"({_fmt_counts(counts)}): the worker that finishes the last one writes the report")
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


def _fmt_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fmt_counts(counts: dict[str, int]) -> str:
    return (f"{counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
            f"{counts.get('fail', 0)} failed, {counts.get('running', 0)} running")


def _jsonable(metrics: dict) -> dict:
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
    return out
