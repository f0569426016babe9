"""The Optuna study the search workers share: the search space, the journal storage and its
lock, the study key (a study never mixes two settings), seeds per worker and per trial, trial
counts, and the stale trials a killed worker leaves RUNNING (a journal has no heartbeat)."""


from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

from healthai.config import PipelineConfig
from healthai.config.hpo import ParamSpace
from healthai.errors import ConfigError, StageError
from healthai.pipeline.io import ensure_dir, sha256_file

log = logging.getLogger("healthai.hpo")


METRIC = "eval_loss"


COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


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


def format_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_counts(counts: dict[str, int]) -> str:
    return (f"{counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
            f"{counts.get('fail', 0)} failed, {counts.get('running', 0)} running")
