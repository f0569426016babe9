"""Stage-2 style records for the stage-3 tests (review, merging, splitting, dataset card).

User questions are real lines of data/raw/icliniq_2k_chat.jsonl (distinct consultations, so
no two are near-duplicates); answers are hand-made rewrites that pass the stage-2 validator
(urgent prefix when urgent, closing sentence, no dosage, no drug name).
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ["urgent symptoms", "pediatric", "mental health", "medication", "chronic", "mild symptoms", "other"]
SYSTEM = ("You are a helpful medical assistant. Give short, safe, actionable advice in 1-5 sentences. "
          "If the situation may be an emergency, start with \"Seek emergency care immediately.\" "
          "Always end with \"Please consult a doctor for more personalized medical advice.\"")
CLOSING = "Please consult a doctor for more personalized medical advice."
URGENT = "Seek emergency care immediately."


def real_questions(n: int, start: int = 0) -> list[str]:
    out = []
    with open(REPO / "data" / "raw" / "icliniq_2k_chat.jsonl", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i < start:
                continue
            out.append(json.loads(line)["chat"][0]["input"][0]["content"])
            if len(out) == n:
                break
    return out


def answer_for(urgent: bool, i: int = 0) -> str:
    advice = ["Rest, drink plenty of fluids and keep a short diary of your symptoms.",
              "Avoid heavy exercise until you feel better and keep the area clean.",
              "Eat regular light meals and sleep at fixed hours for the next week."][i % 3]
    return f"{URGENT} {advice} {CLOSING}" if urgent else f"{advice} {CLOSING}"


def make_record(rid: str, question: str, category: str, urgent: bool, i: int = 0, source: str = "icliniq_2k_chat.jsonl",
                answer: str | None = None) -> dict:
    return {
        "id": rid,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
                     {"role": "assistant", "content": answer if answer is not None else answer_for(urgent, i)}],
        "meta": {"category": category, "is_urgent": urgent, "backend": "rules",
                 "original_answer": "Please rest and drink fluids, and see your doctor if it gets worse.",
                 "source": source, "checks": {"closing_sentence": True, "urgent_prefix": True}},
    }


def make_records(n: int, prefix: str = "s", start: int = 0, urgent_every: int = 4) -> list[dict]:
    """n records over the 7 categories in turn; every `urgent_every`-th one is urgent ('urgent symptoms')."""
    out = []
    for i, q in enumerate(real_questions(n, start)):
        urgent = i % urgent_every == 0
        category = "urgent symptoms" if urgent else CATEGORIES[1 + i % 6]
        out.append(make_record(f"{prefix}{i:04d}", q, category, urgent, i))
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
