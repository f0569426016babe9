"""Build the embedded base model: a tiny Qwen3.5-architecture stand-in, trained here from scratch.

Reads  $PROJECT_DIR/1.curation/curated.jsonl (embedded.corpus; until stage 1 has run, the raw
       iCliniq answers of data/raw/ with a warning).
Writes $PROJECT_DIR/models/embedded-base/: model.safetensors, config.json, generation_config.json,
       tokenizer.json, tokenizer_config.json, chat_template.jinja, README.md (model card),
       config.yaml, manifest.json.

Trains a byte-level BPE tokenizer (Qwen special tokens, the real Qwen3.5 chat template with
generation markers), initialises a Qwen3_5ForCausalLM of the `embedded` sizes from a seed, and
trains it as a causal LM on the curated questions and answers ("domain base"; urgent answers in
the rule's style, `embedded.urgent_style_corpus`, docs/TRIAGE.md): about 4.5 minutes on 2 cores. Not used on Deucalion, where the base model is Qwen3.5-9B. A rerun with unchanged
corpus and config is a no-op.

Example:
    python fine-tuning/build-embedded-model.py --set embedded.domain_epochs=1
    cd fine-tuning && sbatch run-build-model.sh
"""

from __future__ import annotations

from healthai.pipeline.cli import banner, run_cli, stage_parser
from healthai.model.base_stage import build_base_stage
from healthai.model.base_corpus import corpus_path


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, prog="build-embedded-model.py")
    args = parser.parse_args(argv)

    def body(cfg) -> int:
        ec = cfg.embedded
        output = cfg.project_path() / "models" / "embedded-base"
        if ec.shipped:  # copied, not built: the build settings below would not describe it
            banner("fine-tuning · embedded base model", cfg, shipped=cfg.resolve(ec.shipped), output=output)
        else:
            banner("fine-tuning · embedded base model", cfg, corpus=corpus_path(cfg), output=output,
                   model=f"Qwen3.5 text, {ec.num_hidden_layers} layers, hidden {ec.hidden_size}, vocab {ec.vocab_size}",
                   domain=f"{ec.domain_epochs} epochs, lr {ec.domain_learning_rate}, "
                          f"up to {ec.domain_max_tokens:,} tokens")
        build_base_stage(cfg, force=args.force)
        return 0

    return run_cli("base-model", args, body)


if __name__ == "__main__":
    raise SystemExit(main())
