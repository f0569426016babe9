"""The base or the fine-tuned model for answering: load, attach the adapter, prompts, interactive mode, merge.

    model, tokenizer = load_for_inference(cfg, "ft")          # base + LoRA adapter on top
    interactive(model, tokenizer, cfg, "ft")                  # type a question, the answer streams
    merge_adapter(cfg, out_dir)                               # one plain folder for serving
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence, TextIO

from healthai.config import PipelineConfig
from healthai.errors import ConfigError, InputError, ModelError
from healthai.model.generation import Generation, stream_answer

log = logging.getLogger("healthai.inference")


MODES = ("base", "ft")


ADAPTER_COMMAND = "cd fine-tuning && sbatch run-ft.sh"
"""The command that creates the adapter (named in the missing-adapter error)."""


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


QUIT_WORDS = {"exit", "quit", ":q", "/bye"}


def base_path(cfg: PipelineConfig) -> Path:
    return cfg.resolve(cfg.models.base)


def adapter_path(cfg: PipelineConfig) -> Path:
    return cfg.resolve(cfg.models.adapter)


def check_adapter(path: Path) -> None:
    """Raise ModelError naming the missing path and the command that creates the adapter."""
    if not path.is_dir():
        raise ModelError(f"no fine-tuned adapter here yet; train it first with `{ADAPTER_COMMAND}` "
                         f"(or set models.adapter)", file=str(path))
    for name in ADAPTER_FILES:
        if not (path / name).is_file():
            raise ModelError(f"the adapter folder has no {name} (an unfinished or old run?); "
                             f"train it again with `{ADAPTER_COMMAND}`", file=str(path / name))


def check_base(path: Path) -> None:
    if not (path / "config.json").is_file():
        hint = ("build the embedded model first (cd fine-tuning && sbatch run-build-model.sh)"
                if "embedded" in path.name else "download it on a login node first (bash slurm/download-models.sh)")
        raise ModelError(f"no base model here; {hint} or set models.base", file=str(path))


def load_base(cfg: PipelineConfig):
    """The base causal LM and its tokenizer, through the pipeline's one shared loader."""
    path = base_path(cfg)
    check_base(path)
    from healthai.model.folder import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(cfg, path)
    model.eval()
    return model, tokenizer


def attach_adapter(model, cfg: PipelineConfig):
    """The LoRA adapter of `models.adapter` on top of `model` (inference only)."""
    from peft import PeftModel

    path = adapter_path(cfg)
    check_adapter(path)
    t0 = time.perf_counter()
    model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    from healthai.model.lora import TOKEN_ROWS, apply_token_rows

    if apply_token_rows(model, path):  # finetune.train_format_rows: trained format-token embedding rows
        log.info("trained format-token embedding rows put on the base (%s)", TOKEN_ROWS)
    model.eval()
    log.info("adapter %s loaded in %.2f s", path, time.perf_counter() - t0)
    return model


def load_for_inference(cfg: PipelineConfig, mode: str):
    """(model, tokenizer) for mode 'base' or 'ft'. The adapter is checked before the base is loaded,
    so a missing adapter fails in a second, not after loading 18 GB."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if mode == "ft":
        check_adapter(adapter_path(cfg))
    model, tokenizer = load_base(cfg)
    if mode == "ft":
        model = attach_adapter(model, cfg)
    return model, tokenizer


def read_prompts_file(path: str | os.PathLike) -> list[str]:
    """Questions from a file: JSONL (`prompt`, `question` or the user turn of `messages`) when the
    name ends in .jsonl, else one question per non-blank line ('#' starts a comment line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("prompts file not found", file=str(path))
    questions: list[str] = []
    if path.suffix == ".jsonl":
        from healthai.pipeline.io import BadLine, iter_jsonl

        for item in iter_jsonl(path):
            if isinstance(item, BadLine):
                raise InputError(f"{item.reason}: {item.detail}", file=item.file, line=item.line)
            question = question_of(item.record)
            if not question:
                raise InputError("no 'prompt', 'question' or user message in this line", file=item.file,
                                 line=item.line)
            questions.append(question)
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None
        questions = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not questions:
        raise InputError("the prompts file holds no prompt", file=str(path))
    return questions


def question_of(record: dict) -> str:
    """The question of a record: `prompt`, `question`, or the first user message."""
    for key in ("prompt", "question"):
        if isinstance(record.get(key), str) and record[key].strip():
            return record[key].strip()
    for msg in record.get("messages") or []:
        if isinstance(msg, dict) and msg.get("role") == "user" and isinstance(msg.get("content"), str):
            return msg["content"].strip()
    return ""


def resolve_prompts(cfg: PipelineConfig, prompts: Sequence[str] = (), prompts_file: str | None = None) -> list[str]:
    """--prompt wins, then --prompts-file, then inference.prompts_file, then inference.prompts."""
    if prompts:
        cleaned = [p.strip() for p in prompts if p.strip()]
        if not cleaned:
            raise ConfigError("--prompt is empty")
        return cleaned
    if prompts_file:
        return read_prompts_file(prompts_file)
    if cfg.inference.prompts_file:
        return read_prompts_file(cfg.resolve(cfg.inference.prompts_file))
    return list(cfg.inference.prompts)


def interactive(model, tokenizer, cfg: PipelineConfig, mode: str, read: Callable[[str], str] = input,
                out: TextIO | None = None) -> int:
    """Type a question, get the answer streamed; an empty line, 'exit', 'quit' or Ctrl-D ends."""
    out = out or sys.stdout
    out.write(f"[{mode}] Type a question and press Enter (empty line, 'exit' or Ctrl-D to stop).\n")
    out.flush()
    answered = 0
    while True:
        try:
            question = read("\nyou> ").strip()
        except EOFError:
            break
        if not question or question.lower() in QUIT_WORDS:
            break
        out.write(f"{mode}> ")
        out.flush()
        gen = stream_answer(model, tokenizer, question, cfg, write=lambda s: (out.write(s), out.flush()))
        out.write(f"\n    ({gen.new_tokens} tokens, first after {gen.first_token_s or 0:.2f} s, "
                  f"{gen.seconds:.1f} s)\n")
        out.flush()
        answered += 1
    return answered


def print_answers(gens: Sequence[Generation], mode: str, out: TextIO | None = None) -> None:
    """The user-facing block run-inference.sh prints: each question, then the model's answer."""
    out = out or sys.stdout
    for i, g in enumerate(gens, 1):
        out.write(f"\n--- [{mode}] prompt {i}/{len(gens)} ---\nQ: {g.question}\nA: {g.answer}\n")
    tokens = sum(g.new_tokens for g in gens)
    seconds = sum(g.seconds for g in gens)
    out.write(f"\n[{mode}] {len(gens)} answers, {tokens} new tokens in {seconds:.1f} s\n")
    out.flush()


def merge_adapter(cfg: PipelineConfig, out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Base + adapter merged into one plain model folder (safetensors, tokenizer, chat template).

    The folder loads with `AutoModelForCausalLM.from_pretrained` and no PEFT, which is what serving
    stacks want (vLLM's LoRA path is fragile on Qwen3.5's linear-attention layers; llama.cpp needs
    a single model to convert to GGUF). Written to a temporary folder and renamed when complete.
    """
    out = Path(out_dir).resolve()
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; choose another folder or pass --force to replace it")
    check_adapter(adapter_path(cfg))
    model, tokenizer = load_base(cfg)
    model = attach_adapter(model, cfg)
    t0 = time.perf_counter()
    merged = model.merge_and_unload()
    tmp = out.with_name(f".{out.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o770)
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if not (tmp / "chat_template.jinja").is_file() and getattr(tokenizer, "chat_template", None):
            (tmp / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
        (tmp / "README.md").write_text(merged_model_card(cfg), encoding="utf-8")
        if not list(tmp.glob("*.safetensors")):
            raise ModelError("save_pretrained wrote no safetensors file", file=str(tmp))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("merged model written to %s in %.1f s", out, time.perf_counter() - t0)
    return out


def merged_model_card(cfg: PipelineConfig) -> str:
    return (f"# Merged health-assistant model\n\n"
            f"- base: `{base_path(cfg)}`\n- LoRA adapter merged in: `{adapter_path(cfg)}`\n"
            f"- written: {time.strftime('%Y-%m-%d %H:%M')}\n\n"
            "Plain transformers folder (safetensors + tokenizer + chat template): "
            "`AutoModelForCausalLM.from_pretrained(path)`, no PEFT needed.\n"
            "Prompt it like training: the system prompt of `filter.assistant_system` and "
            "`enable_thinking=False` in the chat template.\n"
            "For llama.cpp serving convert it to GGUF first (see inference/README.md).\n")
