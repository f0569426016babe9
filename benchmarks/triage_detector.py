"""Benchmark the stage-2 urgent detector on the hand-labelled triage set.

Scores `healthai.triage.is_urgent(question, cfg.filter)` against the clinician-style labels
in `data/triage/triage_labels.jsonl` (see its LABELLING_GUIDE.md): precision, recall, F1,
accuracy and the confusion counts, on the whole set and on the real / hand-written parts,
with Wilson 95% intervals for recall and precision. The baseline in the same run is the
workshop slide's rule: a question is urgent when it contains one of the four "urgent
symptoms" keywords (chest pain, shortness of breath, emergency, stroke), no negation.
Every miss and false alarm is listed with the patterns that fired, for the next round.

    .venv/bin/python benchmarks/triage_detector.py                 # -> results/triage_detector.json
    .venv/bin/python benchmarks/triage_detector.py --out benchmarks/results/triage_detector_before.json
    .venv/bin/python benchmarks/triage_detector.py --set filter.negation_window=3
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

from healthai.config import load_config
from healthai.pipeline.io import read_jsonl
from healthai.data.triage import is_urgent, urgent_matches

import runinfo  # benchmarks/runinfo.py: the run's own date, commit, machine, load, versions

RUN = runinfo.start()

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "data" / "triage" / "triage_labels.jsonl"
RESULTS = REPO / "benchmarks" / "results" / "triage_detector.json"
SLIDE_KEYWORDS = ("chest pain", "shortness of breath", "emergency", "stroke")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials (0, 0 when n is 0)."""
    if n == 0:
        return 0.0, 0.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def score(truth: list[bool], pred: list[bool]) -> dict:
    """Confusion counts and the usual rates (positive class: urgent)."""
    tp = sum(t and p for t, p in zip(truth, pred))
    fp = sum(p and not t for t, p in zip(truth, pred))
    fn = sum(t and not p for t, p in zip(truth, pred))
    tn = len(truth) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": len(truth), "urgent": tp + fn, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
        "accuracy": round((tp + tn) / len(truth), 4) if truth else 0.0,
        "over_triage": round(fp / (fp + tn), 4) if fp + tn else 0.0,
        "recall_ci95": [round(x, 4) for x in wilson(tp, tp + fn)],
        "precision_ci95": [round(x, 4) for x in wilson(tp, tp + fp)],
    }


def slide_rule(question: str) -> bool:
    """The workshop slide's keyword rule: any of the four keywords, case-insensitive, no negation."""
    low = question.lower()
    return any(re.search(rf"\b{re.escape(k)}\b", low) for k in SLIDE_KEYWORDS)


def evaluate(records: list[dict], fcfg) -> dict:
    """Scores of the detector and the slide rule on all records and on the real / hand-written parts."""
    truth = [bool(r["urgent"]) for r in records]
    t0 = time.perf_counter()
    pred = [is_urgent(r["question"], fcfg) for r in records]
    seconds = time.perf_counter() - t0
    base = [slide_rule(r["question"]) for r in records]
    parts = {"all": range(len(records)),
             "real": [i for i, r in enumerate(records) if r["source"] != "hand-written"],
             "hand_written": [i for i, r in enumerate(records) if r["source"] == "hand-written"]}
    out = {name: {"detector": score([truth[i] for i in idx], [pred[i] for i in idx]),
                  "slide_keywords": score([truth[i] for i in idx], [base[i] for i in idx])}
           for name, idx in parts.items()}
    errors = []
    for r, t, p in zip(records, truth, pred):
        if t != p:
            errors.append({"id": r["id"], "kind": "missed" if t else "false_alarm",
                           "matches": urgent_matches(r["question"], fcfg), "reason": r["reason"],
                           "question": r["question"][:240]})
    out["errors"] = errors
    out["questions_per_second"] = round(len(records) / seconds, 1) if seconds else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = load_config(overrides=args.overrides)
    records = read_jsonl(args.labels)
    result = evaluate(records, cfg.filter)
    result = {"labels": str(args.labels.relative_to(REPO)) if args.labels.is_relative_to(REPO) else str(args.labels),
              "overrides": args.overrides, **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runinfo.write(args.out, RUN, result)
    print(f"{'part':<13} {'rule':<15} {'n':>4} {'prec':>6} {'recall':>6} {'F1':>6} {'over':>6}")
    for part in ("all", "real", "hand_written"):
        for rule in ("slide_keywords", "detector"):
            s = result[part][rule]
            print(f"{part:<13} {rule:<15} {s['n']:>4} {s['precision']:>6.3f} {s['recall']:>6.3f} "
                  f"{s['f1']:>6.3f} {s['over_triage']:>6.3f}")
    d, b = result["all"]["detector"], result["all"]["slide_keywords"]
    ratio = d["f1"] / b["f1"] if b["f1"] else float("inf")
    print(f"detector F1 / slide-keyword F1 = {ratio:.2f}; {len(result['errors'])} errors listed in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
