"""LoRA fine-tuning with TRL's SFTTrainer: the one trainer of the final stage and of every Optuna trial.

    metrics = train_lora(cfg, train_path, val_path, out_dir, hparams={"lora_r": 8, "learning_rate": 2e-3})

`train_lora` reads `{"messages": [system, user, assistant]}` JSONL, loads the base model
(`models.base`) through `folder.load_model_and_tokenizer`, wraps every linear layer of the
language model in LoRA, and trains on the assistant answers only (the chat template's
`{% generation %}` markers), evaluating on the validation split with early stopping. Seeds are fixed.

On CPU it trains in fp32 without activation checkpointing (TRL's bf16 + checkpointing defaults
are 2-3x slower there); on GPU in bf16 with checkpointing. Batches are padded, never packed
(packing leaks across examples on Qwen3.5 without the fla kernels), and grouped by length.

Time limits: SIGUSR1 makes the trainer save a checkpoint (weights, optimizer, scheduler, RNG,
step) and stop (`time_limit`); the next run resumes from the last checkpoint in `ft/checkpoints`
when config and inputs are unchanged.

Switches for the urgent-prefix levers: `urgent_oversample` (repeat urgent training examples,
from the `.meta.jsonl` sidecar), `first_token_weight` / `first_token_count` (weight the loss of
the opening answer tokens), `train_format_rows` (train the embedding rows of the prefix and
closing-sentence tokens through a gradient mask; `lora.apply_token_rows` puts them back).
The trainer never generates text: the stage above it (`finetune`) compares answers.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Sequence

from healthai.errors import InputError
from healthai.model.folder import count_params
from healthai.model.hparams import resolve_hparams
from healthai.model.lora import apply_lora, enable_token_rows, format_token_ids, save_adapter
from healthai.model.memory import check_memory, use_checkpointing
from healthai.model.monitoring import PeakMemory, mlflow_callback, tensorboard_callback
from healthai.model.sft_data import oversample, read_messages, read_urgent_flags
from healthai.model.time_limit import TimeLimit, TrainingInterrupted, stop_on_signal_class

log = logging.getLogger("healthai.finetune")


CHECKPOINTS = "checkpoints"


FINGERPRINT = "fingerprint.txt"


def _trainer_class():
    """SFTTrainer with (1) length-grouped batches whose order depends only on (seed, epoch), so a
    resumed run sees the same batches as an uninterrupted one (transformers' LengthGroupedSampler
    draws from the global RNG, which a mid-epoch resume does not reproduce), and (2) an optional
    loss that weights the first `first_token_count` answer tokens by `first_token_weight`."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from trl import SFTTrainer

    class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
        def __init__(self, *args, seed: int = 0, **kwargs):
            super().__init__(*args, **kwargs)
            self.seed = seed
            self.set_epoch(0)

        def set_epoch(self, epoch: int) -> None:
            self.generator = torch.Generator().manual_seed(self.seed + int(epoch))

    class HealthAISFTTrainer(SFTTrainer):
        first_token_weight = 1.0
        first_token_count = 8

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != "group_by_length" or dataset is None:
                return super()._get_train_sampler(train_dataset)
            lengths = [len(ids) for ids in dataset["input_ids"]]
            return EpochSeededLengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=lengths,
                seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.first_token_weight == 1.0:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            labels = inputs["labels"]
            fwd = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
            outputs = model(**fwd, use_cache=False)
            logits = outputs.logits[:, :-1].float()
            target = labels[:, 1:]
            valid = target != -100
            rank = valid.long().cumsum(dim=1)  # 1 for the first answer token, 2 for the second ...
            weight = torch.where(valid & (rank <= self.first_token_count),
                                 torch.tensor(self.first_token_weight, device=logits.device), valid.float())
            ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                   target.reshape(-1).clamp(min=0), reduction="none")
            loss = (ce * weight.reshape(-1)).sum() / weight.sum().clamp(min=1.0)
            return (loss, outputs) if return_outputs else loss

    return HealthAISFTTrainer


def sft_args(cfg, hp: dict, out_dir: Path, device: str, dtype, *, max_steps: int | None, epochs: float | None,
             eval_steps: int | None, seed: int, save: bool, world_size: int = 1):
    """SFTConfig for our setup (each choice explained in the README: CPU speed, masks, no packing)."""
    import torch
    from trl import SFTConfig

    fc = cfg.finetune
    checkpointing = use_checkpointing(fc, device)
    by_steps = bool(eval_steps) or bool(fc.checkpoint_steps)
    every = eval_steps or fc.checkpoint_steps or None
    kwargs = dict(
        output_dir=str(out_dir / CHECKPOINTS),
        num_train_epochs=float(epochs if epochs is not None else hp["epochs"]),
        max_steps=int(max_steps) if max_steps else -1,
        per_device_train_batch_size=hp["batch_size"], per_device_eval_batch_size=hp["batch_size"],
        gradient_accumulation_steps=hp["gradient_accumulation_steps"],
        learning_rate=float(hp["learning_rate"]), weight_decay=float(hp["weight_decay"]),
        warmup_steps=float(hp["warmup_ratio"]), lr_scheduler_type=fc.lr_scheduler,  # a float < 1 is a ratio
        logging_strategy="steps", logging_steps=fc.logging_steps, logging_first_step=True,
        eval_strategy="steps" if by_steps else "epoch", eval_steps=every,
        save_strategy=("steps" if by_steps else "epoch") if save else "no", save_steps=every,
        save_total_limit=fc.save_total_limit, save_only_model=False,
        # the final run keeps the best evaluation's adapter (early stopping); trials save nothing
        load_best_model_at_end=save, metric_for_best_model="eval_loss", greater_is_better=False,
        seed=seed, data_seed=seed, report_to="none", disable_tqdm=False,
        # our configuration vs TRL's defaults (benchmarks/finetune_benchmark.py): fp32 + no checkpointing on CPU
        bf16=(device == "cuda" and dtype == torch.bfloat16), fp16=False,
        gradient_checkpointing=checkpointing, activation_checkpointing=checkpointing,
        use_cpu=(device == "cpu"),
        max_length=fc.max_length, packing=False, padding_free=False, assistant_only_loss=True,
        train_sampling_strategy="group_by_length" if fc.group_by_length else "random",
        include_num_input_tokens_seen="non_padding", dataset_num_proc=None,
        dataloader_num_workers=0, ddp_backend="gloo" if (device == "cpu" and world_size > 1) else None,
        ddp_find_unused_parameters=False if world_size > 1 else None,
    )
    if checkpointing:
        kwargs["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    return SFTConfig(**kwargs)


def distributed() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def last_checkpoint(ckpt_dir: Path, fingerprint: str | None) -> Path | None:
    """The newest checkpoint-N folder, if it was written for this fingerprint (else all are removed)."""
    if not ckpt_dir.is_dir():
        return None
    stamp = ckpt_dir / FINGERPRINT
    if fingerprint and (not stamp.is_file() or stamp.read_text().strip() != fingerprint):
        if any(ckpt_dir.glob("checkpoint-*")):
            log.warning("removing checkpoints in %s: they belong to other inputs or config", ckpt_dir)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        return None
    found = [p for p in ckpt_dir.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)
             and (p / "trainer_state.json").is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[1])) if found else None


def train_lora(cfg, train_path: str | os.PathLike, val_path: str | os.PathLike, out_dir: str | os.PathLike,
               hparams: dict | None = None, callbacks: Sequence = (), max_steps: int | None = None,
               epochs: float | None = None, eval_steps: int | None = None, seed: int | None = None,
               save: bool = True, resume: bool = True, fingerprint: str | None = None,
               base: str | os.PathLike | None = None, train_records: list[dict] | None = None,
               _keep_trainer: bool = False) -> dict:
    """Train a LoRA adapter on `train_path`, evaluating on `val_path`; returns the metrics dict.

    Arguments:
        cfg: the PipelineConfig (finetune section, site device/dtype, models.base).
        hparams: overrides of the finetune section, keys in HPARAMS (Optuna's trial.params).
        callbacks: extra transformers TrainerCallbacks (Optuna's pruning reporter).
        max_steps / epochs / eval_steps: a shorter budget (Optuna trials); eval_steps switches
            evaluation from each epoch to every N steps.
        seed: training seed (default finetune.seed, else project.seed).
        save: False for a throw-away trial (no checkpoints, no adapter, no early stopping);
            True writes `out_dir/adapter` (safetensors + tokenizer + chat template).
        resume: continue from the last checkpoint in out_dir/checkpoints stamped with `fingerprint`.
        train_records: already-read training records (the stage passes them after quarantine).

    Metrics: eval_loss (best), eval_losses, train_loss, train_steps, epochs_done, tokens_seen,
    tokens_per_s, train_seconds, wall_seconds, peak_rss_mb (and peak_gpu_mb), total_params,
    trainable_params, wrapped_modules, log_history. Raises TrainingInterrupted after a SIGUSR1 save.
    """
    import torch
    from datasets import Dataset
    from transformers import set_seed

    from healthai.model.folder import load_model_and_tokenizer, resolve_device, resolve_dtype, training_chat_template

    t_wall = time.perf_counter()
    fc = cfg.finetune
    hp = resolve_hparams(cfg, hparams)
    seed = int(seed if seed is not None else (fc.seed if fc.seed is not None else cfg.project.seed))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world = distributed()
    base = Path(base) if base else cfg.resolve(cfg.models.base)
    device = resolve_device(cfg.site)
    dtype = resolve_dtype(cfg.site, device)

    records = train_records
    if records is None:
        records, bad = read_messages(train_path, cfg.project.max_record_bytes)
        if bad:
            log.warning("%d bad training record(s) skipped (%s)", len(bad), bad[0]["detail"])
    val_records, _ = read_messages(val_path, cfg.project.max_record_bytes)
    if not records or not val_records:
        raise InputError("no usable training or validation records", file=str(train_path if not records else val_path))
    if hp["urgent_oversample"] > 1.0:
        flags = read_urgent_flags(Path(str(train_path).replace(".jsonl", ".meta.jsonl")), len(records))
        n0 = len(records)
        records = oversample(records, flags, hp["urgent_oversample"], seed) if flags else records
        log.info("urgent oversampling x%.2f: %d -> %d training records", hp["urgent_oversample"], n0, len(records))

    if save and rank == 0:
        check_memory(cfg, base, hp, device, dtype)
    set_seed(seed)
    model, tokenizer = load_model_and_tokenizer(base, cfg, device=device, dtype=dtype)
    # Always train with our template: the real Qwen3.5 text plus generation markers (same rendered text).
    tokenizer.chat_template = training_chat_template()
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.use_cache = False
    set_seed(seed)
    model, wrapped = apply_lora(model, hp, fc.target_modules)
    row_ids: list[int] = []
    if fc.train_format_rows:
        row_ids = format_token_ids(tokenizer, (cfg.filter.urgent_prefix, cfg.filter.closing_sentence))
        enable_token_rows(model, row_ids)
    total, trainable = count_params(model)
    if rank == 0:
        print(f"Total params: {total:,}, trainable: {trainable:,} ({100 * trainable / total:.3f}%)")
        print(f"[finetune] LoRA r={hp['lora_r']} alpha={hp['lora_alpha']} dropout={hp['lora_dropout']:.3g} on "
              + ", ".join(f"{k} x{v}" for k, v in wrapped.items()))

    args = sft_args(cfg, hp, out_dir, device, dtype, max_steps=max_steps, epochs=epochs, eval_steps=eval_steps,
                    seed=seed, save=save, world_size=world)
    StopOnSignal = stop_on_signal_class()
    limit = TimeLimit().install()
    stopper = StopOnSignal(limit)
    cbs = [stopper, *callbacks]
    if save and fc.early_stopping_patience:
        from transformers import EarlyStoppingCallback

        cbs.append(EarlyStoppingCallback(early_stopping_patience=fc.early_stopping_patience))
    if save and fc.tensorboard and rank == 0:
        cbs.append(tensorboard_callback(out_dir / "tensorboard"))
    if save and fc.mlflow:
        cbs.append(mlflow_callback(cfg))
    trainer_cls = _trainer_class()
    trainer_cls.first_token_weight = float(hp["first_token_weight"])
    trainer_cls.first_token_count = int(hp["first_token_count"])
    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(records),
                          eval_dataset=Dataset.from_list(val_records), processing_class=tokenizer, callbacks=cbs)
    for name, ds, n in (("training", trainer.train_dataset, len(records)), ("validation", trainer.eval_dataset,
                                                                            len(val_records))):
        if len(ds) < n:  # TRL drops examples whose answer lies wholly beyond max_length
            log.warning("%d of %d %s examples have no answer token within max_length=%d and are dropped",
                        n - len(ds), n, name, fc.max_length)
        if len(ds) == 0:
            raise InputError(f"no {name} example keeps an answer token within finetune.max_length="
                             f"{fc.max_length}; raise it", file=str(train_path if name == "training" else val_path))
    truncated = sum(1 for n in trainer.train_dataset["input_ids"] if len(n) >= fc.max_length)
    if truncated:
        log.warning("%d training example(s) reach max_length=%d and are truncated", truncated, fc.max_length)
    ckpt = None
    ckpt_dir = out_dir / CHECKPOINTS
    if save:
        ckpt = last_checkpoint(ckpt_dir, fingerprint) if resume else None
        if rank == 0:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            if fingerprint:
                (ckpt_dir / FINGERPRINT).write_text(fingerprint + "\n")
        if ckpt:
            print(f"[finetune] resuming from {ckpt}")
    peak = PeakMemory(device).start()
    t0 = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    finally:
        limit.uninstall()
        peak.stop()
    train_seconds = time.perf_counter() - t0
    state = trainer.state
    if limit.requested.is_set() or stopper.stopped_at is not None:
        raise TrainingInterrupted(f"time limit near: checkpoint saved at step {state.global_step} in {ckpt_dir}; "
                                  f"the requeued job resumes from it")
    history = state.log_history
    eval_losses = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    train_losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    # Resumed runs count only the tokens of this run's steps for the speed
    steps_this_run = state.global_step - (int(ckpt.name.split("-")[1]) if ckpt else 0)
    tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    tokens_this_run = tokens_seen * steps_this_run / max(1, state.global_step)
    best = min((v for _, v in eval_losses), default=None)
    metrics = {
        "eval_loss": best, "final_eval_loss": eval_losses[-1][1] if eval_losses else None,
        "eval_losses": eval_losses, "train_losses": train_losses,
        "train_loss": float(result.training_loss) if result is not None else None,
        "train_steps": state.global_step, "global_step": state.global_step,
        "epochs_done": round(float(state.epoch or 0), 3), "resumed_from": str(ckpt) if ckpt else None,
        "tokens_seen": tokens_seen, "tokens_per_s": round(tokens_this_run / train_seconds, 1) if train_seconds else None,
        "train_seconds": round(train_seconds, 2), "wall_seconds": round(time.perf_counter() - t_wall, 2),
        "peak_rss_mb": peak.rss_mb, "peak_gpu_mb": peak.gpu_mb, "device": device,
        "dtype": str(dtype).replace("torch.", ""), "world_size": world, "seed": seed,
        "total_params": total, "trainable_params": trainable, "wrapped_modules": wrapped,
        "hparams": hp, "n_train": len(records), "n_val": len(val_records), "truncated": truncated,
        "log_history": history,
    }
    if save and rank == 0:
        adapter = out_dir / "adapter"
        save_adapter(trainer.model, tokenizer, adapter, row_ids)
        metrics["adapter"] = str(adapter)
    if _keep_trainer:
        metrics["_trainer"] = trainer
    if world > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return metrics
