"""Rewrite doctor answers into the assistant's style: the `rules` and the `llm` backends.

    item = Item(id, question, answer, detector_urgent=is_urgent(question, cfg.filter))
    outcomes = rewrite_items(items, cfg.filter, backend="rules")
    outcomes = rewrite_items(items, cfg.filter, backend="llm", llm=LLMRewriter.load(model_dir, cfg.filter))

`rules` needs no model: it keeps the advice sentences of the cleaned answer, puts the urgent
prefix first when the detector flags the question and ends with the exact closing sentence.
`llm` drives a local causal LM with the workshop's REWRITER_SYSTEM prompt (batched greedy
generate with left padding, thinking disabled), pulls the JSON reply out of whatever the model
wrote (code fences, trailing text, single quotes; json-repair for the rest), validates it, retries
the failures with sampling, and hands what is still invalid to the fallback (rules or reject).
Every outcome says which backend produced the final answer and why an llm answer was refused.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from healthai.config.filtering import FilterConfig
from healthai.errors import ModelError
from healthai.data.filtering import find_dosages, normalise_apostrophes
from healthai.data.validation import failed_rules, split_sentences, validate_answer

log = logging.getLogger("healthai.filter")


@dataclass
class Item:
    """One record to rewrite."""

    id: str
    question: str
    answer: str
    detector_urgent: bool


@dataclass
class Outcome:
    """The rewrite of one item (answer is None when it was rejected)."""

    id: str
    answer: str | None
    is_urgent: bool
    backend: str
    checks: dict[str, bool] = field(default_factory=dict)
    model_is_urgent: bool | None = None
    tries: int = 0
    fallback: bool = False
    llm_error: str | None = None
    reason: str | None = None
    detail: str = ""


# -- JSON extraction -----------------------------------------------------------------------
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)


def _candidates(text: str) -> list[str]:
    text = _THINK.sub("", text).strip()
    out = [m.group(1).strip() for m in _FENCE.finditer(text)]
    start = text.find("{")
    if start >= 0:
        # the first balanced {...} (string-aware), then everything from the first "{" (truncated replies)
        depth, in_str, quote, esc = 0, False, "", False
        for i, ch in enumerate(text[start:], start):
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == quote:
                    in_str = False
            elif ch in "\"'":
                in_str, quote = True, ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    out.append(text[start:i + 1])
                    break
        out.append(text[start:text.rfind("}") + 1] if "}" in text[start:] else text[start:])
    return [c for c in out if c]


def _coerce_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    return None


def extract_json(text: str) -> tuple[dict | None, str]:
    """The rewriter's reply as {"rewritten": str, "is_urgent": bool}, or (None, why not).

    Accepts a JSON object inside code fences, followed or preceded by prose, with single
    quotes, trailing commas or a missing closing brace (json-repair), and "true"/"false" strings.
    """
    import json_repair

    if not isinstance(text, str) or not text.strip():
        return None, "empty reply"
    last = "no JSON object in the reply"
    for cand in _candidates(text):
        try:
            obj = json.loads(cand)
        except (json.JSONDecodeError, RecursionError):
            try:
                obj = json_repair.loads(cand)
            except Exception:  # json-repair raises assorted errors on garbage  # noqa: BLE001
                obj = None
        if not isinstance(obj, dict):
            continue
        rewritten, urgent = obj.get("rewritten"), _coerce_bool(obj.get("is_urgent"))
        if not isinstance(rewritten, str) or not rewritten.strip():
            last = "JSON without a non-empty string 'rewritten'"
            continue
        if urgent is None:
            last = "JSON without a boolean 'is_urgent'"
            continue
        return {"rewritten": " ".join(rewritten.split()), "is_urgent": urgent}, ""
    return None, last


# -- rules backend ---------------------------------------------------------------------------
_BULLET_START = re.compile(r"^\s*(?:[-*\u2022\u25cf\u25aa]|\d{1,2}[.)])\s+")


def _clean_sentence(s: str) -> str:
    s = _BULLET_START.sub("", s).strip()
    s = " ".join(s.split())
    if s and s[-1] not in ".!?:":  # a trailing ":" stays, so the skip pattern for list intros sees it
        s += "."
    return s[:1].upper() + s[1:]


@lru_cache(maxsize=16)
def _compiled(patterns: tuple[str, ...]) -> list[re.Pattern]:
    # compiled once: pysbd's many dynamic patterns keep evicting re's own cache
    return [re.compile(p, re.IGNORECASE) for p in patterns]


def select_advice(answer: str, cfg: FilterConfig) -> list[str]:
    """Up to `rules_advice_sentences` sentences of `answer` worth keeping, in their original order."""
    skips = _compiled(tuple(cfg.rules_skip_patterns))
    pieces = []
    for line in normalise_apostrophes(answer).splitlines():  # bullet lines become sentences
        pieces.extend(split_sentences(line))
    cues = _compiled(tuple(cfg.rules_advice_cues))
    kept = []
    for raw in pieces:
        s = _clean_sentence(raw)
        if len(s.split()) < 3 or any(p.search(s) for p in skips) or find_dosages(s, cfg):
            continue
        if s in (cfg.closing_sentence, cfg.urgent_prefix):
            continue
        kept.append(s)
    # Actionable sentences first, then the others, each group in answer order; output in answer order.
    ranked = sorted(range(len(kept)), key=lambda i: (not any(c.search(kept[i]) for c in cues), i))
    chosen = sorted(ranked[:cfg.rules_advice_sentences])
    return [kept[i] for i in chosen]


def rewrite_rules(question: str, answer: str, urgent: bool, cfg: FilterConfig) -> str | None:
    """The deterministic rewrite: [urgent prefix] + advice sentences + closing sentence (None: nothing to keep)."""
    advice = select_advice(answer, cfg)
    if not advice:
        return None
    parts = ([cfg.urgent_prefix] if urgent else []) + advice + [cfg.closing_sentence]
    return " ".join(parts)


def _rules_outcome(item: Item, cfg: FilterConfig, **extra: Any) -> Outcome:
    text = rewrite_rules(item.question, item.answer, item.detector_urgent, cfg)
    if text is None:
        return Outcome(item.id, None, item.detector_urgent, "rules", reason="no_advice_left",
                       detail="every sentence was a greeting, sign-off, question or dosage", **extra)
    checks = validate_answer(text, item.answer, item.detector_urgent, cfg)
    out = Outcome(item.id, text, item.detector_urgent, "rules", checks=checks, **extra)
    bad = failed_rules(checks)
    if bad:
        out.answer, out.reason, out.detail = None, f"validation:{bad[0]}", f"rules rewrite failed {', '.join(bad)}"
    return out


# -- llm backend -----------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_model_dir(path: Path) -> None:
    """A usable local model folder: config.json, safetensors weights, a tokenizer."""
    if not path.is_dir():
        raise ModelError("model folder not found (stage 2's llm backend reads models.rewriter, else "
                         "models.base; nothing is downloaded)", file=str(path))
    if not (path / "config.json").is_file():
        raise ModelError("model folder has no config.json", file=str(path))
    if not list(path.glob("*.safetensors")):
        raise ModelError("model folder has no *.safetensors weights (only safetensors are loaded)", file=str(path))
    if not ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()):
        raise ModelError("model folder has no tokenizer.json / tokenizer_config.json", file=str(path))


class LLMRewriter:
    """A local causal LM that answers the REWRITER_SYSTEM prompt, batched."""

    def __init__(self, model, tokenizer, cfg: FilterConfig, device: str, seed: int = 42):
        self.model, self.tokenizer, self.cfg, self.device, self.seed = model, tokenizer, cfg, device, seed
        self.generated_tokens = 0

    @classmethod
    def load(cls, model_dir: str | Path, cfg: FilterConfig, device: str = "auto", dtype: str = "auto",
             seed: int = 42) -> "LLMRewriter":
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_dir)
        check_model_dir(path)
        device = resolve_device(device)
        if dtype == "auto":
            dtype = "bfloat16" if device == "cuda" else "float32"
        t0 = time.time()
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), use_safetensors=True,
                                                         trust_remote_code=False)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot load the rewriter model: {str(exc).splitlines()[0]}", file=str(path)) from None
        if len(tokenizer) < 2 or not tokenizer("hello").input_ids:
            raise ModelError("the tokenizer encodes to nothing (missing tokenizer.json?)", file=str(path))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        model.to(device).eval()
        import importlib.util

        fast = all(importlib.util.find_spec(m) is not None for m in ("fla", "causal_conv1d"))
        log.info("rewriter model %s loaded on %s (%s) in %.1fs; linear-attention fast path: %s", path, device,
                 dtype, time.time() - t0, "on" if fast else "off (torch fallback, slow)")
        return cls(model, tokenizer, cfg, device, seed)

    def build_prompt(self, question: str, answer: str) -> str:
        limit = self.cfg.llm.max_answer_chars
        user = self.cfg.llm.prompt_template.format(question=question[:limit], answer=answer[:limit])
        messages = [{"role": "system", "content": self.cfg.rewriter_system}, {"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  enable_thinking=False)

    def generate(self, prompts: list[str], sample: bool = False, batch_size: int | None = None,
                 attempt: int = 0) -> list[str]:
        """Replies to `prompts` (same order), `batch_size` at a time, longest prompts first."""
        import torch

        g = self.cfg.llm
        batch_size = batch_size or g.batch_size
        lengths = [len(self.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        replies: list[str] = [""] * len(prompts)
        kwargs: dict[str, Any] = {"max_new_tokens": g.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if sample:
            kwargs.update(do_sample=True, temperature=g.temperature, top_p=g.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = [prompts[i] for i in idx]
            if len(batch) == 1:  # never left-pad a batch of one (transformers PR#46773): no padding at all
                enc = self.tokenizer(batch, return_tensors="pt", add_special_tokens=False)
            else:
                enc = self.tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            if sample:
                torch.manual_seed(self.seed + 1000 * attempt + start)
            with torch.inference_mode():
                out = self.model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1]:]
            self.generated_tokens += int((new != self.tokenizer.pad_token_id).sum())
            for i, text in zip(idx, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
                replies[i] = text
        return replies


@dataclass
class RewriteStats:
    """Counts the llm loop keeps for the report."""

    attempts: int = 0
    json_failures: int = 0
    validation_failures: int = 0
    fallbacks: int = 0
    llm_rejected: int = 0
    failures_by_try: list[int] = field(default_factory=list)
    checks: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # backend -> rule -> [passed, total]
    examples: list[dict] = field(default_factory=list)

    def count(self, backend: str, checks: dict[str, bool]) -> None:
        table = self.checks.setdefault(backend, {})
        for rule, ok in checks.items():
            cell = table.setdefault(rule, [0, 0])
            cell[0] += int(ok)
            cell[1] += 1

    def pass_rates(self) -> dict[str, dict[str, dict]]:
        return {b: {r: {"passed": p, "total": t, "rate": round(p / t, 4) if t else None} for r, (p, t) in rules.items()}
                for b, rules in self.checks.items()}


def rewrite_items(items: list[Item], cfg: FilterConfig, backend: str = "rules", llm: LLMRewriter | None = None,
                  stats: RewriteStats | None = None, progress: bool = False) -> list[Outcome]:
    """Rewrite every item with `backend`; outcomes in the items' order."""
    stats = stats if stats is not None else RewriteStats()
    if backend == "rules":
        outs = [_rules_outcome(it, cfg) for it in items]
        for o in outs:
            if o.checks:
                stats.count("rules", o.checks)
        return outs
    if llm is None:
        raise ValueError("the llm backend needs an LLMRewriter")
    return _rewrite_llm(items, cfg, llm, stats, progress)


def _rewrite_llm(items: list[Item], cfg: FilterConfig, llm: LLMRewriter, stats: RewriteStats,
                 progress: bool) -> list[Outcome]:
    from tqdm import tqdm

    prompts = {it.id: llm.build_prompt(it.question, it.answer) for it in items}
    done: dict[str, Outcome] = {}
    last_error: dict[str, str] = {}
    model_urgent: dict[str, bool] = {}
    pending = list(items)
    bar = tqdm(total=len(items), desc="rewrite (llm)", unit="rec", disable=not progress)
    for attempt in range(cfg.llm.retries + 1):
        if not pending:
            break
        sample = cfg.llm.do_sample or attempt > 0  # greedy retries would repeat the same reply
        replies = llm.generate([prompts[it.id] for it in pending], sample=sample, attempt=attempt)
        still = []
        for it, reply in zip(pending, replies):
            stats.attempts += 1
            parsed, why = extract_json(reply)
            stats.count("llm", {"json_schema": parsed is not None})
            if parsed is None:
                stats.json_failures += 1
                last_error[it.id] = f"json: {why}"
                if len(stats.examples) < 20:
                    stats.examples.append({"id": it.id, "try": attempt + 1, "error": why, "reply": reply[:300]})
                still.append(it)
                continue
            model_urgent[it.id] = parsed["is_urgent"]
            urgent = it.detector_urgent if cfg.urgent_resolution == "detector" else (
                parsed["is_urgent"] or it.detector_urgent)
            checks = validate_answer(parsed["rewritten"], it.answer, urgent, cfg)
            stats.count("llm", checks)
            bad = failed_rules(checks)
            if bad:
                stats.validation_failures += 1
                last_error[it.id] = f"validation: {', '.join(bad)}"
                still.append(it)
                continue
            done[it.id] = Outcome(it.id, parsed["rewritten"], urgent, "llm", checks={"json_schema": True, **checks},
                                  model_is_urgent=parsed["is_urgent"], tries=attempt + 1)
            bar.update(1)
        stats.failures_by_try.append(len(still))
        log.info("llm try %d: %d of %d replies usable", attempt + 1, len(pending) - len(still), len(pending))
        pending = still
    for it in pending:
        err = last_error.get(it.id, "no reply")
        if cfg.llm.fallback == "rules":
            stats.fallbacks += 1
            out = _rules_outcome(it, cfg, model_is_urgent=model_urgent.get(it.id), tries=cfg.llm.retries + 1,
                                 fallback=True, llm_error=err)
            if out.checks:
                stats.count("rules", out.checks)
            done[it.id] = out
        else:
            stats.llm_rejected += 1
            done[it.id] = Outcome(it.id, None, it.detector_urgent, "llm", model_is_urgent=model_urgent.get(it.id),
                                  tries=cfg.llm.retries + 1, llm_error=err, reason="llm_invalid",
                                  detail=f"no valid reply after {cfg.llm.retries + 1} tries ({err})")
        bar.update(1)
    bar.close()
    return [done[it.id] for it in items]
