"""Tests for healthai.model.hpo and the hpo config section: space, errors, resume, pruning, parallel workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from healthai.model import embedded, hparams, hpo
from healthai.config import REPO_DIR, load_config
from healthai.errors import ConfigError, StageError
from hpo_helpers import scripted_train, write_merge_splits
from waiting import wait_for

TESTS = Path(__file__).resolve().parents[1]
SHORT = ["hpo.max_steps_per_trial=20", "hpo.eval_steps=5", "hpo.n_warmup_steps=5"]


def _cfg(*overrides: str):
    return load_config(overrides=[*SHORT, *overrides])


def _study(cfg) -> optuna.Study:
    return optuna.load_study(study_name=cfg.hpo.study_name, storage=hpo.open_storage(hpo.storage_path(cfg)))


# -- search space --------------------------------------------------------------------------
def test_default_space_is_the_workshop_space():
    # the workshop's space is the default and the cluster's; the local profile only moves the
    # learning-rate range to suit the tiny embedded model
    dists = hpo.to_distributions(load_config(site="deucalion").hpo.space)
    assert dists["lora_r"] == IntDistribution(8, 56, step=16)  # 8, 24, 40, 56
    assert dists["lora_alpha"] == IntDistribution(16, 64, step=16)
    assert dists["lora_dropout"] == FloatDistribution(0.01, 0.1)
    assert dists["learning_rate"] == FloatDistribution(1e-5, 5e-4, log=True)
    assert load_config().hpo.n_trials == 5
    local = hpo.to_distributions(load_config(site="local").hpo.space)
    assert local["learning_rate"] == FloatDistribution(1e-3, 5e-3, log=True)
    assert local["lora_r"] == dists["lora_r"]


def test_space_from_config_accepts_categorical_float_step_and_int_bounds_written_as_floats():
    cfg = load_config(overrides=["hpo.space.lora_r={type: categorical, choices: [8, 16]}",
                                 "hpo.space.lora_dropout.step=0.01", "hpo.space.lora_alpha.high=64.0"])
    dists = hpo.to_distributions(cfg.hpo.space)
    assert dists["lora_r"].choices == (8, 16)
    assert dists["lora_dropout"] == FloatDistribution(0.01, 0.1, step=0.01)
    assert dists["lora_alpha"] == IntDistribution(16, 64, step=16)


@pytest.mark.parametrize("override, message", [
    # inverted and empty ranges
    ("hpo.space.lora_r.low=64", "inverted range: low 64 > high 56"),
    ("hpo.space.lora_dropout={type: float, low: 0.1, high: 0.1}", "empty range: low == high == 0.1"),
    ("hpo.space.lora_r={type: int, low: 8, high: 16, step: 16}", "empty range: step 16 is larger than"),
    ("hpo.space.lora_r={type: categorical, choices: []}", "empty search space"),
    # a name train_lora does not accept, and a typo inside a parameter
    ("hpo.space.lora_rank={type: int, low: 8, high: 16}", "unknown parameter 'space.lora_rank'"),
    ("hpo.space.lora_r.hihg=40", "did you mean 'hpo.space.lora_r.high'"),
    # impossible distributions
    ("hpo.space.learning_rate.low=0", "log-scale range needs low > 0"),
    ("hpo.space.lora_r.type=float", "use type int"),
    ("hpo.space.lora_r.low=8.5", "needs an integer 'low'"),
    ("hpo.space.lora_dropout.log=true", ""),  # accepted: 0.01..0.1 on a log scale is valid
])
def test_space_errors_are_one_line_config_errors(override, message):
    if not message:
        assert load_config(overrides=[override]).hpo.space["lora_dropout"].log is True
        return
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_space_through_the_entry_script_exits_2_with_one_line(project_dir, capsys):
    entry = _load_entry()
    assert entry.main(["--set", "hpo.space.lora_alpha.high=8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --set: 'hpo.space.lora_alpha': inverted range: low 16 > high 8"]


def _load_entry():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ft_optuna", REPO_DIR / "fine-tuning" / "fine-tuning-optuna.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_space_refuses_names_the_training_function_does_not_take():
    with pytest.raises(ConfigError, match="unknown parameter 'hpo.space.warmup'"):
        hpo.check_space({"warmup": None}, frozenset({"lora_r"}))


# -- seeds and workers -----------------------------------------------------------------------
def test_sampler_seed_differs_per_array_task_and_restart():
    env = {"SLURM_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "1"}
    assert hpo.sampler_seed(42, env) == 43
    assert hpo.sampler_seed(42, {**env, "SLURM_ARRAY_TASK_ID": "0"}) == 42
    assert hpo.sampler_seed(42, {**env, "SLURM_RESTART_COUNT": "1"}) == 1043
    assert hpo.sampler_seed(42, {}, n_existing=3) == 3042  # outside Slurm: a resumed worker moves on


def test_stale_running_trials_are_recognised():
    def trial(worker):
        return optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs={"worker": worker} if worker else {})

    me = {"host": "h1", "pid": 100, "slurm_job_id": "20"}
    alive = {"21"}.__contains__
    assert hpo.is_stale(trial(None), me, alive)                                     # killed before recording
    assert hpo.is_stale(trial({"slurm_job_id": "20", "pid": 5}), me, alive)        # our own job, requeued
    assert not hpo.is_stale(trial({"slurm_job_id": "21", "pid": 5}), me, alive)    # another live array task
    assert hpo.is_stale(trial({"slurm_job_id": "22", "pid": 5}), me, alive)        # a job that ended
    assert hpo.is_stale(trial({"host": "h1", "pid": 2 ** 22 + 12345}), me, alive)  # a dead local process
    assert not hpo.is_stale(trial({"host": "h1", "pid": os.getpid()}), {"host": "h1", "pid": -1}, alive)
    assert not hpo.is_stale(trial({"host": "h2", "pid": 1}), me, alive)            # another host: unknown


# -- a whole search with the scripted trainer --------------------------------------------------
@pytest.mark.slow
def test_search_runs_exactly_n_trials_prunes_and_writes_the_report(project_dir, capsys, monkeypatch):
    # the code version is part of the up-to-date check: pin it (others commit to this checkout meanwhile)
    monkeypatch.setattr("healthai.pipeline.stage.code_version", lambda: "test")
    write_merge_splits(project_dir)
    cfg = _cfg("hpo.n_trials=6")
    summary = hpo.run_search(cfg, train_fn=scripted_train)
    assert summary.counts["counted"] == 6 and summary.report_written
    study = _study(cfg)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and all(t.user_attrs["steps"] < 20 for t in pruned)
    assert all(t.user_attrs["steps"] == 20 for t in complete)
    assert [t.user_attrs["seed"] for t in study.trials] == [42 + i for i in range(6)]

    out = project_dir / "hpo"
    best = yaml.safe_load((out / "best_params.yaml").read_text())
    winner = min(complete, key=lambda t: t.value)
    assert best["params"] == winner.params and best["trial"] == winner.number
    csv = (out / "trials.csv").read_text().splitlines()
    assert len(csv) == 7 and csv[0].startswith("number,state,eval_loss,steps")
    assert json.loads((out / "best_trial.json").read_text())["trial"] == winner.number
    for name in hpo.PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"in": 6, "kept": len(complete), "rejected": 0, "pruned": len(pruned),
                                  "running": 0}
    printed = capsys.readouterr().out
    assert "--- OPTUNA TRIALS" in printed and "PRUNED" in printed

    # a rerun with nothing new: no trial, journal untouched, report up to date
    journal = (out / "journal.log").read_bytes()
    again = hpo.run_search(cfg, train_fn=scripted_train)
    assert again.ran == [] and (out / "journal.log").read_bytes() == journal
    assert "up to date" in capsys.readouterr().out

    # raising n_trials continues the same study
    more = hpo.run_search(_cfg("hpo.n_trials=8"), train_fn=scripted_train)
    assert [r["number"] for r in more.ran] == [6, 7] and more.counts["counted"] == 8


def test_journal_of_another_study_is_refused(project_dir):
    write_merge_splits(project_dir)
    hpo.run_search(_cfg("hpo.n_trials=1"), train_fn=scripted_train)
    with pytest.raises(ConfigError) as err:
        hpo.run_search(_cfg("hpo.n_trials=1", "hpo.study_name=other"), train_fn=scripted_train)
    assert "holds study 'healthai-lora', not 'other'" in str(err.value)
    assert str(project_dir / "hpo" / "journal.log") in str(err.value)


@pytest.mark.slow
def test_changed_settings_need_force_which_keeps_the_old_journal(project_dir):
    write_merge_splits(project_dir)
    hpo.run_search(_cfg("hpo.n_trials=1"), train_fn=scripted_train)
    changed = _cfg("hpo.n_trials=1", "hpo.space.lora_r.high=40")
    with pytest.raises(StageError, match=r"other inputs or settings \(changed: hpo\).*--force"):
        hpo.run_search(changed, train_fn=scripted_train)
    summary = hpo.run_search(changed, force=True, train_fn=scripted_train)
    assert [r["number"] for r in summary.ran] == [0]
    assert len(list((project_dir / "hpo").glob("journal.*.log"))) == 1


def test_a_trial_that_raises_is_failed_and_not_counted(project_dir):
    write_merge_splits(project_dir)
    cfg = _cfg("hpo.n_trials=2")

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError):
        hpo.run_search(cfg, train_fn=broken)
    (trial,) = _study(cfg).trials
    assert trial.state == TrialState.FAIL and "CUDA out of memory" in trial.user_attrs["fail_reason"]
    assert hpo.run_search(cfg, train_fn=scripted_train).counts == {**hpo.count_trials([]), "complete": 2,
                                                                   "fail": 1, "counted": 2}


# -- resume after SIGKILL, parallel workers ----------------------------------------------------
def _worker(project_dir: Path, *overrides: str, sleep: float = 0.0, hang_in_call: int = 0) -> subprocess.Popen:
    env = {**os.environ, "HEALTHAI_PROJECT_DIR": str(project_dir),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, str(TESTS / "hpo_helpers.py"), "--sleep", str(sleep), "--hang-in-call", str(hang_in_call)]
    for o in [*SHORT, *overrides]:
        args += ["--set", o]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_resume_after_sigkill_fails_the_orphaned_trial_and_ends_with_exactly_n(project_dir):
    write_merge_splits(project_dir)
    cfg = _cfg("hpo.n_trials=3")
    # The worker's second trial blocks after its first evaluation: the state below is reached
    # however loaded the machine is, and stays until the SIGKILL.
    proc = _worker(project_dir, "hpo.n_trials=3", hang_in_call=2)

    def mid_trial() -> int | None:
        """The number of a running trial with a reported evaluation, once one trial is complete.
        Waits for the study's record, not the journal file: the file exists before the record."""
        try:
            trials = _study(cfg).trials
        except KeyError:  # optuna: 'Record does not exist.' (study not created yet)
            return None
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        live = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        return live[0].number if done and live else None

    running = wait_for(mid_trial, "a completed trial and a running one with an evaluation", proc=proc)
    proc.send_signal(signal.SIGKILL)  # mid-trial: it has reported at least one evaluation
    proc.wait(timeout=10)
    assert _study(cfg).trials[running].state == TrialState.RUNNING  # a journal has no heartbeat

    summary = hpo.run_search(cfg, train_fn=scripted_train)
    assert summary.stale_failed == [running]
    study = _study(cfg)
    orphan = study.trials[running]
    assert orphan.state == TrialState.FAIL and "worker gone" in orphan.user_attrs["fail_reason"]
    counts = hpo.count_trials(study.trials)
    assert counts["counted"] == 3 and counts["fail"] == 1 and counts["running"] == 0
    assert summary.report_written and (project_dir / "hpo" / "best_params.yaml").is_file()


@pytest.mark.slow
def test_two_concurrent_workers_share_one_study_and_stop_at_exactly_n(project_dir):
    write_merge_splits(project_dir)
    procs = [_worker(project_dir, "hpo.n_trials=5", sleep=0.03) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    ran = sorted(n for r in results for n in r["ran"])
    assert ran == [0, 1, 2, 3, 4]  # no trial twice, none beyond N
    assert all(r["ran"] for r in results)  # both workers did work
    counts = hpo.count_trials(_study(_cfg("hpo.n_trials=5")).trials)
    assert counts["counted"] == 5 and counts["running"] == 0
    assert sum(r["report"] for r in results) >= 1 and (project_dir / "hpo" / "manifest.json").is_file()


# -- the final training's side -------------------------------------------------------------------
def test_final_hparams_prefer_best_params_and_say_which_file(project_dir, capsys):
    cfg = load_config()
    params, used = hparams.final_hparams(cfg)
    assert used is None and params["lora_r"] == cfg.finetune.lora_r
    assert "no " in capsys.readouterr().out
    path = project_dir / "hpo" / "best_params.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"params": {"lora_r": 40, "learning_rate": 3e-4}}))
    params, used = hparams.final_hparams(cfg)
    assert used == path and params["lora_r"] == 40 and params["learning_rate"] == 3e-4
    assert params["lora_alpha"] == cfg.finetune.lora_alpha
    assert f"hyperparameters from {path}" in capsys.readouterr().out
    path.write_text(yaml.safe_dump({"params": {"lora_rank": 40}}))
    with pytest.raises(ConfigError, match="unknown parameter"):
        hparams.final_hparams(cfg)


# -- a job array on the local Slurm cluster ---------------------------------------------------------
def _array_tasks(job_id: str, env: dict) -> list[dict]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, env=env)
    return [dict(tok.split("=", 1) for tok in line.split() if "=" in tok) for line in out.stdout.splitlines()
            if line.strip()]


@pytest.mark.slurm
@pytest.mark.slow
def test_job_array_of_two_workers_ends_with_exactly_n_trials(slurm_cluster, project_dir):
    from slurm_helpers import FINISHED, sbatch, slurm_env

    write_merge_splits(project_dir)
    # The real wrapper, the real array and journal; the trials run the scripted trainer so that the
    # test measures the parallel bookkeeping, not CPU training (the real trainer is tested above).
    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(project_dir),
                     "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])})
    args = []
    for o in [*SHORT, "hpo.n_trials=5", "hpo.train_function=hpo_helpers:scripted_slow_train"]:
        args += ["--set", o]
    stage = REPO_DIR / "fine-tuning"
    job = sbatch(stage / "run-ft-optuna.sh", args, cwd=stage, env=env, sbatch_args=["--array=0-1%2"])
    deadline = time.time() + 240
    tasks: list[dict] = []
    while time.time() < deadline:
        tasks = _array_tasks(job, env)
        if len(tasks) == 2 and all(t.get("JobState") in FINISHED for t in tasks):
            break
        time.sleep(2)
    else:
        subprocess.run(["scancel", job], env=env)
        pytest.fail(f"array job {job} did not finish: {[t.get('JobState') for t in tasks]}")
    logs = {t["ArrayTaskId"]: Path(t["StdOut"]).read_text(errors="replace") for t in tasks}
    try:
        assert [t["JobState"] for t in tasks] == ["COMPLETED", "COMPLETED"], logs
        study = _study(_cfg("hpo.n_trials=5"))
        counts = hpo.count_trials(study.trials)
        assert counts["counted"] == 5 and counts["running"] == 0 and len(study.trials) == 5
        workers = {t.user_attrs["worker"]["array_task_id"] for t in study.trials}
        assert workers == {"0", "1"}, "both array tasks ran trials"
        assert "sampler seed 42" in logs["0"] and "sampler seed 43" in logs["1"]
        assert (project_dir / "hpo" / "best_params.yaml").is_file()
    finally:
        for t in tasks:
            Path(t["StdOut"]).unlink(missing_ok=True)


# -- the embedded tiny model ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """The embedded tiny Qwen3.5-architecture model (random weights), built by healthai.model.embedded."""

    return embedded.build_embedded_model(tmp_path_factory.mktemp("hpo-base") / "model")


# -- the real trainer (healthai.model.trainer.train_lora) on the embedded tiny model ----------------------
REAL = ["hpo.max_steps_per_trial=4", "hpo.eval_steps=2", "hpo.n_warmup_steps=0", "hpo.n_startup_trials=1",
        "finetune.batch_size=2", "finetune.max_length=96", "hpo.space.learning_rate.low=1e-7",
        "hpo.space.learning_rate.high=1e-2"]


@pytest.mark.slow
def test_pruning_really_stops_a_train_lora_trial(project_dir, tiny_base):
    write_merge_splits(project_dir, n_train=8, n_val=4)
    cfg = load_config(overrides=[*REAL, "hpo.n_trials=2", f"models.base={tiny_base}"])
    train, val = hpo.train_val_paths(cfg)
    # Trial 0 learns (lr 5e-3); trial 1 barely moves (lr 1e-7): worse than the median at step 2 of 4.
    with hpo.claim_lock(hpo.storage_path(cfg)):
        study = hpo.open_study(cfg, hpo.study_key(cfg, train, val), seed=0)
    base = {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05}
    study.enqueue_trial({**base, "learning_rate": 5e-3})
    study.enqueue_trial({**base, "learning_rate": 1e-7})
    summary = hpo.run_worker(cfg, train, val)  # the default: hpo.train_function = train_lora
    first, second = _study(cfg).trials
    assert (first.state, second.state) == (TrialState.COMPLETE, TrialState.PRUNED)
    assert first.user_attrs["steps"] == 4 and sorted(first.intermediate_values) == [2, 4]
    assert second.user_attrs["steps"] == 2 and sorted(second.intermediate_values) == [2]
    assert summary.counts["counted"] == 2
    assert not (project_dir / "hpo" / "trials").exists() or not any((project_dir / "hpo" / "trials").iterdir())


@pytest.mark.slow
def test_best_params_file_is_what_the_final_training_uses(project_dir, tiny_base, capsys):
    from healthai.model.finetune import run_finetune_stage

    write_merge_splits(project_dir, n_train=8, n_val=4)
    cfg = load_config(overrides=["finetune.batch_size=4", "finetune.max_length=96", "finetune.epochs=0.5",
                                 "finetune.tensorboard=false", "finetune.compare_prompts=0",
                                 f"models.base={tiny_base}"])
    best = project_dir / "hpo" / "best_params.yaml"
    best.parent.mkdir()
    best.write_text(yaml.safe_dump({"study_name": "healthai-lora", "trial": 3, "params": {
        "lora_r": 24, "lora_alpha": 48, "lora_dropout": 0.02, "learning_rate": 1e-3}}))
    run_finetune_stage(cfg)  # the final training stage (fine-tuning/simple-fine-tuning.py)
    assert f"hyperparameters from {best}" in capsys.readouterr().out
    adapter = json.loads((project_dir / "ft" / "adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (24, 48, 0.02)
    metrics = json.loads((project_dir / "ft" / "metrics.json").read_text())
    assert metrics["hparams_file"] == str(best) and metrics["hparams"]["learning_rate"] == 1e-3


def test_the_project_trainer_gets_a_trainer_callback_before_transformers_is_loaded():
    # In a Slurm job the search starts before anything imports transformers: the decision must come
    # from the train function, or the real Trainer gets a reporter without its hooks (on_init_end).
    code = ("import sys; from healthai.model import hpo, trainer; from hpo_helpers import scripted_train; "
            "assert 'transformers' not in sys.modules, 'imported too early'; "
            "print(hpo.needs_trainer_callback(trainer.train_lora), hpo.needs_trainer_callback(scripted_train))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=TESTS,
                         env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]
