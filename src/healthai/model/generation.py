"""Prompts and generation: render as in training, generate batched or streamed, first-token probabilities.

    answers = generate_answers(model, tokenizer, questions, cfg)   # batched, left padding
    stream_answer(model, tokenizer, question, cfg)                 # token by token (interactive mode)
    next_token_probabilities(model, tokenizer, questions, cfg, ["Seek"])

Prompts are built exactly as in training: the system prompt `filter.assistant_system`, the
model's own chat template, thinking disabled (`enable_thinking=False`). Greedy decoding by
default, so a rerun gives the same answers. A batch of one prompt is never padded (some
transformers 5.x releases did not mask a left-padded single prompt).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

from healthai.config import PipelineConfig
from healthai.errors import ConfigError, ModelError

_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)


@dataclass
class Generation:
    """One answered prompt."""

    question: str
    answer: str
    new_tokens: int
    seconds: float
    first_token_s: float | None = None


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


def stream_generate(model, tokenizer, enc: dict, generate_kwargs: dict, write: Callable[[str], object],
                    hide_think: bool = True) -> tuple[str, int, float | None]:
    """Run `model.generate` in a thread and hand each decoded piece to `write` as it arrives.

    Returns (answer text, new tokens, time of the first new token or None). With `hide_think`, a
    think block at the start of the answer is never shown. The chat and `stream_answer` share it.
    """
    import torch

    streamer = _first_token_streamer(tokenizer)
    error: list[BaseException] = []
    out: list = []

    def run() -> None:
        try:
            with torch.inference_mode():
                out.append(model.generate(**enc, **generate_kwargs, streamer=streamer))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    pieces = []
    in_think = False
    for piece in streamer:
        if hide_think and not pieces and not in_think and piece.lstrip().startswith("<think>"):
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
    n_new = out[0].shape[1] - enc["input_ids"].shape[1] if out else 0
    return clean_answer("".join(pieces)), int(n_new), streamer.first_token_at


def stream_answer(model, tokenizer, question: str, cfg: PipelineConfig,
                  write: Callable[[str], object] | None = None) -> Generation:
    """Generate one answer and hand each piece of text to `write` as soon as it is decoded."""
    write = write or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    enc = tokenizer([render_prompt(tokenizer, question, cfg)], return_tensors="pt", add_special_tokens=False)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    _seed(cfg)
    t0 = time.perf_counter()
    answer, n_new, first_at = stream_generate(model, tokenizer, enc, generation_kwargs(cfg, tokenizer), write)
    seconds = time.perf_counter() - t0
    return Generation(question, answer, n_new, seconds, first_at - t0 if first_at else None)


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


def generation_dict(g: Generation) -> dict:
    return asdict(g)
