"""Benchmark inference: batched (left-padded) vs one-prompt-at-a-time generation, same prompts and
settings, in one run; plus the first-token latency of the interactive (streaming) mode.

Model: --model DIR, else $PROJECT_DIR/models/embedded-base when it exists, else a freshly built
embedded model (default sizes, random weights: the timing does not depend on what it learned).
Prompts: the four workshop prompts + real iCliniq questions (data/raw, cut to 400 characters).
Every answer runs to max_new_tokens (generation is not stopped at end-of-turn) so that both paths
produce exactly the same number of tokens; tokens/s = generated tokens / wall time.

    .venv/bin/python benchmarks/inference_benchmark.py [--prompts 16] [--batch-size 8] [--max-new-tokens 64]

On a GPU machine, the same measurement for a Qwen3.5 model of the real 9B layer sizes (hidden 4096,
intermediate 12288, 16/4 heads of 256, Gated DeltaNet 16/32 heads of 128, vocab 248,320), a few
layers, bf16, random weights (no download), the embedded tokenizer for the prompts:

    .venv/bin/python benchmarks/inference_benchmark.py --real-9b-layers 4 --device cuda --dtype bfloat16

Writes benchmarks/results/inference_benchmark.json (or inference_benchmark_9b_layers.json). Target on
CPU: batched >= 3x the tokens/s of one-at-a-time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import runinfo  # benchmarks/runinfo.py: the run's own date, commit, machine, load, versions

RUN = runinfo.start()

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# Qwen3.5-9B text config (from its config.json; see shared notes): the sizes that matter for speed.
REAL_9B = dict(hidden_size=4096, intermediate_size=12288, num_attention_heads=16, num_key_value_heads=4,
               head_dim=256, linear_num_key_heads=16, linear_num_value_heads=32, linear_key_head_dim=128,
               linear_value_head_dim=128, linear_conv_kernel_dim=4, full_attention_interval=4,
               vocab_size=248320, attn_output_gate=True, tie_word_embeddings=False, rms_norm_eps=1e-6)


def questions(n: int, workshop: list[str]) -> list[str]:
    from healthai.pipeline.io import read_jsonl
    from healthai.model.inference import question_of

    out = list(workshop)
    for rec in read_jsonl(REPO / "data" / "raw" / "icliniq_2k_chat.jsonl"):
        if len(out) >= n:
            break
        turns = (rec.get("chat") or [{}])[0].get("input") or []   # raw iCliniq: {"chat": [{"input": [...]}]}
        q = question_of({"messages": turns}) or question_of(rec)
        if q:
            out.append(q[:400])
    return out[:n]


def real_sized_model(layers: int, tokenizer, dtype, device):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.models.qwen3_5 import Qwen3_5TextConfig

    config = Qwen3_5TextConfig(num_hidden_layers=layers, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                               pad_token_id=tokenizer.pad_token_id, **REAL_9B)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--stream-repeats", type=int, default=3)
    parser.add_argument("--real-9b-layers", type=int, default=0, help="GPU: real 9B layer sizes, this many layers")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from healthai.model import generation, inference
    from healthai.config import load_config

    sets = ["inference.max_new_tokens=%d" % args.max_new_tokens]
    if args.device:
        sets.append(f"site.device={args.device}")
    if args.dtype:
        sets.append(f"site.dtype={args.dtype}")
    cfg = load_config(site="local", overrides=sets)
    tmp = None
    model_dir = Path(args.model) if args.model else cfg.resolve(cfg.models.base)
    source = "given" if args.model else "project embedded-base"
    if not (model_dir / "config.json").is_file():
        from healthai.model.embedded import build_embedded_model

        tmp = tempfile.TemporaryDirectory()
        model_dir = build_embedded_model(Path(tmp.name) / "embedded", cfg=cfg)
        source = "freshly built embedded model (random weights)"
    model, tokenizer = inference.load_base(load_config(site="local", overrides=sets + [f"models.base={model_dir}"]))
    if args.real_9b_layers:
        device = model.device
        model = real_sized_model(args.real_9b_layers, tokenizer, model.dtype, device)
        source = f"Qwen3.5-9B layer sizes, {args.real_9b_layers} layers, random weights"
    # Same token count on both paths: no early stop at end-of-turn.
    inf_kwargs = generation.generation_kwargs
    generation.generation_kwargs = lambda c, t: {**inf_kwargs(c, t), "min_new_tokens": args.max_new_tokens}
    qs = questions(args.prompts, cfg.inference.prompts)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {source} ({params:,} params, {model.device}, {model.dtype}); {len(qs)} prompts, "
          f"max_new_tokens {args.max_new_tokens}, batch {args.batch_size}", flush=True)

    generation.generate_answers(model, tokenizer, qs[:2], cfg, batch_size=2)  # warm-up (kernels, allocator)
    runs = {}
    for name, size in (("one_at_a_time", 1), ("batched", args.batch_size)):
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        gens = generation.generate_answers(model, tokenizer, qs, cfg, batch_size=size)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        tokens = sum(g.new_tokens for g in gens)
        runs[name] = {"batch_size": size, "seconds": round(wall, 3), "new_tokens": tokens,
                      "tokens_per_s": round(tokens / wall, 1)}
        print(f"{name:>14}: {tokens} tokens in {wall:.2f} s = {tokens / wall:.1f} tokens/s", flush=True)
    firsts, totals = [], []
    for i in range(args.stream_repeats):
        g = generation.stream_answer(model, tokenizer, qs[i % len(qs)], cfg, write=lambda s: None)
        firsts.append(g.first_token_s)
        totals.append(g.seconds)
    ratio = runs["batched"]["tokens_per_s"] / runs["one_at_a_time"]["tokens_per_s"]
    result = {
        "gpu": torch.cuda.get_device_name(0) if model.device.type == "cuda" else None, "model": source, "params": params, "device": str(model.device),
        "dtype": str(model.dtype).replace("torch.", ""), "prompts": len(qs),
        "max_new_tokens": args.max_new_tokens, "runs": runs, "batched_speedup": round(ratio, 2),
        "target_speedup": 3.0, "interactive_first_token_s": {"median": round(statistics.median(firsts), 4),
                                                             "all": [round(x, 4) for x in firsts]},
        "interactive_answer_s_median": round(statistics.median(totals), 3),
        "fast_path": __import__("healthai.model.folder", fromlist=["x"]).fast_path_active(model),
    }
    print(f"batched / one-at-a-time tokens/s: {ratio:.2f}x (target >= 3x); interactive first token "
          f"{result['interactive_first_token_s']['median'] * 1000:.0f} ms (median of {len(firsts)})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "inference_benchmark_9b_layers.json" if args.real_9b_layers else "inference_benchmark.json"
    runinfo.write(RESULTS / name, RUN, result)
    print(f"written: {RESULTS / name}")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
