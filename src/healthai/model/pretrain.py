"""`make base`: pretrain the embedded base on the public corpus, resumable after a kill.

    result = pretrain(cfg)                 # corpus -> leak filter -> tokenizer -> blocks -> train -> folder
    python fine-tuning/pretrain_base.py    # the same from the shell (make base)

The recipe, top to bottom:
1. corpus: (question, answer) pairs of `pretrain.corpus` (MedQuAD), minus any pair holding a question
   of the held-out universe (every curation input and the triage set: `base_corpus.find_leaks`);
2. split: `val_fraction` of the pairs, keyed by a hash of the question, for the validation loss;
3. tokenizer: byte-level BPE on the training pairs (the same rules as `embedded.build_tokenizer`);
4. blocks: "question\\n\\nanswer" texts packed into `block_size` blocks (`embedded.domain_blocks`);
5. training: AdamW, warm-up / constant / linear decay (a run stopped before the decay continues to a
   larger budget unchanged), data order a function of the step; an atomic checkpoint (weights,
   optimizer, schedule, RNG, step) every `checkpoint_every_seconds`, so a rerun after SIGKILL resumes
   and ends with the same weights as an uninterrupted run;
6. evaluation every `eval_every_tokens`: validation loss and the urgent probe (AUC on the demo's val
   questions of a logistic regression on the base's question states, fitted on the train questions);
7. the folder: safetensors weights, config, tokenizer, chat template, held_out.json, pretrain.json
   (the manifest: corpus, tokens, seconds, curves, config) in `pretrain.output`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

from healthai.errors import InputError
from healthai.model.base_corpus import find_leaks, held_out_universe, read_pairs
from healthai.model.embedded import (build_tokenizer, domain_blocks, embedded_model_config, init_model,
                                     train_step, weighted_lm_loss)
from healthai.model.folder import count_params, save_model

log = logging.getLogger("healthai.modeling")

CHECKPOINT = "checkpoint.pt"
PROGRESS = "progress.json"
HELD_OUT = "held_out.json"
MANIFEST = "pretrain.json"
CARD = "MODEL_CARD.md"
ARCHITECTURE = ("vocab_size", "min_frequency", "hidden_size", "intermediate_size", "num_hidden_layers",
                "full_attention_interval", "num_attention_heads", "num_key_value_heads", "head_dim",
                "linear_num_key_heads", "linear_num_value_heads", "linear_head_dim", "tie_word_embeddings",
                "max_position_embeddings", "seed")
"""The `embedded` keys that shape the tokenizer and the model: a checkpoint resumes only with the same ones."""


# -- 1-4: corpus, split, tokenizer, blocks ------------------------------------------------------------
def base_pairs(cfg) -> tuple[list[tuple[str, str]], dict]:
    """The corpus pairs with every held-out question removed, and the held-out record (held_out.json)."""
    pc = cfg.pretrain
    corpus = cfg.resolve(pc.corpus)
    pairs = read_pairs(corpus, cfg.project.max_record_bytes)
    universe = held_out_universe(cfg)
    leaks = find_leaks(universe.questions, pairs, pc.held_out_threshold)
    dropped = sorted({leak["corpus"] for leak in leaks})
    kept = [p for i, p in enumerate(pairs) if i not in set(dropped)]
    record = {"fingerprint": universe.fingerprint, "files": universe.files, "questions": len(universe.questions),
              "corpus": str(pc.corpus), "corpus_sha256": _sha256(corpus), "corpus_pairs": len(pairs),
              "removed_pairs": len(dropped), "removed": leaks[:50],
              "check": f"exact normalised question, or >= {pc.held_out_threshold} of a held-out question's "
                       "3-word shingles inside one corpus question+answer"}
    print(f"[base] {corpus.name}: {len(pairs)} pairs; held-out universe {len(universe.questions)} questions "
          f"({len(universe.files)} files); {len(dropped)} pair(s) removed as exact/near duplicates")
    return kept, record


def split_pairs(pairs: list[tuple[str, str]], val_fraction: float) -> tuple[list, list]:
    """(train, val), keyed by the question's hash: the same pair is on the same side in every run."""
    from healthai.data.splitting import normalise_text

    def is_val(question: str) -> bool:
        digest = hashlib.sha1(normalise_text(question).encode("utf-8")).digest()
        return int.from_bytes(digest[:4], "big") / 2 ** 32 < val_fraction

    val = [p for p in pairs if is_val(p[0])]
    return [p for p in pairs if not is_val(p[0])], val


def _sha256(path: Path) -> str:
    from healthai.pipeline.io import sha256_file

    return sha256_file(path)


def run_key(cfg, record: dict) -> str:
    """What a checkpoint must share with the run that resumes it: corpus, held-out set, sizes, data shape."""
    pc, ec = cfg.pretrain, cfg.embedded
    shape = {k: v for k, v in cfg.section("embedded").items() if k in ARCHITECTURE}
    key = {"corpus": record["corpus_sha256"], "held_out": record["fingerprint"], "embedded": shape,
           "block_size": pc.block_size, "batch_size": pc.batch_size, "val_fraction": pc.val_fraction,
           "learning_rate": pc.learning_rate, "warmup_ratio": pc.warmup_ratio, "weight_decay": pc.weight_decay,
           "seed": ec.seed}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def prepare(cfg, work: Path, pairs: list, key: str):
    """Tokenizer and token blocks of the run, made once and reloaded on resume (they are deterministic,
    but BPE training and tokenisation cost minutes on 2 cores)."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    pc = cfg.pretrain
    tok_dir, blocks_file = work / "tokenizer", work / "blocks.safetensors"
    stamp = work / "prepared.json"
    if stamp.is_file() and json.loads(stamp.read_text())["key"] == key and blocks_file.is_file() and tok_dir.is_dir():
        tensors = load_file(blocks_file)
        return AutoTokenizer.from_pretrained(tok_dir), tensors
    train, val = split_pairs(pairs, pc.val_fraction)
    t0 = time.perf_counter()
    tokenizer = build_tokenizer([f"{q}\n\n{a}" for q, a in train], cfg.embedded)
    tokenizer.save_pretrained(tok_dir)
    big = 10 ** 12
    ids, weights = domain_blocks(train, tokenizer, pc.block_size, big, cfg.embedded.seed)
    val_ids, val_weights = domain_blocks(val, tokenizer, pc.block_size, big, cfg.embedded.seed) if val else (
        ids[:0], weights[:0])
    tensors = {"train_ids": ids, "train_weights": weights, "val_ids": val_ids, "val_weights": val_weights}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(blocks_file))
    _atomic_json(stamp, {"key": key, "train_pairs": len(train), "val_pairs": len(val),
                         "train_tokens": int((weights > 0).sum()), "val_tokens": int((val_weights > 0).sum())})
    print(f"[base] tokenizer {len(tokenizer)} tokens; {len(train)} train / {len(val)} val pairs -> "
          f"{len(ids)} / {len(val_ids)} blocks of {pc.block_size} in {time.perf_counter() - t0:.0f} s")
    return tokenizer, tensors


# -- 5: schedule, data order, checkpoints ---------------------------------------------------------------
def lr_factor(step: int, total: int, warmup_ratio: float, decay_ratio: float, min_ratio: float) -> float:
    """Warm-up, constant, linear decay to `min_ratio` over the last `decay_ratio` of the steps."""
    warmup = max(1, int(total * warmup_ratio))
    decay_start = total - int(total * decay_ratio)
    if step < warmup:
        return (step + 1) / warmup
    if step < decay_start:
        return 1.0
    return 1.0 - (1.0 - min_ratio) * (step - decay_start) / max(1, total - decay_start)


def batch_indices(step: int, n_blocks: int, batch_size: int, seed: int):
    """The blocks of optimizer step `step`: epoch e is a permutation seeded by (seed, e), so the data
    position is the step alone (nothing to save, the same batch after a resume)."""
    import torch

    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n_blocks)
        perm = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        out.extend(perm[offset: offset + batch_size - len(out)].tolist())
    return torch.tensor(out, dtype=torch.long)


def save_checkpoint(work: Path, state: dict) -> None:
    """torch.save to a temporary file, fsync, rename: a kill at any moment leaves the previous checkpoint whole."""
    import torch

    tmp = work / f".{CHECKPOINT}.tmp"
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, work / CHECKPOINT)
    _atomic_json(work / PROGRESS, {"step": state["step"], "tokens": state["tokens"], "total_steps": state["total"],
                                   "seconds": round(state["seconds"], 1)})


def load_checkpoint(work: Path, key: str) -> dict | None:
    """The last checkpoint of this run (tensors only: loaded with weights_only), or None to start fresh."""
    import torch

    path = work / CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("key") != key:
        raise InputError(f"the checkpoint belongs to another run (key {state.get('key')}, this one {key}: corpus, "
                         f"sizes or data shape changed); delete {work} or set pretrain.work_dir", file=str(path))
    return state


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


# -- 6: evaluation ----------------------------------------------------------------------------------------
def val_loss(model, tensors: dict, n_blocks: int, batch_size: int) -> float | None:
    import torch

    ids, weights = tensors["val_ids"][:n_blocks], tensors["val_weights"][:n_blocks]
    if len(ids) == 0:
        return None
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(ids), batch_size):
            b, w = ids[i:i + batch_size], weights[i:i + batch_size]
            n = int((w[:, 1:] > 0).sum())
            total += float(weighted_lm_loss(model, b, w)) * n
            count += n
    model.train()
    return round(total / max(1, count), 4)


def probe_data(cfg) -> dict | None:
    """Questions and urgent flags of the demo's train and val splits (`pretrain.probe_splits`), or None."""
    from healthai.model.base_corpus import question_of
    from healthai.pipeline.io import read_jsonl

    if not cfg.pretrain.probe_splits:
        return None
    folder = cfg.resolve(cfg.pretrain.probe_splits)
    out = {}
    for split in ("train", "val"):
        data, meta = folder / f"{split}.jsonl", folder / f"{split}.meta.jsonl"
        if not (data.is_file() and meta.is_file()):
            return None
        questions = [question_of(r) or "" for r in read_jsonl(data)]
        flags = [bool(m.get("is_urgent")) for m in read_jsonl(meta)]
        out[split] = (questions, flags)
    return out


def question_states(model, tokenizer, questions: list[str], batch_size: int = 32):
    """Mean and last of the final hidden states over the tokens of "question\n\n" (the base corpus's own
    format), in right-padded batches (causal layers: the pads after a question do not change its states)."""
    import torch

    rows = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(questions), batch_size):
            enc = [tokenizer(q + "\n\n", add_special_tokens=False).input_ids[-512:]
                   for q in questions[i:i + batch_size]]
            width = max(len(e) for e in enc)
            ids = torch.full((len(enc), width), tokenizer.pad_token_id, dtype=torch.long)
            for r, e in enumerate(enc):
                ids[r, :len(e)] = torch.tensor(e)
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
            for r, e in enumerate(enc):
                h = hidden[r, :len(e)]
                rows.append(torch.cat([h.mean(0), h[-1]]).numpy())
    model.train()
    return rows


def probe_auc(model, tokenizer, data: dict) -> float | None:
    """AUC on val of a logistic regression fitted on the train questions' states: what a linear head on
    this base can tell urgent from non-urgent questions (0.5 = nothing). Val only: test is never read."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (train_q, train_y), (val_q, val_y) = data["train"], data["val"]
    if len(set(train_y)) < 2 or len(set(val_y)) < 2:
        return None
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"))
    clf.fit(question_states(model, tokenizer, train_q), train_y)
    return round(float(roc_auc_score(val_y, clf.predict_proba(question_states(model, tokenizer, val_q))[:, 1])), 4)


# -- the recipe ---------------------------------------------------------------------------------------------
def pretrain(cfg, progress: bool = True) -> dict:
    """Run (or resume) the pretraining of the embedded base and write the folder `pretrain.output`."""
    import torch
    from tqdm import tqdm

    pc, ec = cfg.pretrain, cfg.embedded
    work = cfg.resolve(pc.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    pairs, held_out = base_pairs(cfg)
    key = run_key(cfg, held_out)
    tokenizer, tensors = prepare(cfg, work, pairs, key)
    blocks, weights = tensors["train_ids"], tensors["train_weights"]
    tokens_per_step = pc.batch_size * pc.block_size
    total = max(1, pc.max_tokens // tokens_per_step)
    eval_every = max(1, pc.eval_every_tokens // tokens_per_step)

    model = init_model(embedded_model_config(ec, tokenizer), ec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=pc.learning_rate, weight_decay=pc.weight_decay,
                            betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, pc.warmup_ratio, pc.decay_ratio, pc.min_lr_ratio))
    state = load_checkpoint(work, key)
    curve: list[dict] = []
    step, seconds = 0, 0.0
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, seconds, curve = state["step"], state["seconds"], json.loads(state["curve"])
        print(f"[base] resumed from {work / CHECKPOINT} at step {step} ({step * tokens_per_step:,} tokens)")
    probe = probe_data(cfg)
    n_params, _ = count_params(model)
    print(f"[base] {n_params:,} parameters; {total} steps of {tokens_per_step} tokens ({total * tokens_per_step:,}); "
          f"{len(blocks)} blocks/epoch; probe: {'demo train/val' if probe else 'none'}")

    def checkpoint() -> None:
        save_checkpoint(work, {"key": key, "step": step, "total": total, "tokens": step * tokens_per_step,
                               "seconds": seconds, "model": model.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "rng": torch.get_rng_state(), "curve": json.dumps(curve)})

    probe_every = max(1, pc.probe_every_tokens // tokens_per_step)

    def evaluate(final: bool = False) -> None:
        with_probe = probe and (final or step % probe_every == 0)
        point = {"step": step, "tokens": step * tokens_per_step, "seconds": round(seconds, 1),
                 "val_loss": val_loss(model, tensors, pc.eval_blocks, pc.batch_size),
                 "probe_auc": probe_auc(model, tokenizer, probe) if with_probe else None}
        curve.append(point)
        tqdm.write(f"[base] step {step}: val loss {point['val_loss']}, probe AUC {point['probe_auc']}",
                   file=sys.stderr)
        with open(work / "curve.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(point) + "\n")

    model.train()
    bar = tqdm(total=total, initial=step, desc="base", unit="step", disable=not progress, file=sys.stderr,
               mininterval=5)
    run_start, last_ckpt, loss_ema = time.perf_counter(), time.perf_counter(), None
    while step < total:
        if pc.max_seconds and time.perf_counter() - run_start >= pc.max_seconds:
            break
        t0 = time.perf_counter()
        idx = batch_indices(step, len(blocks), pc.batch_size, ec.seed)
        value = train_step(model, opt, sched, blocks[idx], weights[idx])
        step += 1
        seconds += time.perf_counter() - t0
        loss_ema = value if loss_ema is None else 0.98 * loss_ema + 0.02 * value
        bar.set_postfix_str(f"loss {loss_ema:.3f}, {step * tokens_per_step / max(seconds, 1e-9):,.0f} tok/s",
                            refresh=False)
        bar.update(1)
        if step % eval_every == 0 or step == total:
            evaluate(final=step == total)
        if time.perf_counter() - last_ckpt >= pc.checkpoint_every_seconds or step == total:
            checkpoint()
            last_ckpt = time.perf_counter()
    bar.close()
    checkpoint()
    if not curve or curve[-1]["step"] != step or curve[-1]["probe_auc"] is None:
        evaluate(final=True)
        checkpoint()
    return write_folder(cfg, model, tokenizer, held_out, curve, step, total, seconds, n_params,
                        json.loads((work / "prepared.json").read_text()))


# -- 7: the folder --------------------------------------------------------------------------------------------
def write_folder(cfg, model, tokenizer, held_out: dict, curve: list, step: int, total: int, seconds: float,
                 n_params: int, prepared: dict) -> dict:
    """Weights, tokenizer, template, held_out.json and pretrain.json into `pretrain.output` (files moved in
    at the end, so a kill never leaves half a folder)."""
    import shutil
    import subprocess
    import tempfile

    import torch

    pc = cfg.pretrain
    out = cfg.resolve(pc.output)
    out.mkdir(parents=True, exist_ok=True)
    tokens = step * pc.batch_size * pc.block_size
    manifest = {"complete": step >= total, "step": step, "total_steps": total, "tokens": tokens,
                "budget_tokens": total * pc.batch_size * pc.block_size, "train_seconds": round(seconds, 1),
                "tokens_per_s": round(tokens / max(seconds, 1e-9), 1), "params": n_params,
                "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "curve": curve, "data": prepared,
                "config": {"embedded": cfg.section("embedded"), "pretrain": cfg.section("pretrain")},
                "code": _git_commit(subprocess)}
    tmp = Path(tempfile.mkdtemp(prefix=".write-", dir=out))
    try:
        model.eval()
        save_model(model, tokenizer, tmp)
        _atomic_json(tmp / HELD_OUT, held_out)
        _atomic_json(tmp / MANIFEST, manifest)
        (tmp / CARD).write_text(model_card(manifest, held_out, out), encoding="utf-8")
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    last = curve[-1] if curve else {}
    print(f"[base] {'complete' if manifest['complete'] else 'stopped (resumable)'}: step {step}/{total}, "
          f"{tokens:,} tokens in {seconds / 3600:.2f} h ({manifest['tokens_per_s']:,.0f} tok/s); val loss "
          f"{last.get('val_loss')}, probe AUC {last.get('probe_auc')} -> {out}")
    return manifest


def _git_commit(subprocess) -> str | None:
    from healthai.config import REPO_DIR

    try:
        return subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def model_card(manifest: dict, held_out: dict, folder: Path) -> str:
    """MODEL_CARD.md: what the base is and is not, from the manifest; the sweep (sweep.json) and the demo's
    measured fine-tuning results (evaluation.md) are included when they are in the folder."""
    ec, pc = manifest["config"]["embedded"], manifest["config"]["pretrain"]
    last = manifest["curve"][-1] if manifest["curve"] else {}
    loss = last.get("val_loss")
    full = sum(1 for i in range(ec["num_hidden_layers"]) if (i + 1) % ec["full_attention_interval"] == 0)
    status = ("complete" if manifest["complete"] else
              f"**stopped at {manifest['tokens']:,} of {manifest['budget_tokens']:,} tokens** (constant learning "
              f"rate, no decay yet): `make base` continues it from its checkpoint")
    data = manifest["data"]
    text = f"""# Embedded base: a small Qwen3.5-architecture model pretrained on MedQuAD

**This is not Qwen, and not a medical model.** It is a {manifest['params'] / 1e6:.1f}M-parameter model with the
Qwen3.5 *text architecture* that this repository pretrains from random weights (`make base`,
`healthai.model.pretrain`) on public NIH question-answer pairs, so that `make demo` fine-tunes a base that has
read medical text instead of building one in minutes. On Deucalion the base is Qwen3.5-9B.

| | |
|---|---|
| architecture | `Qwen3_5ForCausalLM`, {ec['num_hidden_layers']} layers ({ec['num_hidden_layers'] - full} Gated DeltaNet, {full} full attention), hidden {ec['hidden_size']}, MLP {ec['intermediate_size']}, tied embeddings |
| parameters | {manifest['params']:,} (float32 safetensors) |
| tokenizer | byte-level BPE, {ec['vocab_size']} tokens trained on the training pairs, Qwen pre-tokenizer and the 33 Qwen special tokens |
| chat template | the real Qwen3.5 template with `{{% generation %}}` markers (`chat_template.jinja`) |
| corpus | MedQuAD (`{pc['corpus']}`, abachaa/MedQuAD @ 577bd37, CC BY 4.0; Ben Abacha & Demner-Fushman 2019): {held_out['corpus_pairs']:,} pairs, written "question\n\nanswer"; {data['train_pairs']:,} train / {data['val_pairs']:,} validation pairs (keyed by question), {data['train_tokens']:,} training tokens per epoch |
| held out | {held_out['questions']:,} questions (every curation input and the hand-labelled triage set, fingerprint `{held_out['fingerprint'][:12]}`): {held_out['removed_pairs']} corpus pairs were exact or near duplicates ({held_out['check']}) |
| training | {status}; {manifest['step']:,} steps of {pc['batch_size']}x{pc['block_size']} tokens = {manifest['tokens']:,} tokens ({manifest['tokens'] / max(1, data['train_tokens']):.2f} epochs), AdamW lr {pc['learning_rate']}, warm-up {pc['warmup_ratio']}, decay over the last {pc['decay_ratio']} |
| time | {manifest['train_seconds'] / 3600:.2f} h of training, {manifest['tokens_per_s']:,.0f} tokens/s on {manifest['cpus']} shared CPU cores ({manifest['threads']} torch threads) |
| validation loss | {loss} (perplexity {round(math.exp(loss), 1) if loss else '-'}) on {pc['eval_blocks']} held-out MedQuAD blocks |
| urgent probe | AUC {last.get('probe_auc')}: a logistic regression on the base's states of the demo's train questions, scored on its val questions (0.5 = cannot tell urgent from not) |

## What it is
- A base that has read ~{manifest['tokens'] / 1e6:.1f}M tokens of encyclopaedic NIH text: disease names, symptoms,
  treatments, the way health information is phrased. Fine-tuning starts from it instead of from random weights.
- Every pipeline code path runs on it as on the 9B: tokenisation, chat template, LoRA on the Gated-DeltaNet
  layers, assistant-only loss, generation, evaluation, export.

## What it is not
- Not a source of medical advice: with ~{manifest['params'] / 1e6:.1f}M parameters its text is fluent-looking
  domain prose, often wrong. Never use it to answer a patient.
- It never saw a patient's first-person question or a chat turn (MedQuAD's questions are templates such as
  "What are the symptoms of X ?"); the urgent rule comes only from the demo's fine-tuning.
- Not comparable with Qwen3.5-9B: absolute losses and rates do not transfer.
"""
    for extra in ("sweep.md", "evaluation.md"):
        if (folder / extra).is_file():
            text += "\n" + (folder / extra).read_text(encoding="utf-8")
    return text


