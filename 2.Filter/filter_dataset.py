"""Stage 2: filter the curated Q&A, draw the stratified sample of 500, rewrite and validate it.

Reads  $PROJECT_DIR/1.curation/curated.jsonl
Writes $PROJECT_DIR/2.filter/: rewritten.jsonl (the sample, {"messages": [system, user,
assistant], "meta": {...}}), reserve.jsonl, rejected.jsonl, pool.jsonl, sampling.json,
validation.json, urgent_disagreements.jsonl, sampling.png, manifest.json.

Example (local, rules backend):
    python 2.Filter/filter_dataset.py --set filter.backend=rules
On Deucalion (Qwen3.5-2B on one A100):
    cd 2.Filter && sbatch run-filter.sh
"""

from __future__ import annotations

import sys
from pathlib import Path

from healthai.pipeline.cli import banner, run_cli, stage_parser
from healthai.data.filter_stage import input_path, rewriter_dir, run_filter


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, prog="filter_dataset.py")
    parser.add_argument("--input", default=None, help="curated JSONL (default: $PROJECT_DIR/1.curation/curated.jsonl)")
    args = parser.parse_args(argv)

    def body(cfg) -> int:
        src = Path(args.input) if args.input else input_path(cfg)
        model = rewriter_dir(cfg) if cfg.filter.backend == "llm" else "none (rules)"
        banner("2.Filter", cfg, input=src, output=cfg.project_path() / "2.filter", backend=cfg.filter.backend,
               rewriter=model, sample=f"{cfg.filter.sample_size} + reserve {cfg.filter.reserve_size}")
        run_filter(cfg, force=args.force, input_file=src, progress=sys.stderr.isatty())
        return 0

    return run_cli("filter", args, body)


if __name__ == "__main__":
    raise SystemExit(main())
