"""The search's report, written by the worker that finishes the last trial: `trials.csv`,
`best_trial.json`, `best_params.yaml` (read by the final fine-tuning) and the PNG plots."""


from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from healthai.config import PipelineConfig
from healthai.errors import StageError
from healthai.model.hparams import BEST_PARAMS, format_params

from healthai.model.hpo_study import (
    METRIC,
    count_trials,
    format_counts,
    storage_path,
)

log = logging.getLogger("healthai.hpo")


TRIALS_CSV = "trials.csv"


BEST_TRIAL = "best_trial.json"


PLOTS = ("optimization_history.png", "param_importances.png", "parallel_coordinate.png",
         "intermediate_values.png")


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
        print(f"--- OPTUNA TRIALS (study '{study.study_name}', {format_counts(counts)}) ---")
        print(format_table(df))
        print(f"best: trial {best.number}, {METRIC} {best.value:.4f}, {format_params(best.params)}")
        print(f"wrote {run.out_dir / BEST_PARAMS}")
    return run.previous
