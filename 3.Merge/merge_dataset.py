"""Stage 3: apply the manual review, top up to the target, split train/val/test, write the dataset card.

Reads  $PROJECT_DIR/2.filter/rewritten.jsonl and reserve.jsonl, and the review decisions in
       $PROJECT_DIR/3.merge/review/review.csv (merge.review_file) when a reviewer filled it in.
Writes $PROJECT_DIR/3.merge/: train.jsonl, val.jsonl, test.jsonl ({"messages": [...]} only),
       train.meta.jsonl, val.meta.jsonl, test.meta.jsonl (line-aligned ids and meta),
       review/review.csv + review/review.jsonl (the selection for manual review),
       dataset_card.md, answer_lengths.png, rejected.jsonl, manifest.json.

Example (local):
    python 3.Merge/merge_dataset.py --set merge.unreviewed_policy=reject
On Deucalion:
    cd 3.Merge && sbatch run-merge.sh
Review on a login node, then rerun the stage:
    python 3.Merge/review.py
"""

from __future__ import annotations

from healthai.pipeline.cli import banner, run_cli, stage_parser
from healthai.data.merging import run_merge


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, prog="merge_dataset.py")
    args = parser.parse_args(argv)

    def body(cfg) -> int:
        mc = cfg.merge
        banner("3.Merge", cfg, input=cfg.project_path() / "2.filter", output=cfg.project_path() / "3.merge",
               review_file=cfg.resolve(mc.review_file), target=mc.target_total,
               unreviewed_policy=mc.unreviewed_policy)
        run_merge(cfg, force=args.force)
        return 0

    return run_cli("merge", args, body)


if __name__ == "__main__":
    raise SystemExit(main())
