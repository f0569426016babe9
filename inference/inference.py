"""Inference: answer prompts with the base or the fine-tuned model, compare both on the test split.

Modes (one at a time):
  --mode base|ft                 answer the workshop's four prompts (inference.prompts), or
                                 --prompt TEXT (repeatable) / --prompts-file FILE (.txt one per line, or .jsonl)
  --mode base|ft --interactive   type a question, read the answer as it is generated
  --evaluate                     answer $PROJECT_DIR/3.merge/test.jsonl with base AND ft, score both, write
                                 $PROJECT_DIR/inference/report.md, report.json, report.png, answers.jsonl
  --merge-adapter OUT            merge the LoRA adapter into the base, save a plain model folder at OUT

Reads models.base (site profile), models.adapter for ft ($PROJECT_DIR/ft/adapter, made by
`cd fine-tuning && sbatch run-ft.sh`). Same system prompt and chat template as training, thinking off.

Examples:
    bash run-inference.sh base                       # inside `bash gpu.sh` on Deucalion, or on a laptop
    python inference/inference.py --mode ft --prompt "I have a sore throat and a mild fever."
    python inference/inference.py --mode ft --interactive
    python inference/inference.py --evaluate --set inference.eval_limit=50
    python inference/inference.py --merge-adapter $PROJECT_DIR/ft/merged
"""

from __future__ import annotations

import os
import sys
import time

from healthai.pipeline.cli import banner, run_cli, stage_parser


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, prog="inference.py")
    parser.add_argument("--mode", choices=("base", "ft"), default=None,
                        help="base model alone, or base + fine-tuned LoRA adapter (default: base)")
    parser.add_argument("--prompt", action="append", default=[], metavar="TEXT",
                        help="a question to answer (repeatable); default: inference.prompts")
    parser.add_argument("--prompts-file", default=None, metavar="FILE",
                        help="questions, one per line (.txt) or JSONL with prompt/question/messages")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="prompts per generate call (default: inference.batch_size; 1 = one at a time)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--interactive", action="store_true", help="chat in the terminal with streamed answers")
    what.add_argument("--evaluate", action="store_true", help="evaluate base and ft on the test split, write the report")
    what.add_argument("--merge-adapter", default=None, metavar="OUT",
                      help="write base + adapter merged into one safetensors model folder at OUT")
    args = parser.parse_args(argv)
    if (args.prompt or args.prompts_file) and (args.interactive or args.evaluate or args.merge_adapter):
        parser.error("--prompt/--prompts-file answer prompts; they do not combine with "
                     "--interactive, --evaluate or --merge-adapter")
    if args.prompt and args.prompts_file:
        parser.error("give either --prompt or --prompts-file, not both")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.mode and (args.evaluate or args.merge_adapter):
        parser.error("--evaluate compares both models and --merge-adapter needs ft: leave out --mode")
    mode = args.mode or "base"

    def body(cfg) -> int:
        from healthai.model import evaluate, generation, inference

        if args.evaluate:
            banner("inference · evaluate", cfg, split=evaluate.split_paths(cfg)[0], base=inference.base_path(cfg),
                   adapter=inference.adapter_path(cfg), output=cfg.project_path() / "inference")
            result = evaluate.evaluate(cfg, force=args.force, progress=sys.stderr.isatty())
            print(f"report: {cfg.project_path() / 'inference' / 'report.md'}")
            for name, s in (result.get("summaries") or result.get("stats", {}).get("summaries") or {}).items():
                print(f"  {name:>4}: closing {s['closing_rate']:.1%}, urgent recall "
                      f"{s['urgent_recall']['k']}/{s['urgent_recall']['n']}, over-triage "
                      f"{s['over_triage']['k']}/{s['over_triage']['n']}")
            return 0
        if args.merge_adapter:
            banner("inference · merge adapter", cfg, base=inference.base_path(cfg), adapter=inference.adapter_path(cfg),
                   output=args.merge_adapter)
            out = inference.merge_adapter(cfg, args.merge_adapter, force=args.force)
            print(f"merged model: {out} (loads with AutoModelForCausalLM.from_pretrained)")
            return 0
        questions = [] if args.interactive else inference.resolve_prompts(cfg, args.prompt, args.prompts_file)
        banner(f"inference · {mode}", cfg, base=inference.base_path(cfg),
               adapter=inference.adapter_path(cfg) if mode == "ft" else "none (base model)",
               prompts="interactive" if args.interactive else len(questions),
               visible_gpus=os.environ.get("CUDA_VISIBLE_DEVICES", "not set"))
        t0 = time.perf_counter()
        model, tokenizer = inference.load_for_inference(cfg, mode)
        loaded = time.perf_counter() - t0
        print(f"[{mode}] model loaded in {loaded:.1f} s", flush=True)
        if args.interactive:
            inference.interactive(model, tokenizer, cfg, mode)
            return 0
        gens = generation.generate_answers(model, tokenizer, questions, cfg, batch_size=args.batch_size,
                                           progress=sys.stderr.isatty())
        inference.print_answers(gens, mode)
        # What a 10-minute `bash gpu.sh` allocation has to hold (README: when it ends first).
        print(f"[{mode}] timing: loading {loaded:.1f} s + {len(gens)} answers {time.perf_counter() - t0 - loaded:.1f} s"
              f" = {time.perf_counter() - t0:.1f} s", flush=True)
        return 0

    return run_cli("inference", args, body)


if __name__ == "__main__":
    raise SystemExit(main())
