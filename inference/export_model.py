"""Export the base and the fine-tuned model to GGUF for llama.cpp: merge, convert, quantize, compare.

Reads  models.base and models.adapter ($PROJECT_DIR/ft/adapter, made by `cd fine-tuning && sbatch run-ft.sh`).
Writes $PROJECT_DIR/export/: ft-merged/ (base + adapter merged: safetensors, tokenizer, chat template),
       base-f16.gguf, base-q8_0.gguf, base-Q4_K_M.gguf, ft-f16.gguf, ft-q8_0.gguf, ft-Q4_K_M.gguf
       (export.variants, convert_types, quant_types), agreement.json (greedy tokens of every file
       against transformers on the workshop prompts), README.md (model card), logs/, manifest.json.

The conversion is llama.cpp's own convert_hf_to_gguf.py (third_party/llama_cpp_convert, run with
--no-mtp), the quantization llama.cpp's quantize (the llama_cpp package). A CPU node is enough.
A rerun with unchanged base, adapter and config is a no-op; --force redoes it.

Examples:
    cd inference && sbatch run-export.sh
    python inference/export_model.py --set export.quant_types='[Q4_K_M,Q5_K_M]'
"""

from __future__ import annotations

from healthai.pipeline.cli import banner, run_cli, stage_parser


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, prog="export_model.py")
    args = parser.parse_args(argv)

    def body(cfg) -> int:
        from healthai.model import export, inference

        ec = cfg.export
        banner("inference · export to GGUF (llama.cpp)", cfg, base=inference.base_path(cfg),
               adapter=inference.adapter_path(cfg) if "ft" in ec.variants else "not exported",
               variants=", ".join(ec.variants), types=", ".join(ec.all_types()),
               output=cfg.project_path() / export.OUTPUT_SUBDIR)
        export.run_export_stage(cfg, force=args.force)
        return 0

    return run_cli("export", args, body)


if __name__ == "__main__":
    raise SystemExit(main())
