"""GGUF file sizes and llama.cpp memory per quantization, computed from a model's config.json.

Counts the text model's real parameters (built on the meta device: no weights needed, seconds) and
applies llama.cpp's own bits per weight; memory adds the context cache at --n-ctx tokens
(src/healthai/model/gguf_sizes.py says how). The table in inference/README.md is its output for
Qwen3.5-9B.

Examples:
    python inference/gguf_sizes.py tests/fixtures/qwen3.5-9b            # Qwen3.5-9B's config
    python inference/gguf_sizes.py $PROJECT_DIR/models/embedded-base --n-ctx 32768
"""

from __future__ import annotations

import argparse
import sys

from healthai.model import gguf_sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gguf_sizes.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a folder with the model's config.json")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context tokens (export.n_ctx; default 4096)")
    args = parser.parse_args(argv)
    from pathlib import Path

    if not (Path(args.model_dir) / "config.json").is_file():
        print(f"gguf_sizes.py: error: {args.model_dir}/config.json: no such file (a model folder is needed)",
              file=sys.stderr)
        return 1
    try:
        params = gguf_sizes.text_params(args.model_dir)
    except (OSError, ValueError) as exc:
        print(f"gguf_sizes.py: error: {args.model_dir}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(gguf_sizes.markdown(gguf_sizes.estimate(args.model_dir, args.n_ctx), params, args.n_ctx))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
