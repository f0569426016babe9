"""Benchmark the exported assistant: how much each GGUF quantization costs in agreement with transformers,
and llama.cpp's speed against transformers', on the same prompts in one run.

Reads the export stage's outputs ($PROJECT_DIR/export: ft-merged/ and ft-{f16,q8_0,Q4_K_M}.gguf; run
`make demo`, or `cd inference && sbatch run-export.sh`, first). Prompts: the four workshop prompts and the
first --test-prompts questions of the test split ($PROJECT_DIR/3.merge/test.jsonl). Greedy decoding, up to
--max-new-tokens, stopped at end-of-turn as in the chat. Per file: the share of prompts whose greedy tokens
equal transformers' (fp32, base + adapter merged), the share with the same urgent-prefix decision,
tokens/s (min/median/max over --repeats), the file's size, and the ratio llama.cpp / transformers tokens/s.

    .venv/bin/python benchmarks/export_benchmark.py [--test-prompts 20] [--max-new-tokens 64] [--repeats 3]

Writes benchmarks/results/export_benchmark.json. Goals: q8_0 keeps the urgent decision on >= 95 % of the
prompts; llama.cpp (Q4_K_M) faster than transformers on CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import runinfo  # benchmarks/runinfo.py: the run's own date, commit, machine, load, versions

RUN = runinfo.start()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def test_questions(project: Path, n: int) -> list[str]:
    from healthai.model.inference import question_of
    from healthai.pipeline.io import read_jsonl

    path = project / "3.merge" / "test.jsonl"
    if not path.is_file():
        sys.exit(f"[bench] error: {path} not found: run make demo first")
    return [q for q in (question_of(r) for r in read_jsonl(path)) if q][:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-prompts", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="speed passes per backend (min/median/max)")
    parser.add_argument("--quick", action="store_true", help="4 test prompts, 16 tokens, 1 repeat")
    args = parser.parse_args(argv)
    if runinfo.quick():
        args.test_prompts, args.max_new_tokens, args.repeats = 4, 16, 1

    from healthai.config import load_config
    from healthai.model.export import agreement

    cfg = load_config()
    export = cfg.project_path() / "export"
    merged = export / "ft-merged"
    types = [*cfg.export.convert_types, *cfg.export.quant_types]
    files = {t: export / f"ft-{t}.gguf" for t in dict.fromkeys(types)}
    missing = [p for p in [merged, *files.values()] if not p.exists()]
    if missing:
        sys.exit(f"[bench] error: {missing[0]} not found: run the export stage first "
                 "(make demo, or cd inference && sbatch run-export.sh)")
    questions = list(cfg.inference.prompts) + test_questions(cfg.project_path(), args.test_prompts)
    RUN["settings"] = {"prompts": len(questions), "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
                       "files": {t: p.name for t, p in files.items()}}
    print(f"[bench] export: {len(questions)} prompts x {len(files)} GGUF files + transformers, "
          f"{args.repeats} pass(es)", flush=True)
    passes = []
    for i in range(args.repeats):  # agreement is deterministic (greedy); the passes are for the speeds
        passes.append(agreement(cfg, merged, files, questions, args.max_new_tokens))
        print(f"[bench] pass {i + 1}/{args.repeats}: transformers {passes[-1]['transformers_tokens_per_s']} "
              f"tokens/s; " + ", ".join(f"{t} {g['tokens_per_s']}" for t, g in passes[-1]["gguf"].items()),
              flush=True)
    first = passes[0]
    hf = runinfo.spread([p["transformers_tokens_per_s"] for p in passes])
    result = {"prompts": len(questions), "transformers_tokens_per_s": hf, "gguf": {}}
    for t, path in files.items():
        tps = runinfo.spread([p["gguf"][t]["tokens_per_s"] for p in passes])
        g = first["gguf"][t]
        result["gguf"][t] = {
            "size_mb": round(path.stat().st_size / 1e6, 2),
            "token_agreement": g["token_agreement"],
            "urgent_decision_agreement": g["urgent_decision_agreement"],
            "same_across_passes": all(p["gguf"][t]["token_agreement"] == g["token_agreement"] for p in passes),
            "tokens_per_s": tps,
            "speed_ratio_vs_transformers": round(tps["median"] / hf["median"], 2) if hf["median"] else None,
        }
        print(f"[bench] ft-{t}: {result['gguf'][t]['size_mb']} MB, tokens = transformers on "
              f"{g['token_agreement']:.0%}, urgent decision {g['urgent_decision_agreement']:.0%}, "
              f"{tps['median']} tokens/s ({result['gguf'][t]['speed_ratio_vs_transformers']}x transformers)",
              flush=True)
    q8 = result["gguf"].get("q8_0", {})
    q4 = result["gguf"].get("Q4_K_M", {})
    result["meets_targets"] = bool(q8 and q8["urgent_decision_agreement"] >= 0.95
                                   and q4 and (q4["speed_ratio_vs_transformers"] or 0) > 1)
    runinfo.write(REPO / "benchmarks" / "results" / "export_benchmark.json", RUN, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
