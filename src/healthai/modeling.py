"""The embedded base model (a tiny Qwen3.5-architecture stand-in) and the one model loader.

    tokenizer = build_tokenizer(texts, cfg.embedded)         # byte-level BPE + Qwen special tokens + template
    folder = build_embedded_model(out_dir, texts, cfg)       # random init, safetensors + tokenizer + template
    stats = train_domain_base(folder, texts, cfg)            # full fine-tune as a causal LM on question+answer texts
    model, tokenizer = load_model_and_tokenizer(path, cfg)   # every stage loads through this (validated)

    python -m healthai.modeling check DIR                    # validate a model folder (exit 1 + one line if bad)

The tiny model has the real Qwen3.5 text architecture (`Qwen3_5TextConfig`: Gated DeltaNet
linear-attention layers, every `full_attention_interval`-th layer full attention) at a size
that trains on 2 CPU cores in minutes. It is NOT Qwen: its weights start random (seeded) and
learn only from the curated answers here. Its tokenizer is byte-level BPE with Qwen's
pre-tokenizer regex and special tokens, and its chat template is the real Qwen3.5 one with
`{% generation %}` markers (see templates/SOURCES.md), so every code path (chat template,
assistant-only loss, LoRA target names, generation) is the cluster's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from healthai.errors import InputError, ModelError

log = logging.getLogger("healthai.modeling")

TEMPLATES = Path(__file__).parent / "templates"
TRAINING_TEMPLATE = TEMPLATES / "qwen3_5_training.jinja"
"""The real Qwen3.5 chat template with generation markers; thinking off by default."""

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
QA_SEPARATOR = "\n\n"  # a (question, answer) base-corpus text is written question + QA_SEPARATOR + answer
# Qwen2/3/3.5 pre-tokenizer (tokenizer_config.json "pretokenize_regex").
PRETOKENIZE_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
                     r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CHECK_TEXT = "Hello doctor, I have had a headache for three days."
MODEL_CARD = "README.md"


# -- corpus ----------------------------------------------------------------------------------
def answers_of(record: dict) -> list[str]:
    """The assistant answers of one record: curated/merged `messages`, or raw iCliniq `chat[].ideal`."""
    out = []
    for msg in record.get("messages") or []:
        if isinstance(msg, dict) and msg.get("role") == "assistant" and isinstance(msg.get("content"), str):
            out.append(msg["content"])
    for turn in record.get("chat") or []:
        if isinstance(turn, dict) and isinstance(turn.get("ideal"), str):
            out.append(turn["ideal"])
    return [a.strip() for a in out if a and a.strip()]


def read_corpus(path: str | os.PathLike, max_record_bytes: int = 1_000_000) -> list[dict]:
    """Records of a JSONL corpus (bad lines are logged and skipped: the corpus only shapes a base)."""
    from healthai.io import BadLine, iter_jsonl

    path = Path(path)
    if not path.is_file():
        raise InputError("answer corpus not found", file=str(path))
    records, bad = [], 0
    for item in iter_jsonl(path, max_record_bytes=max_record_bytes):
        if isinstance(item, BadLine):
            bad += 1
            log.warning("%s: %s (%s), skipped", item.where(), item.reason, item.detail)
            continue
        records.append(item.record)
    if bad:
        log.warning("%s: %d bad line(s) skipped", path, bad)
    return records


def read_answers(path: str | os.PathLike, max_record_bytes: int = 1_000_000) -> list[str]:
    """Assistant answers of a JSONL corpus (`read_corpus`); none at all is an error."""
    texts = [answer for record in read_corpus(path, max_record_bytes) for answer in answers_of(record)]
    if not texts:
        raise InputError("no assistant answers in the corpus", file=str(path))
    return texts


def corpus_path(cfg) -> Path:
    """`embedded.corpus` (curated answers), else the fallback corpus with a warning."""
    primary = cfg.resolve(cfg.embedded.corpus)
    if primary.is_file():
        return primary
    if cfg.embedded.fallback_corpus:
        fallback = cfg.resolve(cfg.embedded.fallback_corpus)
        if fallback.is_file():
            log.warning("%s does not exist yet (run stage 1, 1.Initial-curation); using the raw answers of %s",
                        primary, fallback)
            return fallback
    raise InputError("curated corpus not found: run stage 1 (cd 1.Initial-curation && sbatch run-curation.sh)",
                     file=str(primary))


# -- tokenizer -------------------------------------------------------------------------------
def _embedded(cfg):
    """Accept the whole PipelineConfig or its `embedded` section (None = defaults)."""
    if cfg is None:
        from healthai.config.modeling import EmbeddedModelConfig

        return EmbeddedModelConfig()
    return getattr(cfg, "embedded", cfg)


def training_chat_template() -> str:
    return TRAINING_TEMPLATE.read_text(encoding="utf-8")


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


# -- model -----------------------------------------------------------------------------------
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


def count_params(model) -> tuple[int, int]:
    """(total, trainable) parameters, shared (tied) tensors counted once."""
    seen, total, trainable = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def save_model(model, tokenizer, out_dir: Path) -> Path:
    """safetensors weights + config + generation config + tokenizer.json + chat_template.jinja."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if not (out_dir / "chat_template.jinja").is_file():  # older transformers kept it in tokenizer_config.json
        (out_dir / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    return out_dir


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


# -- domain-base training --------------------------------------------------------------------
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
        loss = weighted_lm_loss(model, batch, block_weights[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens += batch.numel()
        value = float(loss.detach())
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


def derive_tokenizer_json(folder: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Write tokenizer.json for a Qwen folder that has only vocab.json + merges.txt.

    AutoTokenizer on such a folder is broken in transformers 5.2x (Qwen3_5Tokenizer ignores
    vocab/merges and encodes to []); Qwen2Tokenizer reads them, and save_pretrained writes a
    tokenizer.json that AutoTokenizer then loads correctly. Writes into `out_dir` (default: `folder`).
    """
    from transformers import Qwen2Tokenizer

    folder = Path(folder)
    out = Path(out_dir) if out_dir else folder
    for name in ("vocab.json", "merges.txt"):
        if not (folder / name).is_file():
            raise ModelError(f"cannot derive tokenizer.json: no {name}", file=str(folder))
    tok = Qwen2Tokenizer.from_pretrained(folder)
    if not tok(CHECK_TEXT, add_special_tokens=False).input_ids:
        raise ModelError("the vocab/merges tokenizer encodes a test sentence to nothing", file=str(folder))
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)
    return out / "tokenizer.json"


# -- validation and loading ------------------------------------------------------------------
def check_model_folder(path: str | os.PathLike, load_tokenizer: bool = True) -> dict:
    """Raise ModelError naming the first missing piece of a model folder; else return what was found.

    Checks: config.json (readable, with a vocab size), weights as *.safetensors (any *.bin /
    *.pt is refused: only safetensors are loaded), a tokenizer that encodes a test string to
    a non-empty sequence with a size that fits the config's vocabulary, a chat template.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelError("model folder not found (nothing is downloaded at run time; build or download it first)",
                         file=str(path))
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelError("model folder has no config.json", file=str(path))
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"config.json is not readable JSON ({exc})", file=str(cfg_file)) from None
    text_cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    vocab = text_cfg.get("vocab_size") or config.get("vocab_size")
    if not isinstance(vocab, int) or vocab <= 0:
        raise ModelError("config.json has no vocab_size", file=str(cfg_file))
    weights = sorted(p.name for p in path.glob("*.safetensors"))
    if not weights:
        unsafe = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        extra = f" (found {', '.join(unsafe[:3])}: only safetensors are loaded)" if unsafe else ""
        raise ModelError(f"model folder has no *.safetensors weights{extra}", file=str(path))
    if not (path / "tokenizer.json").is_file():
        raise ModelError("model folder has no tokenizer.json (without it transformers builds a tokenizer that "
                         "encodes to nothing; derive it with `python -m healthai.modeling derive-tokenizer DIR`)",
                         file=str(path))
    info = {"path": str(path), "model_type": text_cfg.get("model_type") or config.get("model_type"),
            "vocab_size": vocab, "weights": weights}
    template = path / "chat_template.jinja"
    has_template = template.is_file()
    if not load_tokenizer:
        if not has_template and "chat_template" not in _read_json(path / "tokenizer_config.json"):
            raise ModelError("model folder has no chat template (chat_template.jinja)", file=str(path))
        return info
    tokenizer = _load_tokenizer(path)
    ids = tokenizer(CHECK_TEXT, add_special_tokens=False).input_ids
    if not ids:
        raise ModelError("the tokenizer encodes a test sentence to nothing (a broken tokenizer.json?)",
                         file=str(path / "tokenizer.json"))
    n = len(tokenizer)
    if n > vocab or max(ids) >= vocab:
        raise ModelError(f"the tokenizer has {n} tokens but the model's vocab_size is {vocab} "
                         f"(tokenizer and weights of different models?)", file=str(path))
    if vocab - n > max(1024, vocab // 16):
        raise ModelError(f"the tokenizer has only {n} tokens for a vocab_size of {vocab} "
                         f"(a stub tokenizer?)", file=str(path))
    if not tokenizer.chat_template:
        raise ModelError("model folder has no chat template (chat_template.jinja)", file=str(path))
    info.update(tokenizer_size=n, test_ids=len(ids), tokenizer=tokenizer)
    return info


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad folder, said in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load the tokenizer: {first}", file=str(path)) from None


def resolve_device(site) -> str:
    """site.device: auto -> cuda when a GPU is visible, else cpu."""
    import torch

    device = getattr(site, "device", "auto")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("site.device is cuda but no GPU is visible (use --site local or site.device=auto)")
    return device


def resolve_dtype(site, device: str):
    """site.dtype: auto -> bfloat16 on GPU, float32 on CPU."""
    import torch

    name = getattr(site, "dtype", "auto")
    if name == "auto":
        name = "bfloat16" if device == "cuda" else "float32"
    return getattr(torch, name)


def _is_config(obj) -> bool:
    return hasattr(obj, "site") and hasattr(obj, "project_path")


def load_model_and_tokenizer(path, cfg=None, device: str | None = None, dtype=None):
    """Validate the folder, then load (model, tokenizer) on the site's device and dtype. No remote code.

    The argument order (path, cfg) or (cfg, path) is accepted: callers written either way work.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if _is_config(path) and not _is_config(cfg):
        path, cfg = cfg, path
    info = check_model_folder(path)
    tokenizer = info["tokenizer"]
    site = getattr(cfg, "site", None)
    device = device or resolve_device(site)
    dtype = dtype or resolve_dtype(site, device)
    t0 = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(Path(path), dtype=dtype, use_safetensors=True,
                                                     trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - shapes/keys that do not match: a bad folder, one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load the model: {first}", file=str(path)) from None
    model.to(device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    log.info("model %s loaded on %s (%s) in %.1f s; linear-attention fast path: %s", path, device,
             str(dtype).replace("torch.", ""), time.perf_counter() - t0, fast_path_active(model))
    return model, tokenizer


def fast_path_active(model) -> bool | None:
    """Whether Qwen3.5's Gated DeltaNet layers use the fla / causal-conv1d kernels (None: no such layers)."""
    for module in model.modules():
        if type(module).__name__.endswith("GatedDeltaNet"):
            return getattr(module, "causal_conv1d_fn", None) is not None and \
                getattr(module, "chunk_gated_delta_rule", None).__module__.startswith("fla")
    return None


# -- the stage ------------------------------------------------------------------------------
def write_model_card(folder: Path, cfg, corpus: Path, n_answers: int, total_params: int, stats: dict) -> Path:
    ec = cfg.embedded
    text = f"""# Embedded base model (tiny Qwen3.5-architecture stand-in)

**This is not Qwen.** It is a small model with the Qwen3.5 *text architecture* that this
pipeline builds and trains **from scratch, here, on {n_answers} medical answers**
(`{corpus.name}`), so that the whole pipeline (tokenisation, chat template, LoRA on the
Gated-DeltaNet layers, assistant-only loss, generation, evaluation) runs on a laptop or CI
box with no GPU and no download. On Deucalion the base model is Qwen3.5-9B instead.

| | |
|---|---|
| architecture | `Qwen3_5ForCausalLM` ({ec.num_hidden_layers} layers: {', '.join(_layer_summary(ec))}) |
| parameters | {total_params:,} (hidden {ec.hidden_size}, MLP {ec.intermediate_size}, tied embeddings: {ec.tie_word_embeddings}) |
| tokenizer | byte-level BPE, {ec.vocab_size} tokens trained on the same answers, Qwen pre-tokenizer and the 33 Qwen special tokens |
| chat template | the real Qwen3.5 template with `{{% generation %}}` markers, thinking off (`chat_template.jinja`) |
| weights | random init (seed {ec.seed}), then full fine-tune as a plain causal LM on the answers |
| domain training | {stats.get('steps', 0)} steps of {ec.domain_batch_size}x{ec.domain_block_size} tokens ({ec.domain_epochs} epochs over up to {ec.domain_max_tokens:,} tokens), lr {ec.domain_learning_rate}, {stats.get('seconds', 0)} s on {os.cpu_count()} CPU cores |
| loss | {stats.get('first_loss', '-')} -> {stats.get('final_loss', '-')} (cross-entropy per token) |

## What its results show
- That the pipeline's code paths work end to end with the real architecture and template.
- Whether fine-tuning changes the *form* of the answers: the closing sentence, brevity, the
  chat format (the base never saw a chat turn, so it does not stop by itself), and whether the
  urgent prefix is learned (a first-token decision: hard for a model this small).

## What they do not show
- Anything about medical correctness or safety: the model has ~{total_params / 1e6:.1f}M parameters and
  saw a few hundred thousand tokens; its text is fluent-looking domain babble, not advice.
- How Qwen3.5-9B would score: absolute numbers (loss, rates) do not transfer. Never use it to
  answer a real patient.
"""
    path = folder / MODEL_CARD
    path.write_text(text, encoding="utf-8")
    return path


def _layer_summary(ec) -> list[str]:
    full = sum(1 for i in range(ec.num_hidden_layers) if (i + 1) % ec.full_attention_interval == 0)
    return [f"{ec.num_hidden_layers - full} Gated DeltaNet linear attention", f"{full} full attention"]


def build_base_stage(cfg, force: bool = False) -> dict | None:
    """The stage: tokenizer + tiny model + domain training into $PROJECT_DIR/models/embedded-base."""
    import shutil
    import tempfile

    from healthai.stage import StageRun

    corpus = corpus_path(cfg)
    inputs = [corpus]
    if cfg.embedded.urgent_style_corpus:  # its questions must not include val/test ones: the splits are inputs
        from healthai.urgent_rule import held_out_split_paths

        splits = held_out_split_paths(cfg)
        missing = [p for p in splits if not p.is_file()]
        if missing:
            raise InputError("embedded.urgent_style_corpus needs the stage-3 splits to keep their questions out of "
                             "the base: run stage 3 first (cd 3.Merge && sbatch run-merge.sh), or "
                             "--set embedded.urgent_style_corpus=false", file=str(missing[0]))
        inputs += splits
    with StageRun("base-model", cfg, inputs=inputs, config_sections=["embedded"], force=force,
                  output_subdir="models/embedded-base") as run:
        if run.up_to_date:
            return run.previous
        t0 = time.perf_counter()
        if cfg.embedded.urgent_style_corpus:  # the urgent-rule lever chosen on val: healthai.urgent_rule
            from healthai.urgent_rule import urgent_style_texts

            texts = urgent_style_texts(corpus, cfg)
        else:
            texts = read_answers(corpus, cfg.project.max_record_bytes)
        print(f"[base-model] {len(texts)} answers from {corpus}")
        # build in a sibling temp folder, move files in at the end: a crash never leaves half a model
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=run.out_dir))
        try:
            build_embedded_model(tmp, texts, cfg)
            stats = train_domain_base(tmp, texts, cfg)
            from transformers import AutoModelForCausalLM

            total, _ = count_params(AutoModelForCausalLM.from_pretrained(tmp))
            write_model_card(tmp, cfg, corpus, len(texts), total, stats)
            for f in sorted(tmp.iterdir()):
                os.replace(f, run.out_dir / f.name)
                run.add_output(run.out_dir / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        check_model_folder(run.out_dir)
        losses = stats.pop("losses", [])
        run.stats.update(answers=len(texts), params=total, seconds=round(time.perf_counter() - t0, 1),
                         domain=stats, loss_curve=losses[:: max(1, len(losses) // 50)])
        run.conserve(n_in=len(texts), kept=len(texts), rejected=0)
        print(f"[base-model] {total:,} params; domain loss {stats.get('first_loss')} -> {stats.get('final_loss')} "
              f"in {stats.get('seconds')} s; built in {run.stats['seconds']} s -> {run.out_dir}")
    return run.previous


def main(argv: list[str] | None = None) -> int:
    """`python -m healthai.modeling check DIR`: validate a model folder as every stage does."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m healthai.modeling", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    chk = sub.add_parser("check", help="validate a model folder (config, safetensors, tokenizer, template)")
    chk.add_argument("folder")
    der = sub.add_parser("derive-tokenizer", help="write tokenizer.json from vocab.json + merges.txt (Qwen)")
    der.add_argument("folder")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.cmd == "derive-tokenizer":
        try:
            print(f"wrote {derive_tokenizer_json(args.folder)}")
        except ModelError as exc:
            print(f"error: {exc.one_line()}", file=sys.stderr)
            return 1
        return 0
    try:
        info = check_model_folder(args.folder)
    except ModelError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 1
    print(f"ok: {info['path']}: {info['model_type']}, vocab {info['vocab_size']}, tokenizer {info['tokenizer_size']} "
          f"tokens, weights {', '.join(info['weights'][:3])}{' ...' if len(info['weights']) > 3 else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
