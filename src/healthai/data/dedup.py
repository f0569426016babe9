"""Exact and near-duplicate detection (MinHash-LSH from datasketch), streaming, first one kept.

Records are checked in input order against the representatives kept so far:

1. exact: the normalised text (lower case, letters and digits only) was seen before;
2. near: MinHash-LSH proposes candidates whose estimated Jaccard similarity of word
   n-gram shingles is around `near_dup_threshold`; each candidate is then verified with
   the exact Jaccard of the two shingle sets (kept as sorted uint32 hashes), so LSH
   false positives never remove a record.

A duplicate is compared with kept representatives only (leader clustering): A~B and B~C
with A !~ C keeps C, and every removed record names the one kept in its place.
Hashes are CRC32 (deterministic across runs and machines, unlike Python's `hash`).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from healthai.config.curation import CurationConfig

# Runs of non-word characters and of "_" become " "; a single " " already is (not matched: much faster).
_NON_ALNUM = re.compile(r"[^\w]{2,}|[^\w ]|_+")
_SHINGLE_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Features:
    """What the streaming check needs of one text; `Deduplicator.features` is pure, so worker
    processes can compute it and the (sequential) check only does the index look-ups."""

    key: bytes
    """SHA-1 of the normalised text (exact duplicates)."""
    shingles: np.ndarray | None = None
    """Sorted unique shingle hashes (near-duplicates only)."""
    hashvalues: np.ndarray | None = None
    """The MinHash signature of the shingles (near-duplicates only)."""


@dataclass(frozen=True)
class Duplicate:
    """Why a record was removed: `kind` exact|near, the id kept instead, the Jaccard similarity."""

    kind: str
    kept_id: str
    similarity: float


def normalize(text: str) -> str:
    """Lower case, letters and digits only, single spaces: what 'the same text' means."""
    return _NON_ALNUM.sub(" ", text.lower()).strip()


def exact_key(text: str) -> str:
    return hashlib.sha1(normalize(text).encode("utf-8")).hexdigest()


class _TokenHasher:
    """CRC32 of each word, cached (the vocabulary is small next to the number of tokens)."""

    def __init__(self) -> None:
        self.cache: dict[str, int] = {}

    def __call__(self, tokens: list[str]) -> np.ndarray:
        cache = self.cache
        if len(cache) > 2_000_000:
            cache.clear()
        for tok in set(tokens).difference(cache):
            cache[tok] = zlib.crc32(tok.encode("utf-8"))
        return np.fromiter(map(cache.__getitem__, tokens), dtype=np.uint64, count=len(tokens))


def shingle_hashes(tokens_hashes: np.ndarray, k: int) -> np.ndarray:
    """Sorted unique 32-bit hashes of the word k-grams (the whole text when shorter than k)."""
    n = len(tokens_hashes)
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    k = min(k, n)
    with np.errstate(over="ignore"):
        acc = np.zeros(n - k + 1, dtype=np.uint64)
        for j in range(k):  # polynomial rolling combination, wraps mod 2^64
            acc = acc * _SHINGLE_MIX + tokens_hashes[j:n - k + 1 + j]
        acc ^= acc >> np.uint64(29)
    return np.unique((acc & np.uint64(0xFFFFFFFF)).astype(np.uint32))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


class Deduplicator:
    """Streaming exact + near-duplicate check; `check(id, text)` returns None (kept) or a Duplicate."""

    def __init__(self, cfg: CurationConfig, near: bool | None = None):
        self.k = cfg.shingle_size
        self.threshold = cfg.near_dup_threshold
        self.num_perm = cfg.num_perm
        self.near = cfg.near_dedup if near is None else near
        self.seed = cfg.minhash_seed
        self.exact: dict[str, str] = {}
        self.shingles: dict[str, np.ndarray] = {}
        self.hasher = _TokenHasher()
        self.lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm) if self.near else None
        self._template = MinHash(num_perm=self.num_perm, seed=self.seed)
        self._scratch = self.minhash(np.zeros(0, dtype=np.uint32))
        self.stats = {"exact": 0, "near": 0, "lsh_candidates": 0, "lsh_false_candidates": 0}

    def minhash(self, shingles: np.ndarray) -> MinHash:
        m = MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=int,
                    permutations=self._template.permutations, scheme=self._template.scheme)
        if len(shingles):
            m.update_batch(shingles.tolist())
        return m

    def features(self, text: str) -> Features:
        """Exact key, shingles and MinHash signature of one text (pure: no index state is read)."""
        norm = normalize(text)
        key = hashlib.sha1(norm.encode("utf-8")).digest()
        if not self.near:
            return Features(key)
        shingles = shingle_hashes(self.hasher(norm.split()), self.k)
        return Features(key, shingles, self.signature(shingles))

    def signature(self, shingles: np.ndarray) -> np.ndarray:
        """`self.minhash(shingles).hashvalues`, reusing one MinHash (no permutation set-up per text)."""
        scratch = self._scratch
        scratch.clear()  # assigns fresh arrays: a returned signature is never changed afterwards
        if len(shingles):
            scratch.update_batch(shingles.tolist())
        return scratch.hashvalues

    def check(self, rid: str, text: str) -> Duplicate | None:
        return self.check_features(rid, self.features(text))

    def check_features(self, rid: str, features: Features) -> Duplicate | None:
        """None (kept: it becomes a representative) or the Duplicate that removes it."""
        key = features.key
        if key in self.exact:
            self.stats["exact"] += 1
            return Duplicate("exact", self.exact[key], 1.0)
        if not self.near:
            self.exact[key] = rid
            return None
        shingles = features.shingles
        m = LeanMinHash(seed=self.seed, hashvalues=features.hashvalues, scheme=self._template.scheme)
        best: tuple[float, str] | None = None
        for cand in self.lsh.query(m):
            self.stats["lsh_candidates"] += 1
            sim = jaccard(shingles, self.shingles[cand])
            if sim >= self.threshold:
                if best is None or sim > best[0] or (sim == best[0] and cand < best[1]):
                    best = (sim, cand)
            else:
                self.stats["lsh_false_candidates"] += 1
        if best is not None:
            self.stats["near"] += 1
            return Duplicate("near", best[1], round(best[0], 4))
        self.exact[key] = rid  # only kept records are representatives: a duplicate never names a removed one
        self.lsh.insert(rid, m)
        self.shingles[rid] = shingles
        return None


def find_duplicates(items: list[tuple[str, str]], cfg: CurationConfig,
                    near: bool | None = None) -> dict[str, Duplicate]:
    """`{id: Duplicate}` for every (id, text) that repeats an earlier kept one."""
    dedup = Deduplicator(cfg, near=near)
    out = {}
    for rid, text in items:
        dup = dedup.check(rid, text)
        if dup is not None:
            out[rid] = dup
    return out
