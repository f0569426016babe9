"""Final LoRA fine-tuning of the base model on the merged Q&A (or clinical) set.

Reads  $PROJECT_DIR/3.merge/train.jsonl + val.jsonl (finetune.dataset=qa; clinical: 4.clinical/
       train.jsonl + dev.jsonl), the base model (models.base: the embedded model locally,
       Qwen3.5-9B on Deucalion), hpo/best_params.yaml when the Optuna stage wrote it.
Writes $PROJECT_DIR/ft/: adapter/ (adapter_model.safetensors, adapter_config.json, tokenizer,
       chat template), metrics.json (losses, tokens/s, peak memory, wall time, base vs ft answers),
       log_history.json, loss_curve.png, tensorboard/, rejected.jsonl, config.yaml, manifest.json;
       merged/ with --merge. Checkpoints in ft/checkpoints while it trains (removed at the end).

Hyperparameters: the finetune section < hpo/best_params.yaml (the file used is printed) <
--set finetune.KEY=VALUE. Prints "Total params: ..., trainable: ..." like the workshop script.
On SIGUSR1 (Slurm's time-limit warning) it checkpoints and stops; rerunning resumes.

Example (local):
    python fine-tuning/simple-fine-tuning.py --set finetune.epochs=1
On Deucalion:
    cd fine-tuning && sbatch run-ft.sh [--merge]
Two processes (data parallel; gloo on CPU, nccl on GPU):
    torchrun --nproc_per_node 2 fine-tuning/simple-fine-tuning.py
"""

from __future__ import annotations

from healthai.pipeline.cli import banner, run_cli, stage_parser
from healthai.model.hparams import cli_finetune_keys
from healthai.model.sft_data import dataset_paths
from healthai.model.finetune import run_finetune_stage


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, prog="simple-fine-tuning.py")
    parser.add_argument("--merge", action="store_true", help="also write the merged full model to ft/merged")
    args = parser.parse_args(argv)
    if args.merge:
        args.overrides.append("finetune.merge=true")

    def body(cfg) -> int:
        train, val = dataset_paths(cfg)
        fc = cfg.finetune
        banner("fine-tuning · LoRA", cfg, base=cfg.resolve(cfg.models.base), train=train, val=val,
               output=cfg.project_path() / "ft", device=f"{cfg.site.device} ({cfg.site.dtype})",
               lora=f"targets {fc.target_modules}", merge=fc.merge)
        run_finetune_stage(cfg, force=args.force, cli_keys=cli_finetune_keys(args.overrides))
        return 0

    return run_cli("finetune", args, body)


if __name__ == "__main__":
    raise SystemExit(main())
