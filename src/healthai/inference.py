"""Answer prompts with the base or the fine-tuned model; evaluate both; merge the adapter for serving.

    model, tokenizer = load_for_inference(cfg, "ft")          # base + LoRA adapter on top
    answers = generate_answers(model, tokenizer, questions, cfg)   # batched, left padding
    stream_answer(model, tokenizer, question, cfg)            # token by token (interactive mode)
    evaluate(cfg)                                             # report.md/json/png in $PROJECT_DIR/inference
    merge_adapter(cfg, out_dir)                               # one plain folder for serving

Prompts are built exactly as in training: the system prompt `filter.assistant_system`, the
model's own chat template, thinking disabled (`enable_thinking=False`). Greedy decoding by
default, so a rerun gives the same answers. A batch of one prompt is never padded (some
transformers 5.x releases did not mask a left-padded single prompt).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence, TextIO

from healthai.config import PipelineConfig
from healthai.errors import ConfigError, InputError, ModelError

log = logging.getLogger("healthai.inference")

MODES = ("base", "ft")
ADAPTER_COMMAND = "cd fine-tuning && sbatch run-ft.sh"
"""The command that creates the adapter (named in the missing-adapter error)."""
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)
QUIT_WORDS = {"exit", "quit", ":q", "/bye"}


@dataclass
class Generation:
    """One answered prompt."""

    question: str
    answer: str
    new_tokens: int
    seconds: float
    first_token_s: float | None = None


# -- model loading ---------------------------------------------------------------------------
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
    from healthai.modeling import load_model_and_tokenizer

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
    from healthai.training import TOKEN_ROWS, apply_token_rows

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


# -- prompts ---------------------------------------------------------------------------------
def read_prompts_file(path: str | os.PathLike) -> list[str]:
    """Questions from a file: JSONL (`prompt`, `question` or the user turn of `messages`) when the
    name ends in .jsonl, else one question per non-blank line ('#' starts a comment line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("prompts file not found", file=str(path))
    questions: list[str] = []
    if path.suffix == ".jsonl":
        from healthai.io import BadLine, iter_jsonl

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


def build_messages(question: str, system: str) -> list[dict]:
    """[system, user] exactly as the training records carry them (stage 2 adds the same system prompt)."""
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def render_prompt(tokenizer, question: str, cfg: PipelineConfig) -> str:
    """The chat-template text the model sees: training's system prompt, generation prompt, no thinking."""
    return tokenizer.apply_chat_template(build_messages(question, cfg.filter.assistant_system), tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)


def clean_answer(text: str) -> str:
    """Decoded answer without an (empty) think block and surrounding whitespace."""
    return _THINK.sub("", text).strip()


# -- generation ------------------------------------------------------------------------------
def stop_token_ids(tokenizer) -> list[int]:
    """End of turn and end of text: generation stops at either."""
    ids = []
    for tok in ("<|im_end|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id:
            ids.append(tid)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def generation_kwargs(cfg: PipelineConfig, tokenizer) -> dict:
    """generate() settings from the config: greedy unless inference.do_sample."""
    icfg = cfg.inference
    stops = stop_token_ids(tokenizer)
    kwargs = {"max_new_tokens": icfg.max_new_tokens, "do_sample": icfg.do_sample,
              "eos_token_id": stops, "pad_token_id": pad_token_id(tokenizer),
              "repetition_penalty": icfg.repetition_penalty}
    if icfg.do_sample:
        kwargs.update(temperature=icfg.temperature, top_p=icfg.top_p)
    else:  # silence "temperature is set but do_sample=False" from the model's generation_config
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def pad_token_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    stops = stop_token_ids(tokenizer)
    if not stops:
        raise ModelError("the tokenizer has neither a pad nor an end-of-text token")
    return stops[-1]


def encode_prompts(tokenizer, texts: Sequence[str], device) -> dict:
    """Tokenize rendered prompts: left padding for two or more, none for a single prompt
    (a batch of ONE left-padded prompt was not masked in some transformers 5.x versions)."""
    if len(texts) == 1:
        enc = tokenizer(list(texts), return_tensors="pt", add_special_tokens=False)
    else:
        old = tokenizer.padding_side
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token_id = pad_token_id(tokenizer)
        try:
            enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tokenizer.padding_side = old
    return {k: v.to(device) for k, v in enc.items()}


def _count_new_tokens(row, stops: set[int]) -> int:
    n = 0
    for tid in row.tolist():
        n += 1
        if tid in stops:
            break
    return n


def _seed(cfg: PipelineConfig) -> None:
    import torch

    torch.manual_seed(cfg.inference.seed)


def generate_batch(model, tokenizer, questions: Sequence[str], cfg: PipelineConfig) -> list[Generation]:
    """One generate() call over `questions`: left padding for two or more, no padding for one."""
    import torch

    texts = [render_prompt(tokenizer, q, cfg) for q in questions]
    kwargs = generation_kwargs(cfg, tokenizer)
    enc = encode_prompts(tokenizer, texts, model.device)
    _seed(cfg)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, **kwargs)
    seconds = time.perf_counter() - t0
    new = out[:, enc["input_ids"].shape[1]:]
    stops = set(kwargs["eos_token_id"])
    gens = []
    for q, row in zip(questions, new):
        text = tokenizer.decode(row, skip_special_tokens=True)
        gens.append(Generation(q, clean_answer(text), _count_new_tokens(row, stops), seconds / len(questions)))
    return gens


def generate_answers(model, tokenizer, questions: Sequence[str], cfg: PipelineConfig,
                     batch_size: int | None = None, progress: bool = False) -> list[Generation]:
    """Answers in input order. Prompts are grouped by token length (longest first) so that a batch
    carries little padding; batch_size 1 is the one-prompt-at-a-time path."""
    from tqdm import tqdm

    size = batch_size or cfg.inference.batch_size
    if size < 1:
        raise ConfigError(f"batch size must be >= 1, got {size}")
    lengths = [len(tokenizer(render_prompt(tokenizer, q, cfg), add_special_tokens=False)["input_ids"])
               for q in questions]
    order = sorted(range(len(questions)), key=lambda i: -lengths[i])
    results: list[Generation | None] = [None] * len(questions)
    batches = [order[i:i + size] for i in range(0, len(order), size)]
    for batch in tqdm(batches, desc="generate", unit="batch", disable=not progress, leave=False):
        for idx, gen in zip(batch, generate_batch(model, tokenizer, [questions[i] for i in batch], cfg)):
            results[idx] = gen
    return [r for r in results if r is not None]


def _first_token_streamer(tokenizer):
    """A TextIteratorStreamer that also records when the first new token arrived."""
    from transformers import TextIteratorStreamer

    class Streamer(TextIteratorStreamer):
        first_token_at: float | None = None

        def put(self, value):
            if not self.next_tokens_are_prompt and self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            super().put(value)

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)


def stream_answer(model, tokenizer, question: str, cfg: PipelineConfig,
                  write: Callable[[str], object] | None = None) -> Generation:
    """Generate one answer and hand each piece of text to `write` as soon as it is decoded."""
    import torch

    write = write or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    enc = tokenizer([render_prompt(tokenizer, question, cfg)], return_tensors="pt", add_special_tokens=False)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    streamer = _first_token_streamer(tokenizer)
    kwargs = {**enc, **generation_kwargs(cfg, tokenizer), "streamer": streamer}
    error: list[BaseException] = []
    out: list = []

    def run() -> None:
        try:
            with torch.inference_mode():
                out.append(model.generate(**kwargs))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)
            streamer.end()

    _seed(cfg)
    t0 = time.perf_counter()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    pieces = []
    in_think = False
    for piece in streamer:
        if not pieces and not in_think and piece.lstrip().startswith("<think>"):
            in_think = True
        if in_think:  # an (empty) think block is never shown to the user
            if "</think>" in piece:
                in_think = False
                piece = piece.split("</think>", 1)[1].lstrip()
            else:
                continue
        if not pieces:
            piece = piece.lstrip()
        if piece:
            pieces.append(piece)
            write(piece)
    thread.join()
    if error:
        raise error[0]
    seconds = time.perf_counter() - t0
    n_new = out[0].shape[1] - enc["input_ids"].shape[1] if out else 0
    first = streamer.first_token_at - t0 if streamer.first_token_at else None
    return Generation(question, clean_answer("".join(pieces)), int(n_new), seconds, first)


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


# -- next-token probabilities (triage diagnostics) -------------------------------------------
def first_token_ids(tokenizer, words: Iterable[str]) -> dict[str, int]:
    """word -> id of the first token the model would emit to start its answer with that word."""
    ids = {}
    for word in words:
        toks = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not toks:
            raise ModelError(f"the tokenizer encodes '{word}' to nothing")
        ids[word] = toks[0]
    return ids


def next_token_probabilities(model, tokenizer, questions: Sequence[str], cfg: PipelineConfig,
                             words: Sequence[str], batch_size: int | None = None) -> list[dict[str, float]]:
    """For each question, P(first answer token = first token of each word) after the generation prompt.

    With words=["Seek"]: does the model put its mass on the urgent prefix for urgent questions only
    (it learned the rule) or on every question alike (it learned the rate)?
    """
    import torch

    ids = first_token_ids(tokenizer, words)
    size = batch_size or cfg.inference.batch_size
    results: list[dict[str, float]] = []
    for start in range(0, len(questions), size):
        texts = [render_prompt(tokenizer, q, cfg) for q in questions[start:start + size]]
        enc = encode_prompts(tokenizer, texts, model.device)
        with torch.inference_mode():
            logits = model(**enc, logits_to_keep=1).logits[:, -1, :].float()  # not [B, L, 248k] on the 9B
        probs = torch.softmax(logits, dim=-1)
        for row in probs:
            results.append({w: float(row[i]) for w, i in ids.items()})
    return results


# -- merged export ---------------------------------------------------------------------------
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


# -- evaluation ------------------------------------------------------------------------------
def split_paths(cfg: PipelineConfig) -> tuple[Path, Path]:
    split = cfg.inference.eval_split
    folder = cfg.project_path() / "3.merge"
    return folder / f"{split}.jsonl", folder / f"{split}.meta.jsonl"


def read_eval_items(cfg: PipelineConfig) -> tuple[list[dict], list[dict], int]:
    """(items, rejected, n_in) from the split and its line-aligned meta sidecar.

    An item is {"id", "question", "reference", "is_urgent", "category"}; a line without a user
    and an assistant turn, or with a meta line that is not an object with a boolean is_urgent,
    is rejected (and counted), never silently dropped.
    """
    from healthai.io import BadLine, iter_jsonl

    data_path, meta_path = split_paths(cfg)
    for p in (data_path, meta_path):
        if not p.is_file():
            raise InputError("evaluation split not found; run stage 3 first (cd 3.Merge && sbatch run-merge.sh)",
                             file=str(p))
    limit = cfg.project.max_record_bytes
    data = list(iter_jsonl(data_path, limit))
    meta = list(iter_jsonl(meta_path, limit))
    if len(data) != len(meta):
        raise InputError(f"{len(data)} lines but {meta_path.name} has {len(meta)}: the sidecar must be "
                         f"line-aligned", file=str(meta_path))
    items, rejected = [], []
    for d, m in zip(data, meta):
        if isinstance(d, BadLine):
            rejected.append(d.rejected())
            continue
        if isinstance(m, BadLine):
            rejected.append(m.rejected())
            continue
        messages = d.record.get("messages") or []
        user = next((x.get("content") for x in messages if isinstance(x, dict) and x.get("role") == "user"), None)
        ref = next((x.get("content") for x in messages if isinstance(x, dict) and x.get("role") == "assistant"), None)
        where = f"{d.file}:{d.line}"
        if not isinstance(user, str) or not user.strip() or not isinstance(ref, str):
            rejected.append({"id": where, "reason": "bad_structure", "detail": "no user or assistant message",
                             "record": d.record})
            continue
        if not isinstance(m.record.get("is_urgent"), bool):
            rejected.append({"id": f"{m.file}:{m.line}", "reason": "bad_meta",
                             "detail": "is_urgent missing or not true/false", "record": m.record})
            continue
        items.append({"id": m.record.get("id") or where, "question": user.strip(), "reference": ref.strip(),
                      "is_urgent": m.record["is_urgent"], "category": m.record.get("category")})
    return items, rejected, len(data)


def read_triage_set(cfg: PipelineConfig) -> list[dict]:
    """The hand-labelled triage set (`inference.triage_set`, data/triage/triage_labels.jsonl) as
    evaluation items {"id", "question", "is_urgent", "category"}; [] when the key is null."""
    if not cfg.inference.triage_set:
        return []
    from healthai.io import read_jsonl

    path = cfg.resolve(cfg.inference.triage_set)
    if not path.is_file():
        raise InputError("hand-labelled triage set not found (set inference.triage_set: null to skip it)",
                         file=str(path))
    return [{"id": r["id"], "question": r["question"], "is_urgent": bool(r["urgent"]),
             "category": r.get("case") or r["source"]} for r in read_jsonl(path)]


def evaluate(cfg: PipelineConfig, force: bool = False, progress: bool = False) -> dict:
    """Answer the split with base and fine-tuned model, score both, write the report (a StageRun).

    The base model is loaded once; its answers are generated first, then the adapter is put on
    top for the fine-tuned answers (one 9B load instead of two).
    """
    from healthai import evaluation as ev
    from healthai.stage import StageRun

    data_path, meta_path = split_paths(cfg)
    adapter = adapter_path(cfg)
    check_adapter(adapter)
    check_base(base_path(cfg))
    inputs = [data_path, meta_path, base_path(cfg) / "config.json"] + [adapter / n for n in ADAPTER_FILES]
    if cfg.inference.triage_set:
        inputs.append(cfg.resolve(cfg.inference.triage_set))
    with StageRun("evaluate", cfg, inputs=inputs, config_sections=["inference", "filter", "models"],
                  output_subdir="inference", force=force) as run:
        if run.up_to_date:
            return run.previous or {}
        items, rejected_rows, n_in = read_eval_items(cfg)
        limit = cfg.inference.eval_limit
        skipped = max(0, len(items) - limit) if limit else 0
        items = items[:limit] if limit else items
        if not items:
            raise InputError("no usable item to evaluate", file=str(data_path))
        rejected = run.writer("rejected.jsonl")
        for row in rejected_rows:
            run.log.warning("%s: %s (%s) — quarantined in rejected.jsonl", row["id"], row["reason"], row["detail"])
            rejected.write_record(row)
        questions = [it["question"] for it in items]
        prompts = list(cfg.inference.prompts)
        seek = cfg.filter.urgent_prefix.split()[0]

        answers: dict[str, list[Generation]] = {}
        prompt_answers: dict[str, list[dict]] = {}
        p_seek: dict[str, list[float]] = {}
        timings: dict[str, dict] = {}
        triage_items = read_triage_set(cfg)
        t_answers: dict[str, list[Generation]] = {}
        t_seek: dict[str, list[float]] = {}
        model, tokenizer = load_base(cfg)
        for mode in MODES:
            if mode == "ft":
                model = attach_adapter(model, cfg)
            t0 = time.perf_counter()
            answers[mode] = generate_answers(model, tokenizer, questions, cfg, progress=progress)
            took = time.perf_counter() - t0
            tokens = sum(g.new_tokens for g in answers[mode])
            timings[mode] = {"seconds": round(took, 2), "new_tokens": tokens,
                             "tokens_per_s": round(tokens / took, 1) if took else None}
            run.log.info("%s: %d answers, %d tokens in %.1f s", mode, len(questions), tokens, took)
            prompt_answers[mode] = [{"question": g.question, "answer": g.answer}
                                    for g in generate_answers(model, tokenizer, prompts, cfg)]
            p_seek[mode] = [p[seek] for p in next_token_probabilities(model, tokenizer, questions, cfg, [seek])]
            if triage_items:
                t_questions = [it["question"] for it in triage_items]
                # only the opening decides triage: a few tokens per question keep the report cheap
                short = dataclasses.replace(cfg, inference=dataclasses.replace(
                    cfg.inference, max_new_tokens=cfg.inference.triage_max_new_tokens))
                t_answers[mode] = generate_answers(model, tokenizer, t_questions, short)
                t_seek[mode] = [p[seek] for p in next_token_probabilities(model, tokenizer, t_questions, cfg, [seek])]

        scored = {mode: [ev.score_answer({**it, "answer": g.answer, "new_tokens": g.new_tokens,
                                          f"p_{seek.lower()}": p}, cfg.filter)
                         for it, g, p in zip(items, answers[mode], p_seek[mode])] for mode in MODES}
        summaries = {mode: ev.summarize(rows, cfg.inference.ci_level) for mode, rows in scored.items()}
        worst = {mode: ev.worst_cases(rows, cfg.inference.worst_cases) for mode, rows in scored.items()}
        first_token = {mode: ev.first_token_summary(p_seek[mode], [it["is_urgent"] for it in items]) for mode in MODES}
        info = {"split": cfg.inference.eval_split, "items": len(items), "urgent items": sum(i["is_urgent"] for i in items),
                "base model": str(base_path(cfg)), "adapter": str(adapter), "site": cfg.site.name,
                "decoding": "sampling" if cfg.inference.do_sample else "greedy",
                "max_new_tokens": cfg.inference.max_new_tokens, "date": time.strftime("%Y-%m-%d %H:%M")}
        extra = [(f'First-token probability of "{seek}"', first_token_table(first_token, seek))]
        if triage_items:  # the hand-labelled triage set (inference.triage_set): labels by a clinician, not stage 2
            t_scored = {m: [ev.score_answer({**it, "answer": g.answer, f"p_{seek.lower()}": p}, cfg.filter)
                            for it, g, p in zip(triage_items, t_answers[m], t_seek[m])] for m in MODES}
            triage_set = {"path": str(cfg.resolve(cfg.inference.triage_set)), "items": len(triage_items),
                          "summaries": {m: ev.summarize(rows, cfg.inference.ci_level) for m, rows in t_scored.items()},
                          "first_token": {m: ev.first_token_summary(t_seek[m], [it["is_urgent"] for it in triage_items])
                                          for m in MODES}}
            extra.append(("Hand-labelled triage set", ev.triage_set_section(triage_set, seek)))
        out = run.writer("answers.jsonl")
        for i, it in enumerate(items):
            out.write_record({**it, "answers": {m: answers[m][i].answer for m in MODES},
                              "checks": {m: {k: scored[m][i][k] for k in ("closing", "prefix", "forbidden", "dosages",
                                                                         "sentences", "words", "similarity")}
                                         for m in MODES},
                              f"p_{seek.lower()}": {m: p_seek[m][i] for m in MODES}})
        with_report = run.writer("report.md")
        with_report.write(ev.render_report(summaries, prompt_answers, worst, info, extra_sections=extra))
        data = ev.report_data(summaries, prompt_answers, worst, info,
                              extras={"first_token": first_token, "timings": timings,
                                      "triage_set": triage_set if triage_items else None})
        import json

        run.writer("report.json").write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        png = run.writer("report.png", binary=True)
        ev.plot_comparison(summaries, png.fh)
        run.conserve(n_in=n_in, kept=len(items), rejected=len(rejected_rows), skipped=skipped)
        run.stats.update({"summaries": summaries, "first_token": first_token, "timings": timings})
        return {"summaries": summaries, "out_dir": str(run.out_dir), "first_token": first_token}


def first_token_table(first_token: dict[str, dict], word: str) -> str:
    lines = [f'Mean P(first answer token = "{word}") right after the generation prompt. A model that learned '
             "the urgent rule puts the mass on urgent questions; one that learned only the rate spreads it. "
             "AUC: the chance that an urgent question gets a higher probability than a non-urgent one "
             "(0.5 = the rate only, 1.0 = the rule).", "",
             "| model | urgent prompts | non-urgent prompts | AUC |", "|---|---|---|---|"]
    for mode, s in first_token.items():
        u = "n/a" if s["urgent_mean"] is None else f"{s['urgent_mean']:.4f} (n={s['urgent_n']})"
        n = "n/a" if s["non_urgent_mean"] is None else f"{s['non_urgent_mean']:.4f} (n={s['non_urgent_n']})"
        auc = "n/a" if s.get("auc") is None else f"{s['auc']:.2f}"
        lines.append(f"| {mode} | {u} | {n} | {auc} |")
    return "\n".join(lines)


def generation_dict(g: Generation) -> dict:
    return asdict(g)
