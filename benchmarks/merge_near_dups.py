"""Benchmark: near-duplicate grouping of user questions, MinHash-LSH (datasketch) vs exhaustive Jaccard.

Both group the same questions (the LSH candidates are confirmed by exact Jaccard, so the
groups must agree); the ratio is the speed-up of the LSH path. Questions: the real
iCliniq questions in data/raw, plus planted paraphrases (every 10th question copied with a
sentence appended), at 451 (the workshop's final set) and 2,000 questions.

    .venv/bin/python benchmarks/merge_near_dups.py     # writes benchmarks/results/merge_near_dups.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from healthai.data.splitting import _UnionFind, group_near_duplicates, jaccard, shingles

import runinfo  # benchmarks/runinfo.py: the run's own date, commit, machine, load, versions

RUN = runinfo.start()

REPO = Path(__file__).resolve().parents[1]


def questions(n: int) -> list[str]:
    out = []
    with open(REPO / "data" / "raw" / "icliniq_2k_chat.jsonl", encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)["chat"][0]["input"][0]["content"]
            out.append(q)
            if len(out) % 10 == 0:
                out.append(q + " Please advise me.")
            if len(out) >= n:
                break
    return out[:n]


def exhaustive(texts: list[str], threshold: float, k: int) -> list[int]:
    sets = [shingles(t, k) for t in texts]
    uf = _UnionFind(len(texts))
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if jaccard(sets[i], sets[j]) >= threshold:
                uf.union(i, j)
    return [uf.find(i) for i in range(len(texts))]


def main() -> None:
    """MinHash-LSH vs exhaustive pairwise Jaccard on the merge stage's question counts (--quick: 200)."""
    rows = []
    for n in ((200,) if runinfo.quick() else (451, 2000)):
        texts = questions(n)
        t0 = time.perf_counter()
        lsh = group_near_duplicates(texts, threshold=0.7, shingle_words=3, num_perm=128, seed=42)
        t_lsh = time.perf_counter() - t0
        t0 = time.perf_counter()
        brute = exhaustive(texts, 0.7, 3)
        t_brute = time.perf_counter() - t0
        rows.append({"questions": n, "groups": len(set(lsh)), "same_groups_as_exhaustive": lsh == brute,
                     "minhash_lsh_s": round(t_lsh, 3), "exhaustive_s": round(t_brute, 3),
                     "speedup": round(t_brute / t_lsh, 2)})
        print(rows[-1])
    out = {"results": rows}
    path = REPO / "benchmarks" / "results" / "merge_near_dups.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    runinfo.write(path, RUN, out)


if __name__ == "__main__":
    main()
