"""Pretrain the embedded base (`make base`): the shipped models/embedded-base, resumable after a kill.

Reads  data/raw/medquad.jsonl.gz (pretrain.corpus: MedQuAD, 16,407 NIH question-answer pairs, CC BY 4.0),
       every curation input and data/triage/triage_labels.jsonl (their questions are kept out of the corpus),
       $PROJECT_DIR/3.merge/{train,val}.jsonl when present (the urgent probe, val only).
Writes $PROJECT_DIR/pretrain/ (checkpoint.pt, tokenizer/, blocks.safetensors, curve.jsonl: a rerun resumes)
       and models/embedded-base/ (pretrain.output): model.safetensors, config.json, tokenizer, chat template,
       held_out.json (the held-out fingerprint the chain checks), pretrain.json (manifest).

The full budget (pretrain.max_tokens) takes about 2 hours on 2 cores; stop it at any moment (Ctrl-C,
kill, or --set pretrain.max_seconds=N) and run it again to continue from the last checkpoint.

Example:
    python fine-tuning/pretrain_base.py --set pretrain.max_seconds=1800
    make base
"""

from __future__ import annotations

from healthai.pipeline.cli import banner, run_cli, stage_parser
from healthai.model.pretrain import pretrain


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, prog="pretrain_base.py")
    args = parser.parse_args(argv)

    def body(cfg) -> int:
        ec, pc = cfg.embedded, cfg.pretrain
        banner("fine-tuning · pretrain the embedded base", cfg, corpus=cfg.resolve(pc.corpus),
               output=cfg.resolve(pc.output), checkpoints=cfg.resolve(pc.work_dir),
               model=f"Qwen3.5 text, {ec.num_hidden_layers} layers, hidden {ec.hidden_size}, vocab {ec.vocab_size}",
               budget=f"{pc.max_tokens:,} tokens, lr {pc.learning_rate}, blocks {pc.batch_size}x{pc.block_size}")
        pretrain(cfg)
        return 0

    return run_cli("base", args, body)


if __name__ == "__main__":
    raise SystemExit(main())
