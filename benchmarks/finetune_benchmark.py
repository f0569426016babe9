"""Fine-tuning on CPU: our SFT configuration vs TRL's defaults, same model and data, one run.

Measures (writes benchmarks/results/finetune_benchmark.json):
- training tokens/s (non-padding tokens per second of train()) of `healthai.model.trainer.sft_args`
  (fp32, no activation checkpointing, length-grouped batches) vs an SFTConfig with TRL's defaults
  (bf16 autocast, gradient checkpointing, random batches) — target >= 2x;
- padding waste per batch (padded positions / all positions) with and without length grouping,
  over a whole epoch's batches — target < 15 % with grouping;
- peak RSS of each training run.

Model: the embedded tiny Qwen3.5 (built here, random weights). Data: the first --n iCliniq
questions and answers of data/raw in the stage-3 form with the system prompt (real lengths).

    python benchmarks/finetune_benchmark.py [--n 96] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import runinfo  # benchmarks/runinfo.py: the run's own date, commit, machine, load, versions

RUN = runinfo.start()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "finetune_benchmark.json"


def records(n: int, system: str, closing: str) -> list[dict]:
    rows = [json.loads(line) for line in (REPO / "data" / "raw" / "icliniq_2k_chat.jsonl").open()][:n]
    out = []
    for r in rows:
        turn = r["chat"][0]
        answer = turn["ideal"].strip()
        out.append({"messages": [{"role": "system", "content": system},
                                 {"role": "user", "content": turn["input"][0]["content"]},
                                 {"role": "assistant", "content": f"{answer} {closing}"}]})
    return out


def padding_waste(lengths: list[int], batch: int, grouped: bool, seed: int) -> float:
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    g = torch.Generator().manual_seed(seed)
    if grouped:
        order = list(LengthGroupedSampler(batch, lengths=lengths, generator=g))
    else:
        order = torch.randperm(len(lengths), generator=g).tolist()
    padded = real = 0
    for i in range(0, len(order), batch):
        lens = [lengths[j] for j in order[i:i + batch]]
        padded += max(lens) * len(lens)
        real += sum(lens)
    return 1 - real / padded


def run_training(trainer_cls, model, tok, args, data) -> dict:
    from datasets import Dataset

    from healthai.model.monitoring import PeakMemory

    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(data), processing_class=tok)
    peak = PeakMemory("cpu").start()
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    peak.stop()
    tokens = int(trainer.state.num_input_tokens_seen)
    return {"seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1),
            "steps": trainer.state.global_step, "peak_rss_mb": peak.rss_mb}


def main(argv: list[str] | None = None) -> int:
    import torch
    from trl import SFTConfig, SFTTrainer

    from healthai.model import embedded, folder, hparams, lora, trainer
    from healthai.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96, help="training examples")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per configuration")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args(argv)

    cfg = load_config(overrides=["site.device=cpu", f"finetune.max_length={args.max_length}",
                                 f"finetune.batch_size={args.batch}", "finetune.lora_dropout=0.0"])
    data = records(args.n, cfg.filter.assistant_system, cfg.filter.closing_sentence)
    with tempfile.TemporaryDirectory() as tmp:
        base = embedded.build_embedded_model(Path(tmp) / "base")
        tok = folder.load_model_and_tokenizer(base, cfg)[1]
        tok.chat_template = folder.training_chat_template()
        lengths = [min(args.max_length, len(tok.apply_chat_template(r["messages"], tokenize=True,
                                                                    return_dict=True)["input_ids"]))
                   for r in data]
        waste = {"grouped": round(padding_waste(lengths, args.batch, True, 0), 4),
                 "random": round(padding_waste(lengths, args.batch, False, 0), 4)}
        print(f"padding waste per batch: length-grouped {waste['grouped']:.1%}, random {waste['random']:.1%}")

        hp = hparams.resolve_hparams(cfg)
        results = {}
        for name in ("trl_defaults", "ours"):
            torch.manual_seed(0)
            model, tok = folder.load_model_and_tokenizer(base, cfg)
            tok.chat_template = folder.training_chat_template()
            model, _ = lora.apply_lora(model, hp, "all-linear")
            if name == "ours":
                sft = trainer.sft_args(cfg, hp, Path(tmp) / name, "cpu", torch.float32, max_steps=args.steps,
                                        epochs=None, eval_steps=None, seed=0, save=False)
                sft.eval_strategy = "no"
                cls = trainer._trainer_class()
            else:  # what a user gets from SFTConfig with only the essentials set
                sft = SFTConfig(output_dir=str(Path(tmp) / name), max_steps=args.steps,
                                per_device_train_batch_size=args.batch, learning_rate=2e-4,
                                max_length=args.max_length, assistant_only_loss=True, report_to="none",
                                use_cpu=True, include_num_input_tokens_seen="non_padding", seed=0,
                                save_strategy="no", logging_steps=1000)
                cls = SFTTrainer
            results[name] = run_training(cls, model, tok, sft, data)
            results[name]["bf16"], results[name]["activation_checkpointing"] = bool(sft.bf16), bool(
                sft.gradient_checkpointing)
            print(f"{name}: {results[name]}")
    ratio = results["ours"]["tokens_per_s"] / results["trl_defaults"]["tokens_per_s"]
    report = {"examples": args.n, "steps": args.steps, "batch": args.batch,
              "max_length": args.max_length, "padding_waste": waste, "training": results,
              "speedup_ours_vs_trl_defaults": round(ratio, 2)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    runinfo.write(OUT, RUN, report)
    print(f"ours vs TRL defaults: {ratio:.2f}x tokens/s -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
