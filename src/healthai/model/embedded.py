"""The embedded base model: a tiny Qwen3.5-architecture stand-in, its tokenizer and its domain training.

    tokenizer = build_tokenizer(texts, cfg.embedded)         # byte-level BPE + Qwen special tokens + template
    folder = build_embedded_model(out_dir, texts, cfg)       # random init, safetensors + tokenizer + template
    stats = train_domain_base(folder, texts, cfg)            # full fine-tune as a causal LM on question+answer texts

The tiny model has the real Qwen3.5 text architecture (`Qwen3_5TextConfig`: Gated DeltaNet
linear-attention layers, every `full_attention_interval`-th layer full attention) at a size
that trains on 2 CPU cores. It is NOT Qwen: its weights start random (seeded) and learn only
from the corpus here. Its tokenizer is byte-level BPE with Qwen's pre-tokenizer regex and
special tokens, and its chat template is the real Qwen3.5 one with `{% generation %}` markers
(see templates/SOURCES.md), so every code path is the cluster's.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from healthai.errors import InputError
from healthai.model.base_corpus import QA_SEPARATOR, read_answers
from healthai.model.folder import count_params, save_model, training_chat_template

log = logging.getLogger("healthai.modeling")


# Qwen3.5's added tokens, in the real tokenizer's order (ids 248044..248076 there, 0..32 here).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
    "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
    "<tts_text_bos_single>", "<|audio_pad|>",
)


# Real Qwen3.5: these are "special" (skipped when decoding); <tool_call>, <think>, ... are plain added tokens.
_SKIPPED_IN_DECODE = SPECIAL_TOKENS[:14]


EOS, PAD = "<|im_end|>", "<|endoftext|>"


# Qwen2/3/3.5 pre-tokenizer (tokenizer_config.json "pretokenize_regex").
PRETOKENIZE_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
                     r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _embedded(cfg):
    """Accept the whole PipelineConfig or its `embedded` section (None = defaults)."""
    if cfg is None:
        from healthai.config.modeling import EmbeddedModelConfig

        return EmbeddedModelConfig()
    return getattr(cfg, "embedded", cfg)


def build_tokenizer(texts: Iterable[str], cfg_embedded=None):
    """Byte-level BPE trained on `texts` with Qwen's pre-tokenizer, special tokens and chat template.

    Deterministic: the same texts (in any order) give the same vocabulary and merges.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    ec = _embedded(cfg_embedded)
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=ec.vocab_size, min_frequency=ec.min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = sorted(set(t for t in texts if t))  # order-independent, duplicates do not tilt the merges
    if not corpus:
        raise InputError("no text to train the tokenizer on")
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    # Real Qwen: only the first 14 added tokens are "special" (skipped in decode); keep that split.
    tok.add_special_tokens(list(_SKIPPED_IN_DECODE))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD,
                                   clean_up_tokenization_spaces=False, model_max_length=ec.max_position_embeddings,
                                   padding_side="right")
    fast.add_special_tokens({"additional_special_tokens": list(_SKIPPED_IN_DECODE[1:])},
                            replace_extra_special_tokens=False) if _accepts_replace(fast) else None
    fast.chat_template = training_chat_template()
    return fast


def _accepts_replace(tok) -> bool:
    import inspect

    try:
        return "replace_extra_special_tokens" in inspect.signature(tok.add_special_tokens).parameters
    except (TypeError, ValueError):
        return False


def embedded_model_config(cfg_embedded, tokenizer):
    """The Qwen3.5 text config of the tiny model (layer pattern as the real one: 3 linear : 1 full)."""
    from transformers import Qwen3_5TextConfig

    ec = _embedded(cfg_embedded)
    layer_types = ["full_attention" if (i + 1) % ec.full_attention_interval == 0 else "linear_attention"
                   for i in range(ec.num_hidden_layers)]
    return Qwen3_5TextConfig(
        vocab_size=len(tokenizer), hidden_size=ec.hidden_size, intermediate_size=ec.intermediate_size,
        num_hidden_layers=ec.num_hidden_layers, num_attention_heads=ec.num_attention_heads,
        num_key_value_heads=ec.num_key_value_heads, head_dim=ec.head_dim,
        linear_num_key_heads=ec.linear_num_key_heads, linear_num_value_heads=ec.linear_num_value_heads,
        linear_key_head_dim=ec.linear_head_dim, linear_value_head_dim=ec.linear_head_dim,
        linear_conv_kernel_dim=4, layer_types=layer_types, max_position_embeddings=ec.max_position_embeddings,
        tie_word_embeddings=ec.tie_word_embeddings, rms_norm_eps=1e-6, initializer_range=0.02,
        # the real model's partial rotary embedding (a quarter of each head), plain RoPE for text
        rope_parameters={"rope_type": "default", "rope_theta": 10_000_000, "partial_rotary_factor": 0.25},
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS), pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
        bos_token_id=None, use_cache=True, architectures=["Qwen3_5ForCausalLM"], dtype="float32",
    )


def init_model(config, seed: int):
    """A randomly initialised Qwen3_5ForCausalLM, the same weights for the same seed."""
    import torch
    from transformers import Qwen3_5ForCausalLM

    torch.manual_seed(seed)
    model = Qwen3_5ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    return model


def build_embedded_model(out_dir: str | os.PathLike, texts: Iterable[str] | None = None, cfg=None,
                         train_domain: bool = False) -> Path:
    """Tokenizer + randomly initialised tiny model saved in `out_dir`; loadable with Auto* classes.

    `texts` default to the answers of the repo's raw iCliniq file (enough for a throw-away
    model in a test or benchmark). `cfg` is the PipelineConfig or its `embedded` section.
    With `train_domain`, the domain-base training runs too (see `train_domain_base`).
    """
    ec = _embedded(cfg)
    if texts is None:
        from healthai.config import REPO_DIR

        texts = read_answers(REPO_DIR / "data" / "raw" / "icliniq_2k_chat.jsonl")
    texts = list(texts)
    t0 = time.perf_counter()
    tokenizer = build_tokenizer([t if isinstance(t, str) else QA_SEPARATOR.join(t) for t in texts], ec)
    model = init_model(embedded_model_config(ec, tokenizer), ec.seed)
    total, _ = count_params(model)
    log.info("tiny Qwen3.5 model: %s params, vocab %d, layers %s (built in %.1f s)", f"{total:,}",
             len(tokenizer), model.config.layer_types, time.perf_counter() - t0)
    out = save_model(model, tokenizer, Path(out_dir))
    if train_domain:
        train_domain_base(out, texts, ec)
    return out


def domain_blocks(texts: list, tokenizer, block_size: int, max_tokens: int, seed: int = 0,
                  answer_start_weight: float = 1.0) -> "Any":
    """Texts in a seeded random order, each ended by <|endoftext|>, packed into blocks of block_size,
    capped at max_tokens. A text may be a (question, answer) pair, written "question\n\nanswer" with
    the loss of the answer's first token weighted by answer_start_weight (the urgent rule's decision).
    A text that fits in a block never straddles two (an urgent-style text needs its question in the
    context of its answer's first token): the rest of the block is padded, with weight 0. A longer
    text starts a fresh block and runs on. Returns (input_ids, weights); weight 0 = no loss."""
    import random

    import torch

    eot = tokenizer.convert_tokens_to_ids(PAD)
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)  # the cap takes a sample of every source, not the first file
    ids: list[int] = []
    weights: list[float] = []
    for i in order:
        text = texts[i]
        if isinstance(text, tuple):
            head = tokenizer(text[0] + QA_SEPARATOR, add_special_tokens=False).input_ids
            tail = tokenizer(text[1], add_special_tokens=False).input_ids + [eot]
            piece, piece_w = head + tail, [1.0] * (len(head) + len(tail))
            piece_w[len(head)] = answer_start_weight
        else:
            piece = tokenizer(text, add_special_tokens=False).input_ids + [eot]
            piece_w = [1.0] * len(piece)
        room = -len(ids) % block_size
        if len(piece) > room and room:  # would straddle: pad to the next block
            ids.extend([eot] * room)
            weights.extend([0.0] * room)
        ids.extend(piece)
        weights.extend(piece_w)
        if len(ids) >= max_tokens:
            break
    n = min(len(ids), max_tokens) // block_size
    if n == 0:
        raise InputError(f"the answer corpus has {len(ids)} tokens, fewer than one block of {block_size}")
    return (torch.tensor(ids[: n * block_size], dtype=torch.long).view(n, block_size),
            torch.tensor(weights[: n * block_size], dtype=torch.float32).view(n, block_size))


def weighted_lm_loss(model, input_ids, weights) -> "Any":
    """Next-token cross-entropy, each target token weighted; normalised by the number of targets
    with a loss, so that a weight > 1 adds signal rather than diluting the rest."""
    import torch

    logits = model(input_ids=input_ids).logits[:, :-1].float()
    target, w = input_ids[:, 1:], weights[:, 1:]
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                           reduction="none")
    return (ce * w.reshape(-1)).sum() / (w > 0).sum().clamp(min=1)


def train_step(model, opt, sched, blocks, weights) -> float:
    """One optimizer step on the weighted LM loss, gradients clipped at 1.0; returns the loss.
    The domain pass here and `make base`'s pretraining share it."""
    import torch

    loss = weighted_lm_loss(model, blocks, weights)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def train_domain_base(folder: str | os.PathLike, texts: list[str], cfg=None, progress: bool = True) -> dict:
    """Full fine-tune of the model in `folder` as a plain causal LM on `texts`; saved back in place.

    A readable loop (AdamW, warm-up + cosine, fixed seed and data order) rather than a Trainer:
    the data are fixed-size blocks with no padding, and the result is the same on every run.
    """
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ec = _embedded(cfg)
    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    blocks, block_weights = domain_blocks(texts, tokenizer, ec.domain_block_size, ec.domain_max_tokens, ec.seed,
                                          ec.urgent_style_weight)
    gen = torch.Generator().manual_seed(ec.seed)
    per_epoch = math.ceil(len(blocks) / ec.domain_batch_size)
    total_steps = max(1, round(per_epoch * ec.domain_epochs)) if ec.domain_epochs > 0 else 0
    stats = {"blocks": len(blocks), "block_size": ec.domain_block_size, "steps": total_steps,
             "epochs": ec.domain_epochs, "learning_rate": ec.domain_learning_rate, "losses": []}
    if total_steps == 0:
        return stats
    torch.manual_seed(ec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=ec.domain_learning_rate, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, int(total_steps * ec.domain_warmup_ratio))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    t0, step, tokens, order = time.perf_counter(), 0, 0, torch.empty(0, dtype=torch.long)
    bar = tqdm(total=total_steps, desc="domain base", disable=not progress, file=sys.stderr)
    while step < total_steps:
        if len(order) == 0:
            order = torch.randperm(len(blocks), generator=gen)
        idx, order = order[: ec.domain_batch_size], order[ec.domain_batch_size:]
        batch = blocks[idx]
        value = train_step(model, opt, sched, batch, block_weights[idx])
        step += 1
        tokens += batch.numel()
        stats["losses"].append(round(value, 4))
        bar.set_postfix(loss=f"{value:.3f}")
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    tail = stats["losses"][-max(1, per_epoch // 4):]
    stats.update(seconds=round(seconds, 1), tokens=tokens, tokens_per_s=round(tokens / seconds, 1),
                 first_loss=stats["losses"][0], final_loss=round(sum(tail) / len(tail), 4))
    log.info("domain base: %d steps, %d tokens in %.1f s (%.0f tokens/s), loss %.2f -> %.2f", total_steps, tokens,
             seconds, tokens / seconds, stats["first_loss"], stats["final_loss"])
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    return stats
