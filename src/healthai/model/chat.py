"""A multi-turn terminal chat with the assistant: over an exported GGUF (llama.cpp) or base + adapter.

    backend = open_llama(cfg, "ft")           # $PROJECT_DIR/export/ft-Q4_K_M.gguf, checked first
    backend = open_transformers(cfg, "ft")    # no export needed: base + LoRA adapter
    chat_loop(backend, cfg, "ft")             # /reset, /quit, Ctrl-D; answers stream token by token

Every turn sends the pipeline's system prompt and the conversation so far, rendered by the model's
own chat template with thinking off; the oldest turns leave when the conversation outgrows the
context (export.n_ctx minus the answer's export.max_tokens). Greedy, like the evaluation.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from healthai.errors import ModelError
from healthai.model import gguf

_CONTROL = {c: None for c in range(32) if chr(c) not in "\n\t"} | {0x7F: None}


def printable(text: str) -> str:
    """Text for the terminal: control characters a model may emit (ESC, BEL...) dropped, the history keeps them."""
    return text.translate(_CONTROL)


HELP = "Type a question and press Enter. /reset forgets the conversation, /quit (or Ctrl-D) ends."


class LlamaBackend:
    """llama.cpp over a GGUF file, through the file's own chat template (what the server uses too)."""

    name = "llama.cpp"

    def __init__(self, llm, path: Path, max_tokens: int):
        self.llm, self.path, self.max_tokens = llm, path, max_tokens

    def count_tokens(self, messages: list[dict]) -> int:
        return sum(len(self.llm.tokenize(m["content"].encode("utf-8"), add_bos=False, special=False)) + 5
                   for m in messages)

    @property
    def context(self) -> int:
        return self.llm.n_ctx()

    def reply(self, messages: list[dict], write: Callable[[str], object]) -> tuple[str, int]:
        pieces, n = [], 0
        for chunk in self.llm.create_chat_completion(messages=messages, temperature=0.0, repeat_penalty=1.0,
                                                     max_tokens=self.max_tokens, stream=True):
            text = chunk["choices"][0]["delta"].get("content")
            if text:
                if not pieces:
                    text = text.lstrip()
                pieces.append(text)
                n += 1
                write(text)
        return "".join(pieces).strip(), n


class TransformersBackend:
    """Base model (+ LoRA adapter) through transformers, streamed by a TextIteratorStreamer."""

    name = "transformers"

    def __init__(self, model, tokenizer, max_tokens: int, context: int):
        self.model, self.tokenizer, self.max_tokens, self.context = model, tokenizer, max_tokens, context

    def count_tokens(self, messages: list[dict]) -> int:
        return sum(len(self.tokenizer(m["content"], add_special_tokens=False)["input_ids"]) + 5 for m in messages)

    def reply(self, messages: list[dict], write: Callable[[str], object]) -> tuple[str, int]:
        from healthai.model.generation import pad_token_id, stop_token_ids, stream_generate

        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  enable_thinking=False)
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        kwargs = {"max_new_tokens": self.max_tokens, "do_sample": False,
                  "eos_token_id": stop_token_ids(self.tokenizer), "pad_token_id": pad_token_id(self.tokenizer),
                  "temperature": None, "top_p": None, "top_k": None}
        answer, n, _ = stream_generate(self.model, self.tokenizer, dict(enc), kwargs, write, hide_think=False)
        return answer, n


def open_llama(cfg, mode: str, path: Path | None = None) -> LlamaBackend:
    """The exported GGUF of `mode` (export.chat_type), checked against the export's manifest; or `path`,
    checked to hold the vocabulary of models.base (a GGUF of another base loads without complaint)."""
    ec = cfg.export
    if path is None:
        path = gguf.gguf_path(cfg, mode)
        llm = gguf.load_llama(path, ec.n_ctx, ec.n_threads, recorded=gguf.recorded_output(cfg, path))
    else:
        from transformers import AutoTokenizer

        from healthai.model.inference import base_path, check_base

        llm = gguf.load_llama(path, ec.n_ctx, ec.n_threads, hint=f"--gguf {path}")
        check_base(base_path(cfg))
        if not gguf.same_vocabulary(llm, AutoTokenizer.from_pretrained(base_path(cfg))):
            llm.close()
            raise ModelError("this GGUF's vocabulary is not models.base's (a GGUF of another base model?)",
                             file=str(path))
    return LlamaBackend(llm, path, ec.max_tokens)


def open_transformers(cfg, mode: str) -> TransformersBackend:
    from healthai.model.inference import load_for_inference

    model, tokenizer = load_for_inference(cfg, mode)
    return TransformersBackend(model, tokenizer, cfg.export.max_tokens, cfg.export.n_ctx)


def fit_history(history: list[dict], system: dict, backend, budget: int) -> tuple[list[dict], int]:
    """Drop the oldest question/answer pairs until system + history fit `budget` tokens; (kept, dropped turns)."""
    dropped = 0
    while len(history) > 1 and backend.count_tokens([system, *history]) > budget:
        history = history[2:]
        dropped += 1
    return history, dropped


def chat_loop(backend, cfg, mode: str, read: Callable[[str], str] = input, out: TextIO | None = None) -> int:
    """The conversation; returns how many answers were given."""
    out = out or sys.stdout
    say = lambda s: (out.write(s), out.flush())
    system = {"role": "system", "content": cfg.filter.assistant_system}
    budget = backend.context - cfg.export.max_tokens
    history: list[dict] = []
    answered = 0
    say(f"[{mode} · {backend.name}] {HELP}\n")
    while True:
        try:
            line = read(f"\n{mode}> you: ")
        except EOFError:
            say("\n")
            break
        question = gguf.nfc(line.strip())
        if not question:
            continue
        if question in ("/quit", "/exit", "/bye"):
            break
        if question == "/reset":
            history = []
            say("[conversation cleared]\n")
            continue
        if question.startswith("/"):
            say(f"[unknown command {question.split()[0]}] {HELP}\n")
            continue
        history.append({"role": "user", "content": question})
        history, dropped = fit_history(history, system, backend, budget)
        if backend.count_tokens([system, *history]) > budget:
            history.pop()
            say(f"[that question is longer than the context ({budget} tokens, export.n_ctx); shorten it]\n")
            continue
        if dropped:
            say(f"[the {dropped} oldest turn(s) left the context]\n")
        say(f"{mode}> assistant: ")
        t0 = time.perf_counter()
        answer, n = backend.reply([system, *history], lambda piece: say(printable(piece)))
        say(f"\n    ({n} tokens in {time.perf_counter() - t0:.1f} s)\n")
        history.append({"role": "assistant", "content": answer})
        answered += 1
    say(f"[{mode}] bye ({answered} answers)\n")
    return answered
