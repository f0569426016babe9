"""The fine-tuning stage: train on the chosen dataset, then compare answers with the adapter off and on.

    run_finetune_stage(cfg)      # fine-tuning/simple-fine-tuning.py, sbatch run-ft.sh -> $PROJECT_DIR/ft/
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Iterable

from healthai.errors import InputError, ModelError
from healthai.model.hparams import final_hparams
from healthai.model.lora import merge_into
from healthai.model.monitoring import plot_losses
from healthai.model.sft_data import dataset_paths, read_messages
from healthai.model.trainer import CHECKPOINTS, distributed, train_lora


def compare_answers(model, tokenizer, records: list[dict], cfg, n: int, max_new_tokens: int) -> dict:
    """Greedy answers to `n` validation prompts with the adapter off (base) and on (ft): format rates."""
    from healthai.model.evaluation import ends_with_closing, starts_with_prefix
    from healthai.model.generation import generate_answers

    icfg = dataclasses.replace(cfg.inference, max_new_tokens=max_new_tokens, do_sample=False)
    gcfg = dataclasses.replace(cfg, inference=icfg)
    questions = [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in records[:n]]
    model.eval()
    tokenizer.padding_side = "left"
    out: dict[str, Any] = {"prompts": len(questions), "max_new_tokens": max_new_tokens}
    samples = {}
    for mode in ("base", "ft"):
        if mode == "base":
            with model.disable_adapter():
                gens = generate_answers(model, tokenizer, questions, gcfg)
        else:
            gens = generate_answers(model, tokenizer, questions, gcfg)
        answers = [g.answer for g in gens]
        k = len(answers) or 1
        out[mode] = {
            "closing_sentence": round(sum(ends_with_closing(a, cfg.filter.closing_sentence) for a in answers) / k, 3),
            "urgent_prefix": round(sum(starts_with_prefix(a, cfg.filter.urgent_prefix) for a in answers) / k, 3),
            "stopped": round(sum(g.new_tokens < max_new_tokens for g in gens) / k, 3),
            "mean_words": round(sum(len(a.split()) for a in answers) / k, 1),
        }
        samples[mode] = answers[:3]
    tokenizer.padding_side = "right"
    out["samples"] = [{"question": q[:200], "base": b, "ft": f}
                      for q, b, f in zip(questions, samples["base"], samples["ft"])]
    return out


def run_finetune_stage(cfg, force: bool = False, cli_keys: Iterable[str] = ()) -> dict | None:
    """The stage: train on the chosen dataset, write $PROJECT_DIR/ft/ (see fine-tuning/README.md)."""
    from healthai.pipeline.io import write_json
    from healthai.pipeline.stage import StageRun, code_version, describe_file, fingerprint

    train_path, val_path = dataset_paths(cfg)
    base = cfg.resolve(cfg.models.base)
    if not (base / "config.json").is_file():
        raise ModelError("no base model here; build the embedded model first (cd fine-tuning && sbatch "
                         "run-build-model.sh) or set models.base", file=str(base))
    hp, hp_file = final_hparams(cfg, cli_keys)
    inputs = [train_path, val_path, base / "config.json"]
    inputs += [p for p in (base / "tokenizer.json", hp_file) if p and Path(p).is_file()]
    meta = Path(str(train_path).replace(".jsonl", ".meta.jsonl"))
    if hp.get("urgent_oversample", 1.0) > 1.0 and meta.is_file():  # no sidecar: lever skipped (read_urgent_flags)
        inputs.append(meta)
    sections = ["finetune", "models", "embedded"] if "embedded-base" in str(base) else ["finetune", "models"]
    rank, world = distributed()
    if rank != 0:  # other ranks of a multi-process run: train only, rank 0 owns the stage's files
        missing = [p for p in inputs if not Path(p).is_file()]
        if missing:
            raise InputError("input file not found", file=str(missing[0]))
        key = fingerprint([describe_file(Path(p)) for p in inputs], {s: cfg.section(s) for s in sections},
                          code_version())
        out_dir = cfg.project_path() / "ft"
        manifest = out_dir / "manifest.json"
        if not force and manifest.is_file() and json.loads(manifest.read_text()).get("fingerprint") == key:
            return None
        records, _ = read_messages(train_path, cfg.project.max_record_bytes)
        train_lora(cfg, train_path, val_path, out_dir, hparams=hp, fingerprint=key, train_records=records)
        return None
    with StageRun("finetune", cfg, inputs=inputs, config_sections=sections, force=force,
                  output_subdir="ft") as run:
        if run.up_to_date:
            return run.previous
        records, bad = read_messages(train_path, cfg.project.max_record_bytes)
        rejected = run.writer("rejected.jsonl")
        for entry in bad:
            rejected.write_record(entry)
        run.check_bad_fraction(str(train_path), len(bad), len(records) + len(bad), None)
        print(f"[finetune] {len(records)} training records from {train_path} ({len(bad)} rejected), "
              f"validation {val_path}")
        metrics = train_lora(cfg, train_path, val_path, run.out_dir, hparams=hp, fingerprint=run.key,
                             train_records=records, _keep_trainer=True)
        trainer = metrics.pop("_trainer")
        fc = cfg.finetune
        if fc.compare_prompts:
            val_records, _ = read_messages(val_path, cfg.project.max_record_bytes)
            metrics["comparison"] = compare_answers(trainer.model, trainer.processing_class, val_records, cfg,
                                                    fc.compare_prompts, fc.compare_max_new_tokens)
        metrics["hparams_file"] = str(hp_file) if hp_file else None
        history = metrics.pop("log_history")
        write_json(run.out_dir / "metrics.json", metrics)
        write_json(run.out_dir / "log_history.json", history)
        plot_losses(metrics, run.out_dir / "loss_curve.png")
        for name in ("metrics.json", "log_history.json", "loss_curve.png"):
            run.add_output(run.out_dir / name)
        for f in sorted((run.out_dir / "adapter").iterdir()):
            run.add_output(f)
        if fc.merge:
            merged = merge_into(trainer.model, trainer.processing_class, run.out_dir / "merged")
            for f in sorted(merged.iterdir()):
                run.add_output(f)
            print(f"[finetune] merged model written to {merged}")
        shutil.rmtree(run.out_dir / CHECKPOINTS, ignore_errors=True)  # done: the adapter is the result
        run.conserve(n_in=len(records) + len(bad), kept=len(records), rejected=len(bad))
        run.stats.update({k: metrics.get(k) for k in ("eval_loss", "train_loss", "train_steps", "tokens_per_s",
                                                      "peak_rss_mb", "wall_seconds", "trainable_params")})
        cmp = metrics.get("comparison")
        print(f"[finetune] eval loss {metrics['eval_loss']:.4f} after {metrics['train_steps']} steps; "
              f"{metrics['tokens_per_s']} tokens/s; peak RSS {metrics['peak_rss_mb']} MB; adapter {metrics['adapter']}")
        if cmp:
            for mode in ("base", "ft"):
                r = cmp[mode]
                print(f"[finetune] {mode:>4} on {cmp['prompts']} validation prompts: closing sentence "
                      f"{r['closing_sentence']:.0%}, urgent prefix {r['urgent_prefix']:.0%}, stopped "
                      f"{r['stopped']:.0%}, {r['mean_words']} words")
    return run.previous
