"""Manual review in the terminal: one example at a time, saved after every decision, resumable.

Shows the question, the answer, its category and the validation checks it passed; keys:
a accept · r reject (asks for an optional reason) · e edit (opens $EDITOR, or asks for the
answer on one line when $EDITOR is unset; the edit must pass the stage-2 validator) ·
s skip · q quit. Every decision is written to review.csv and review.jsonl at once
(temp file + rename), so quitting, a lost connection or Ctrl-C loses nothing; run it again
to resume at the first undecided example. Then rerun the merge stage to apply the decisions.

Reads and writes $PROJECT_DIR/3.merge/review/review.csv (merge.review_file), written by the
merge stage. The CSV also opens in a spreadsheet (columns id, category, is_urgent, question,
answer, decision, edited_answer, note): fill decision with accept / reject / edit / skip.

Example (login node):
    python 3.Merge/review.py
    EDITOR=nano python 3.Merge/review.py --redo-skipped
"""

from __future__ import annotations

from healthai.pipeline.cli import run_cli, stage_parser
from healthai.data.review import run_review


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, prog="review.py")
    parser.add_argument("--file", default=None, help="review CSV (default: merge.review_file)")
    parser.add_argument("--redo-skipped", action="store_true", help="show skipped examples again")
    args = parser.parse_args(argv)

    def body(cfg) -> int:
        run_review(cfg, args.file, redo_skipped=args.redo_skipped)
        return 0

    return run_cli("review", args, body)


if __name__ == "__main__":
    raise SystemExit(main())
