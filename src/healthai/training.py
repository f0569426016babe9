"""LoRA fine-tuning with TRL's SFTTrainer: the one trainer of the final stage and of every Optuna trial.

    metrics = train_lora(cfg, train_path, val_path, out_dir, hparams={"lora_r": 8, "learning_rate": 2e-3})
    run_finetune_stage(cfg, merge=False)      # the stage: $PROJECT_DIR/ft/ (adapter, metrics, plots, logs)

`train_lora` reads `{"messages": [system, user, assistant]}` JSONL, loads the base model
(`models.base`) through `healthai.modeling.load_model_and_tokenizer`, wraps every linear layer
of the language model in LoRA (for Qwen3.5 that includes the Gated DeltaNet projections
`linear_attn.in_proj_qkv/in_proj_z/in_proj_a/in_proj_b/out_proj`), and trains on the assistant
answers only (the chat template's `{% generation %}` markers; see templates/SOURCES.md),
evaluating on the validation split each epoch with early stopping. Seeds are fixed.

On CPU it trains in fp32 without activation checkpointing (TRL's bf16 + checkpointing defaults
are 2-3x slower there); on GPU in bf16 with checkpointing. Batches are padded, never packed
(packing leaks across examples on Qwen3.5 without the fla kernels), and grouped by length.

Time limits: SIGUSR1 (Slurm `--signal=B:USR1@60`, relayed by `healthai_run_requeueable`) makes
the trainer save a checkpoint (weights, optimizer, scheduler, RNG, step) and stop; the next run
resumes from the last checkpoint in `ft/checkpoints` when config and inputs are unchanged.

Switches for the urgent-prefix levers (issue 14; all off by default): `urgent_oversample`
(repeat urgent training examples, from the `.meta.jsonl` sidecar), `first_token_weight` /
`first_token_count` (weight the loss of the opening answer tokens), `train_format_rows` (train
the embedding rows of the prefix and closing-sentence tokens through a gradient mask; saved
as `token_rows.safetensors` beside the adapter and applied by `apply_token_rows`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from healthai.errors import ConfigError, InputError, ModelError, StageError

log = logging.getLogger("healthai.finetune")

HPARAMS = frozenset({
    "lora_r", "lora_alpha", "lora_dropout", "learning_rate", "epochs", "batch_size",
    "gradient_accumulation_steps", "warmup_ratio", "weight_decay",
    "urgent_oversample", "first_token_weight", "first_token_count",
})
"""The hyperparameters `train_lora(hparams=...)` accepts (each a key of the finetune section)."""

TOKEN_ROWS = "token_rows.safetensors"
CHECKPOINTS = "checkpoints"
FINGERPRINT = "fingerprint.txt"
ROLES = ("system", "user", "assistant")


# -- hyperparameters (pure) --------------------------------------------------------------------
def resolve_hparams(cfg, hparams: dict | None = None) -> dict:
    """The finetune section's values for HPARAMS, overridden by `hparams` (unknown keys: ConfigError)."""
    hparams = dict(hparams or {})
    unknown = sorted(set(hparams) - HPARAMS)
    if unknown:
        raise ConfigError(f"unknown hyperparameter(s) {', '.join(unknown)}; train_lora accepts "
                          f"{', '.join(sorted(HPARAMS))}")
    out = {name: getattr(cfg.finetune, name) for name in sorted(HPARAMS)}
    out.update(hparams)
    for key in ("lora_r", "lora_alpha", "batch_size", "gradient_accumulation_steps", "first_token_count"):
        out[key] = int(out[key])
    return out


# -- data -----------------------------------------------------------------------------------
def check_messages(record: Any) -> str | None:
    """None when `record` is a usable training example, else the reason (one short phrase)."""
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        return "no 'messages' list"
    msgs = record["messages"]
    if not msgs:
        return "empty 'messages'"
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return "a message without role system/user/assistant and string content"
    if msgs[-1]["role"] != "assistant" or not msgs[-1]["content"].strip():
        return "the last message is not a non-empty assistant answer"
    if not any(m["role"] == "user" for m in msgs):
        return "no user message"
    return None


def read_messages(path: str | os.PathLike, max_record_bytes: int = 1_000_000) -> tuple[list[dict], list[dict]]:
    """(good records as {"messages": ...}, rejected entries with id/reason/detail/record)."""
    from healthai.io import BadLine, iter_jsonl

    path = Path(path)
    if not path.is_file():
        raise InputError("training file not found (run stage 3, 3.Merge, or 4.Clinical-reasoning first)",
                         file=str(path))
    good, bad = [], []
    for item in iter_jsonl(path, max_record_bytes=max_record_bytes):
        if isinstance(item, BadLine):
            bad.append(item.rejected())
            continue
        reason = check_messages(item.record)
        if reason:
            bad.append({"id": f"{item.file}:{item.line}", "reason": "bad_messages", "detail": reason,
                        "record": item.record, "source_file": item.file, "source_line": item.line})
            log.warning("%s:%d: %s — quarantined", item.file, item.line, reason)
            continue
        good.append({"messages": item.record["messages"]})
    return good, bad


def read_urgent_flags(meta_path: Path, n: int) -> list[bool] | None:
    """`is_urgent` per line of the line-aligned `.meta.jsonl` sidecar; None (with a warning) when a
    dataset has none: the oversampling default must not stop a dataset made outside the pipeline."""
    from healthai.io import read_jsonl

    if not meta_path.is_file():
        log.warning("%s not found: no urgent flags, finetune.urgent_oversample not applied", meta_path)
        return None
    rows = read_jsonl(meta_path)
    if len(rows) != n:
        raise InputError(f"meta sidecar has {len(rows)} lines for {n} training records", file=str(meta_path))
    return [bool(r.get("is_urgent")) for r in rows]


def oversample(records: list[dict], flags: Sequence[bool], factor: float, seed: int) -> list[dict]:
    """Each flagged record appears `factor` times on average (floor + a seeded coin for the fraction)."""
    if factor <= 1.0:
        return list(records)
    rng = random.Random(seed)
    whole, frac = int(factor), factor - int(factor)
    out = []
    for rec, flag in zip(records, flags):
        copies = (whole + (1 if rng.random() < frac else 0)) if flag else 1
        out.extend([rec] * copies)
    return out


# -- model ----------------------------------------------------------------------------------
def wrapped_module_counts(model) -> dict[str, int]:
    """LoRA-wrapped modules per leaf name ('in_proj_qkv': 24, 'q_proj': 8, ...)."""
    counts: Counter = Counter()
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer"):
            counts[name.rsplit(".", 1)[-1]] += 1
    return dict(sorted(counts.items()))


def lora_config(hp: dict, target_modules: str | list[str]):
    from peft import LoraConfig

    return LoraConfig(r=hp["lora_r"], lora_alpha=hp["lora_alpha"], lora_dropout=hp["lora_dropout"],
                      target_modules=target_modules, bias="none", task_type="CAUSAL_LM")


def apply_lora(model, hp: dict, target_modules: str | list[str] = "all-linear"):
    """The PEFT model; raises ModelError when no module was wrapped (a wrong target list)."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config(hp, target_modules))
    counts = wrapped_module_counts(peft_model)
    if not counts:
        raise ModelError(f"LoRA wrapped no module (finetune.target_modules = {target_modules!r})")
    return peft_model, counts


def meta_model(config_or_path):
    """The model of a config.json on the meta device: shapes and parameter counts, no memory, no weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = config_or_path
    if isinstance(config_or_path, (str, os.PathLike)):
        config = AutoConfig.from_pretrained(config_or_path, trust_remote_code=False)
    config = getattr(config, "text_config", None) or config  # a VL checkpoint: its language model only
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=False)


def count_params(model) -> tuple[int, int]:
    from healthai.modeling import count_params as _count

    return _count(model)


def format_token_ids(tokenizer, phrases: Iterable[str]) -> list[int]:
    """Token ids of the phrases the urgent/closing levers care about (with and without a leading space)."""
    ids: set[int] = set()
    for phrase in phrases:
        for text in (phrase, " " + phrase):
            ids.update(tokenizer(text, add_special_tokens=False).input_ids)
    return sorted(ids)


def enable_token_rows(model, ids: list[int]):
    """Make rows `ids` of the input embedding (and an untied output head) trainable; others get zero grad."""
    import torch

    tensors = []
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is None or any(module.weight is t for t in tensors):
            continue
        w = module.weight
        w.requires_grad_(True)
        mask = torch.zeros(w.shape[0], 1, dtype=w.dtype, device=w.device)
        mask[ids] = 1
        w.register_hook(lambda grad, mask=mask: grad * mask)
        tensors.append(w)
    return tensors


def token_rows_state(model, ids: list[int]) -> dict:
    import torch

    state = {"ids": torch.tensor(ids, dtype=torch.long),
             "input_embeddings": model.get_input_embeddings().weight[ids].detach().cpu().contiguous()}
    out = model.get_output_embeddings()
    if out is not None and out.weight is not model.get_input_embeddings().weight:
        state["output_embeddings"] = out.weight[ids].detach().cpu().contiguous()
    return state


def apply_token_rows(model, adapter_dir: str | os.PathLike) -> bool:
    """Copy the trained format-token rows saved next to an adapter into `model` (False: none saved)."""
    import torch
    from safetensors.torch import load_file

    path = Path(adapter_dir) / TOKEN_ROWS
    if not path.is_file():
        return False
    state = load_file(str(path))
    ids = state["ids"].tolist()
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[ids] = state["input_embeddings"].to(emb.dtype).to(emb.device)
        out = model.get_output_embeddings()
        if "output_embeddings" in state and out is not None and out.weight is not emb:
            out.weight[ids] = state["output_embeddings"].to(out.weight.dtype).to(out.weight.device)
    return True


# -- memory plan (pure arithmetic) -------------------------------------------------------------
@dataclass
class MemoryPlan:
    """Bytes the training needs, in GiB, and whether that fits the device."""

    device: str
    weights: float
    lora_and_optimizer: float
    activations: float
    logits: float
    total: float
    available: float
    fits: bool

    def lines(self) -> list[str]:
        return [f"memory plan on {self.device}: weights {self.weights:.2f} GiB + LoRA/optimizer "
                f"{self.lora_and_optimizer:.2f} + activations {self.activations:.2f} + logits {self.logits:.2f} "
                f"= {self.total:.2f} GiB of {self.available:.1f} GiB usable -> {'fits' if self.fits else 'DOES NOT FIT'}"]


GIB = 1024 ** 3


def plan_memory(config, total_params: int, trainable_params: int, batch: int, length: int, weight_bytes: int,
                checkpointing: bool, available_gib: float, device: str = "cuda") -> MemoryPlan:
    """Rough upper estimate: frozen weights + fp32 LoRA weights, grads, Adam moments (16 B/param) +
    activations (checkpointing: one hidden state per layer kept, one layer live; else ~18 hidden-sized
    tensors per layer and token) + fp32 logits and their gradient over the vocabulary."""
    config = getattr(config, "text_config", None) or config
    h, layers = config.hidden_size, config.num_hidden_layers
    inter = getattr(config, "intermediate_size", 4 * h)
    tokens = batch * length
    act_bytes = weight_bytes if weight_bytes < 4 else 4
    per_layer = tokens * (18 * h + 3 * inter) * act_bytes
    if checkpointing:
        activations = layers * tokens * h * act_bytes + per_layer
    else:
        activations = layers * per_layer
    logits = 2 * tokens * config.vocab_size * 4
    weights = total_params * weight_bytes
    lora = trainable_params * 16
    total = (weights + lora + activations + logits) / GIB
    return MemoryPlan(device=device, weights=weights / GIB, lora_and_optimizer=lora / GIB,
                      activations=activations / GIB, logits=logits / GIB, total=total,
                      available=available_gib, fits=total <= available_gib)


def device_memory_gib(device: str, configured: float | None) -> float:
    if configured:
        return float(configured)
    if device == "cuda":
        import torch

        return torch.cuda.get_device_properties(0).total_memory / GIB
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError, AttributeError):
        return 16.0


def check_memory(cfg, base: Path, hp: dict, device: str, dtype) -> MemoryPlan:
    """Plan from config.json on the meta device before loading; StageError when it cannot fit."""
    import torch

    fc = cfg.finetune
    model = meta_model(base)
    if not fc.train_format_rows:
        model, _ = apply_lora(model, hp, fc.target_modules)
    total, trainable = count_params(model)
    if fc.train_format_rows:  # full embedding rows carry optimizer state (only the masked rows change)
        model, _ = apply_lora(model, hp, fc.target_modules)
        _, lora_only = count_params(model)
        trainable = lora_only + model.get_input_embeddings().weight.numel()
        total, _ = count_params(model)
    weight_bytes = torch.empty(0, dtype=dtype).element_size()
    plan = plan_memory(model.config, total - trainable, trainable, hp["batch_size"], fc.max_length, weight_bytes,
                       use_checkpointing(fc, device), fc.memory_headroom * device_memory_gib(device, fc.gpu_memory_gib),
                       device)
    for line in plan.lines():
        print(f"[finetune] {line}")
    if not plan.fits:
        raise StageError(f"the model does not fit: {plan.total:.1f} GiB needed, {plan.available:.1f} GiB usable "
                         f"on {device}; lower finetune.batch_size or finetune.max_length, turn on "
                         f"finetune.activation_checkpointing, or use a bigger GPU")
    return plan


def use_checkpointing(fc, device: str) -> bool:
    return fc.activation_checkpointing == "on" or (fc.activation_checkpointing == "auto" and device == "cuda")


# -- time-limit signal ------------------------------------------------------------------------
class TimeLimit:
    """SIGUSR1 sets a flag; the trainer callback then saves a checkpoint and stops."""

    def __init__(self):
        self.requested = threading.Event()
        self.previous = None

    def install(self) -> "TimeLimit":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGUSR1, self._handle)
        return self

    def uninstall(self) -> None:
        if self.previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self.previous)
            self.previous = None

    def _handle(self, signum, frame) -> None:
        log.warning("SIGUSR1: time limit near; saving a checkpoint after this step and stopping")
        self.requested.set()


class TrainingInterrupted(StageError):
    """Training stopped on the time-limit signal after saving a checkpoint; rerun (requeue) to resume."""


def _any_rank(flag: bool) -> bool:
    """True when `flag` is set on any process of a distributed run (a max all-reduce; local: the flag)."""
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def _callbacks_module():
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def __init__(self, limit: TimeLimit):
            self.limit = limit
            self.stopped_at = None

        def on_step_end(self, args, state, control, **kwargs):
            if _any_rank(self.limit.requested.is_set()):  # every rank stops at the same step (no DDP hang)
                control.should_save = True
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    return StopOnSignal


# -- the trainer ------------------------------------------------------------------------------
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


def _distributed() -> tuple[int, int]:
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

    from healthai.modeling import load_model_and_tokenizer, resolve_device, resolve_dtype, training_chat_template

    t_wall = time.perf_counter()
    fc = cfg.finetune
    hp = resolve_hparams(cfg, hparams)
    seed = int(seed if seed is not None else (fc.seed if fc.seed is not None else cfg.project.seed))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world = _distributed()
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
    StopOnSignal = _callbacks_module()
    limit = TimeLimit().install()
    stopper = StopOnSignal(limit)
    cbs = [stopper, *callbacks]
    if save and fc.early_stopping_patience:
        from transformers import EarlyStoppingCallback

        cbs.append(EarlyStoppingCallback(early_stopping_patience=fc.early_stopping_patience))
    if save and fc.tensorboard and rank == 0:
        cbs.append(_tensorboard_callback(out_dir / "tensorboard"))
    if save and fc.mlflow:
        cbs.append(_mlflow_callback(cfg))
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
    peak = _PeakMemory(device).start()
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


def save_adapter(model, tokenizer, folder: Path, row_ids: list[int] = ()) -> Path:
    """adapter_model.safetensors + adapter_config.json + tokenizer + chat template (+ token rows), atomically."""
    from safetensors.torch import save_file

    tmp = folder.with_name(f".{folder.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if not (tmp / "chat_template.jinja").is_file():
        (tmp / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    if row_ids:
        save_file(token_rows_state(model, list(row_ids)), str(tmp / TOKEN_ROWS))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


class _PeakMemory:
    """Peak resident memory of this process (sampled every 0.2 s) and peak GPU memory."""

    def __init__(self, device: str):
        self.device, self.rss_mb, self.gpu_mb = device, None, None
        self._stop = threading.Event()
        self._peak = 0

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _loop(self):
        while not self._stop.wait(0.2):
            self._peak = max(self._peak, self._rss())

    def start(self) -> "_PeakMemory":
        self._peak = self._rss()
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self._peak = max(self._peak, self._rss())
        self.rss_mb = round(self._peak / 2 ** 20, 1)
        if self.device == "cuda":
            import torch

            self.gpu_mb = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)


def _tensorboard_callback(folder: Path):
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    folder.mkdir(parents=True, exist_ok=True)
    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(folder)))


def _mlflow_callback(cfg):
    """MLflow file store in the project dir; a missing package is a one-line ConfigError."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("finetune.mlflow is true but mlflow is not installed (pip install -e '.[mlflow]', "
                          "or set finetune.mlflow=false)") from None
    from transformers.integrations import MLflowCallback

    uri = cfg.resolve(cfg.finetune.mlflow_tracking_uri)
    uri.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = uri.as_uri()
    os.environ["MLFLOW_EXPERIMENT_NAME"] = cfg.finetune.mlflow_experiment
    return MLflowCallback()


# -- plots ------------------------------------------------------------------------------------
def plot_losses(metrics: dict, path: Path) -> Path:
    """Training and validation loss per step (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if metrics.get("train_losses"):
        xs, ys = zip(*metrics["train_losses"])
        ax.plot(xs, ys, label="train (assistant tokens)", color="tab:blue")
    if metrics.get("eval_losses"):
        xs, ys = zip(*metrics["eval_losses"])
        ax.plot(xs, ys, "o-", label="validation", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title("LoRA fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- after training: does the adapter change the answers? ---------------------------------------
def compare_answers(model, tokenizer, records: list[dict], cfg, n: int, max_new_tokens: int) -> dict:
    """Greedy answers to `n` validation prompts with the adapter off (base) and on (ft): format rates."""
    from healthai.evaluation import ends_with_closing, starts_with_prefix
    from healthai.inference import generate_answers

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


def merge_into(model, tokenizer, folder: Path) -> Path:
    """The adapter (and any trained token rows) merged into the base weights: one plain model folder."""
    tmp = folder.with_name(f".{folder.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    merged = model.merge_and_unload()
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if not (tmp / "chat_template.jinja").is_file():
        (tmp / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


# -- the stage ----------------------------------------------------------------------------------
def dataset_paths(cfg) -> tuple[Path, Path]:
    """finetune.dataset: qa -> 3.merge/train + val; clinical -> 4.clinical/train + dev."""
    root = cfg.project_path()
    if cfg.finetune.dataset == "clinical":
        return root / "4.clinical" / "train.jsonl", root / "4.clinical" / "dev.jsonl"
    return root / "3.merge" / "train.jsonl", root / "3.merge" / "val.jsonl"


def final_hparams(cfg, cli_keys: Iterable[str] = ()) -> tuple[dict, Path | None]:
    """config < hpo/best_params.yaml (when present; the file is printed) < --set finetune.KEY on the CLI."""
    from healthai.hpo import final_hparams as from_hpo

    params, path = from_hpo(cfg)
    params = {k: v for k, v in params.items() if k in HPARAMS}
    for key in cli_keys:
        if key in HPARAMS:
            params[key] = getattr(cfg.finetune, key)
            print(f"[finetune] {key}={params[key]} from the command line")
    return params, path


def cli_finetune_keys(overrides: Iterable[str]) -> list[str]:
    """The finetune keys given with --set (they win over best_params.yaml)."""
    return [o.split("=", 1)[0].split(".", 1)[1] for o in overrides if o.startswith("finetune.") and "=" in o]


def run_finetune_stage(cfg, force: bool = False, cli_keys: Iterable[str] = ()) -> dict | None:
    """The stage: train on the chosen dataset, write $PROJECT_DIR/ft/ (see fine-tuning/README.md)."""
    from healthai.io import write_json
    from healthai.stage import StageRun, code_version, describe_file, fingerprint

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
    rank, world = _distributed()
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
