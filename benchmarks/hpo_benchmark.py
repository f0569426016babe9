"""Benchmark the Optuna search: the same N trials with and without pruning, in one run.

Both searches use the same data, base model, trial budget and sampler seed, so they
propose the same hyperparameters (TPE samples at random for its first 10 trials); the
only difference is the MedianPruner. Reports total training steps, wall time and the best
validation loss of each, and the savings:

    steps saved  = 1 - steps(pruning) / steps(no pruning)          target >= 30 %
    loss given up = best(pruning) / best(no pruning) - 1             limit  <= 2 %

    .venv/bin/python benchmarks/hpo_benchmark.py [--n-trials 8] [--set hpo.max_steps_per_trial=40 ...]

Reads $PROJECT_DIR/3.merge/train.jsonl + val.jsonl and the base model (models.base: the
embedded model locally). Journals go to a temporary folder. Writes
benchmarks/results/hpo_benchmark.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import runinfo  # benchmarks/runinfo.py: the run's own date, commit, machine, load, versions

RUN = runinfo.start()

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "hpo_benchmark.json"


def search(overrides: list[str], journal: Path, pruning: bool) -> dict:
    import optuna

    from healthai.model import hpo
    from healthai.config import load_config

    cfg = load_config(overrides=[*overrides, f"hpo.storage={journal}",
                                 f"hpo.pruner={'median' if pruning else 'none'}"])
    train, val = hpo.train_val_paths(cfg)
    t0 = time.perf_counter()
    summary = hpo.run_worker(cfg, train, val)
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=cfg.hpo.study_name, storage=hpo.open_storage(journal))
    trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
               "steps": t.user_attrs.get("steps"), "seconds": t.user_attrs.get("seconds")}
              for t in study.trials]
    best = hpo.best_trial(study)
    return {"pruner": cfg.hpo.pruner, "wall_s": round(wall, 1), "counts": summary.counts,
            "total_steps": sum(t["steps"] or 0 for t in trials), "best_trial": best.number,
            "best_eval_loss": best.value, "trials": trials,
            "settings": {k: getattr(cfg.hpo, k) for k in ("n_trials", "max_steps_per_trial", "epochs_per_trial",
                                                           "eval_steps", "n_startup_trials", "n_warmup_steps",
                                                           "seed", "sampler")},
            "base_model": str(cfg.resolve(cfg.models.base)), "train": str(train)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=None, help="trials per search (default: hpo.n_trials)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "datasets", "transformers", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    overrides = list(args.overrides)
    if args.n_trials:
        overrides.append(f"hpo.n_trials={args.n_trials}")
    with tempfile.TemporaryDirectory() as tmp:
        plain = search(overrides, Path(tmp) / "no-pruning.log", pruning=False)
        pruned = search(overrides, Path(tmp) / "pruning.log", pruning=True)
    same_params = [a["params"] for a in plain["trials"]] == [b["params"] for b in pruned["trials"]]
    steps_saved = 1 - pruned["total_steps"] / plain["total_steps"]
    wall_saved = 1 - pruned["wall_s"] / plain["wall_s"]
    loss_given_up = pruned["best_eval_loss"] / plain["best_eval_loss"] - 1
    result = {
        "benchmark": "hpo_pruning",
        "same_hyperparameters_proposed": same_params,
        "steps_saved": round(steps_saved, 4), "wall_saved": round(wall_saved, 4),
        "best_loss_given_up": round(loss_given_up, 5),
        "targets": {"steps_saved_min": 0.30, "best_loss_given_up_max": 0.02},
        "meets_targets": steps_saved >= 0.30 and loss_given_up <= 0.02,
        "no_pruning": plain, "pruning": pruned,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runinfo.write(args.out, RUN, result)
    print(f"{'':14}{'no pruning':>12}{'pruning':>12}")
    print(f"{'trials':14}{plain['counts']['counted']:>12}{pruned['counts']['counted']:>12}"
          f"   ({pruned['counts']['pruned']} pruned)")
    print(f"{'total steps':14}{plain['total_steps']:>12}{pruned['total_steps']:>12}   saved {steps_saved:.1%}")
    print(f"{'wall time s':14}{plain['wall_s']:>12.1f}{pruned['wall_s']:>12.1f}   saved {wall_saved:.1%}")
    print(f"{'best val loss':14}{plain['best_eval_loss']:>12.4f}{pruned['best_eval_loss']:>12.4f}"
          f"   given up {loss_given_up:+.2%}")
    print(f"same hyperparameters proposed: {same_params}; targets met: {result['meets_targets']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
