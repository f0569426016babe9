"""Optuna search over the LoRA hyperparameters (r, alpha, dropout, learning rate) of the fine-tuning.

Reads  $PROJECT_DIR/3.merge/train.jsonl and val.jsonl, the base model (models.base).
Writes $PROJECT_DIR/hpo/: journal.log (the Optuna study; resumable, shared by all workers),
       best_params.yaml (read by simple-fine-tuning.py / run-ft.sh), trials.csv, best_trial.json,
       optimization_history.png, param_importances.png, parallel_coordinate.png,
       intermediate_values.png, manifest.json.

Every run is one worker: it claims trials until the study holds hpo.n_trials completed +
pruned trials; several workers (a Slurm job array) share one study. The worker that
finishes the last trial writes the report. A rerun with nothing new is a no-op.

Example (local, a short search on the embedded model):
    python fine-tuning/fine-tuning-optuna.py --set hpo.n_trials=5 --set hpo.max_steps_per_trial=30
On Deucalion (two workers at a time on one study):
    cd fine-tuning && sbatch --array=0-3%2 run-ft-optuna.sh
"""

from __future__ import annotations

from healthai.pipeline.cli import banner, run_cli, stage_parser
from healthai.model.hpo import run_search, storage_path, train_val_paths


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, prog="fine-tuning-optuna.py")
    args = parser.parse_args(argv)

    def body(cfg) -> int:
        hc = cfg.hpo
        train, val = train_val_paths(cfg)
        banner("fine-tuning · optuna", cfg, train=train, val=val, base=cfg.resolve(cfg.models.base),
               study=f"{hc.study_name} in {storage_path(cfg)}", n_trials=hc.n_trials,
               space=", ".join(hc.space), pruner=hc.pruner,
               per_trial=f"{hc.max_steps_per_trial} steps" if hc.max_steps_per_trial
               else f"{hc.epochs_per_trial} epoch(s)")
        run_search(cfg, force=args.force)
        return 0

    return run_cli("hpo", args, body)


if __name__ == "__main__":
    raise SystemExit(main())
