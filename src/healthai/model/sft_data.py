"""Fine-tuning data: `{"messages": [...]}` JSONL read with quarantine, urgent flags, oversampling.

    records, rejected = read_messages(path)
    records = oversample(records, read_urgent_flags(meta_path, len(records)), 3.0, seed)
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, Sequence

from healthai.errors import InputError

log = logging.getLogger("healthai.finetune")


ROLES = ("system", "user", "assistant")


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
    from healthai.pipeline.io import BadLine, iter_jsonl

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
    from healthai.pipeline.io import read_jsonl

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


def dataset_paths(cfg) -> tuple[Path, Path]:
    """finetune.dataset: qa -> 3.merge/train + val; clinical -> 4.clinical/train + dev."""
    root = cfg.project_path()
    if cfg.finetune.dataset == "clinical":
        return root / "4.clinical" / "train.jsonl", root / "4.clinical" / "dev.jsonl"
    return root / "3.merge" / "train.jsonl", root / "3.merge" / "val.jsonl"
