"""A model folder: check it, load it, derive its tokenizer (the bottom of the model side).

    info = check_model_folder(path)                       # ModelError naming the first missing piece
    model, tokenizer = load_model_and_tokenizer(path, cfg)   # every stage loads through this
    python -m healthai.model.folder check DIR             # the same check from the shell (exit 1 + one line)

Only safetensors are loaded and no remote code is run. The chat template used for training
(the real Qwen3.5 text with `{% generation %}` markers, templates/SOURCES.md) lives here because
every layer above (embedded base, trainer) reads it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from healthai.errors import ModelError

log = logging.getLogger("healthai.modeling")


TEMPLATES = Path(__file__).parent / "templates"


TRAINING_TEMPLATE = TEMPLATES / "qwen3_5_training.jinja"
"""The real Qwen3.5 chat template with generation markers; thinking off by default."""


CHECK_TEXT = "Hello doctor, I have had a headache for three days."


def training_chat_template() -> str:
    return TRAINING_TEMPLATE.read_text(encoding="utf-8")


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
                         "encodes to nothing; derive it with `python -m healthai.model.folder derive-tokenizer DIR`)",
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


def main(argv: list[str] | None = None) -> int:
    """`python -m healthai.model.folder check DIR`: validate a model folder as every stage does."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m healthai.model.folder", description=main.__doc__)
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
