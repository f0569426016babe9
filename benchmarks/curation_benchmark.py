"""Stage 1 at scale: 100k records built from the real samples, with known injected near-duplicates.

Corpus: the bundled real records (iCliniq, HealthCareMagic, GenMedGPT-5k), each copy given
controlled perturbations so that copies are distinct (a sentence from another record
appended, a few words swapped for synonyms), plus INJECTED near-duplicates: a copy of an
earlier corpus record with 1-3 word edits and case/punctuation noise (truth: its source).
Reports records/s and peak RSS of the full stage (subprocess, `curate_dataset.py`) and
near-duplicate precision/recall against the injected truth, next to a straightforward
pandas exact-only baseline (drop_duplicates on the lower-cased text) in the same run.

    python benchmarks/curation_benchmark.py [--records 100000] [--dup-share 0.1]
Writes benchmarks/results/curation_benchmark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / "data" / "raw"
SYNONYMS = {"pain": "ache", "doctor": "physician", "take": "use", "tablet": "pill", "severe": "serious",
            "days": "days'", "also": "as well", "please": "kindly", "problem": "issue", "advise": "suggest"}


def real_pairs() -> list[tuple[str, str, str]]:
    out = []
    for line in open(RAW / "icliniq_2k_chat.jsonl", encoding="utf-8"):
        r = json.loads(line)["chat"][0]
        out.append(("icliniq", r["input"][0]["content"], r["ideal"]))
    for line in open(RAW / "healthcaremagic_82_sample.jsonl", encoding="utf-8"):
        r = json.loads(line)
        if r["output"]:
            out.append(("hcm", r["input"], r["output"]))
    for r in json.load(open(RAW / "chatdoctor5k.json", encoding="utf-8")):
        out.append(("genmed", r["input"], r["output"]))
    return out


def perturb_copy(q: str, a: str, donors: list[str], rng: random.Random, tag: int) -> tuple[str, str]:
    """A distinct new record (controlled perturbation): the real question with a sentence of another question,
    and an answer whose sentences are drawn from this and two other real answers, shuffled, synonyms swapped."""
    pool = [s for text in [a, *donors] for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) > 3]
    rng.shuffle(pool)
    words = " ".join(pool[:rng.randint(4, 8)]).split()
    for i in rng.sample(range(len(words)), min(len(words), 6)):
        words[i] = SYNONYMS.get(words[i].lower(), words[i])
    q_extra = rng.choice(re.split(r"(?<=[.!?])\s+", donors[0]))
    return f"{q} Also, {q_extra}", " ".join(words)


def near_edit(q: str, a: str, rng: random.Random) -> tuple[str, str]:
    """The injected near-duplicate: 1-3 word edits in the answer, case and punctuation noise."""
    words = a.split()
    for i in rng.sample(range(len(words)), min(len(words), rng.randint(1, 3))):
        words[i] = rng.choice(["very", "really", "quite", words[i].upper()])
    return q.upper() if rng.random() < 0.3 else q + "!!", " ".join(words)


def build(n: int, dup_share: float, seed: int, path: Path) -> dict[int, int]:
    """Write the corpus; returns {line: cluster} (an injected copy shares its source's cluster)."""
    rng = random.Random(seed)
    pairs = real_pairs()
    answers = [p[2] for p in pairs]
    n_dup = int(n * dup_share)
    n_base = n - n_dup
    base = []
    for i in range(n_base):
        src, q, a = pairs[i % len(pairs)]
        if i >= len(pairs):
            q, a = perturb_copy(q, a, [answers[rng.randrange(len(answers))] for _ in range(2)], rng, i)
        base.append((src, q, a))
    truth: dict[int, int] = {}
    records = list(base)
    for j in range(n_dup):
        k = rng.randrange(n_base)
        src, q, a = base[k]
        records.append((src, *near_edit(q, a, rng)))
        truth[n_base + j] = k
    order = list(range(n))
    rng.shuffle(order)
    pos = {old: new for new, old in enumerate(order)}
    with open(path, "w", encoding="utf-8") as fh:
        for old in order:
            src, q, a = records[old]
            fh.write(json.dumps({"instruction": src, "input": q, "output": a}, ensure_ascii=False) + "\n")
    cluster = {pos[i] + 1: i for i in range(n_base)}
    cluster.update({pos[d] + 1: s for d, s in truth.items()})
    return cluster


def run_stage(corpus: Path, project: Path) -> tuple[float, float, dict]:
    env = dict(os.environ, HEALTHAI_PROJECT_DIR=str(project))
    cmd = [sys.executable, str(REPO / "1.Initial-curation" / "curate_dataset.py"), "--input", str(corpus), "--force",
           "--no-progress", "--set", "project.max_bad_fraction=0.5"]
    t0 = time.time()
    proc = psutil.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    out, err = proc.communicate()
    seconds = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"stage failed: {err.strip().splitlines()[-1] if err.strip() else out}")
    return seconds, peak / 2**20, json.loads((project / "1.curation" / "stats.json").read_text())


def score(pred: dict[int, int], cluster: dict[int, int], present: set[int]) -> dict:
    """Pairwise truth by cluster: a removal is right when the record it names is in the same cluster;
    recall = right removals / (members - 1) summed over the clusters' members present after the filters."""
    tp = sum(1 for line, kept in pred.items() if cluster[line] == cluster.get(kept, -1))
    sizes: dict[int, int] = {}
    for line in present:
        sizes[cluster[line]] = sizes.get(cluster[line], 0) + 1
    expected = sum(v - 1 for v in sizes.values() if v > 1)
    return {"predicted": len(pred), "expected": expected, "tp": tp, "fp": len(pred) - tp,
            "precision": round(tp / len(pred), 4) if pred else 1.0,
            "recall": round(tp / expected, 4) if expected else 1.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dup-share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", default=str(REPO / "benchmarks" / "out" / "curation"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.jsonl"
    truth = build(args.records, args.dup_share, args.seed, corpus)

    # Baseline: pandas exact-only duplicates on the lower-cased question+answer.
    t0 = time.time()
    df = pd.read_json(corpus, lines=True)
    key = (df["input"].str.lower().str.replace(r"\W+", " ", regex=True) + "\n"
           + df["output"].str.lower().str.replace(r"\W+", " ", regex=True))
    dup_mask = key.duplicated(keep="first")
    base_seconds = time.time() - t0
    first_of = {}
    base_pred = {}
    for i, k in enumerate(key):
        if k in first_of:
            base_pred[i + 1] = first_of[k]
        else:
            first_of[k] = i + 1
    baseline = {"seconds": round(base_seconds, 2), "records_per_second": round(len(df) / base_seconds, 1),
                **score(base_pred, truth, set(truth))}

    seconds, peak_mb, stats = run_stage(corpus, work / "project")
    rejected = [json.loads(l) for l in open(work / "project" / "1.curation" / "rejected.jsonl", encoding="utf-8")]
    kept_lines = {r["id"]: r["meta"]["source_line"] for r in map(json.loads, open(
        work / "project" / "1.curation" / "curated.jsonl", encoding="utf-8"))}
    pred = {r["source_line"]: kept_lines.get(r["duplicate_of"], -1) for r in rejected
            if r["reason"] in ("exact_duplicate", "near_duplicate")}
    # Records the quality filters removed cannot be found by dedup: recall counts what reached dedup.
    filtered = {r["source_line"] for r in rejected if r["reason"] not in ("exact_duplicate", "near_duplicate")}
    present = set(truth) - filtered
    stage = {"seconds": round(seconds, 2), "records_per_second": round(args.records / seconds, 1),
             "peak_rss_mb": round(peak_mb, 1), "saved": stats["total_examples_saved"],
             "duplicates_removed": stats["duplicates_removed"], "low_quality_removed": stats["low_quality_removed"],
             "dedup_internal": stats.get("dedup"), **score(pred, truth, present)}
    result = {"date": "2026-11-27", "machine": f"2-core CPU box ({platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cpus visible)", "records": args.records, "injected_near_duplicates": int(args.records * args.dup_share), "stage": stage, "pandas_exact_baseline": baseline}
    out = REPO / "benchmarks" / "results" / "curation_benchmark.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
