"""Stage 1 — initial curation of raw patient–doctor Q&A.

Reads the raw inputs (ChatDoctor JSON/JSONL, iCliniq evals-style chat JSONL, `messages`
JSONL, CSV/TSV; format detected), cleans the text, removes greetings, sign-offs and the
ChatDoctor token, scrubs personal data, filters low-quality records, removes exact and
near-duplicates, applies a marked review file when there is one, prints the
CURATION STATISTICS block and writes $PROJECT_DIR/1.curation/: curated.jsonl,
rejected.jsonl, stats.json, review_sample.csv/.jsonl, manifest.json.

Example:
    python 1.Initial-curation/curate_dataset.py --input data/raw/icliniq_2k_chat.jsonl --force
    sbatch run-curation.sh --set curation.min_answer_words=10
"""

from __future__ import annotations

import sys
from pathlib import Path

from healthai.pipeline.cli import banner, run_cli, stage_parser
from healthai.data.curation import OUTPUT_SUBDIR, curate, input_specs


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, prog="curate_dataset.py")
    parser.add_argument("--input", dest="inputs", action="append", default=[], metavar="PATH",
                        help="raw input file (repeatable; replaces curation.inputs; format detected)")
    parser.add_argument("--input-format", default=None,
                        choices=("chatdoctor_json", "chatdoctor_jsonl", "evals_chat", "messages", "csv", "tsv"),
                        help="force the format of every input instead of detecting it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    def body(cfg):
        specs = input_specs(cfg.curation, args.inputs, args.input_format)
        banner("1 · initial curation", cfg, inputs=", ".join(Path(s.path).name for s in specs),
               output=cfg.project_path() / OUTPUT_SUBDIR)
        curate(cfg, inputs=args.inputs, input_format=args.input_format, force=args.force,
               show_progress=not args.no_progress and sys.stderr.isatty())
        return 0

    return run_cli("curation", args, body)


if __name__ == "__main__":
    sys.exit(main())
