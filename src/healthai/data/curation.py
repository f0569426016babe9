"""Stage 1, initial curation: read → clean → strip boilerplate → scrub PII → filter → dedup → review → write.

    from healthai.data.curation import curate
    curate(cfg)                       # the inputs of cfg.curation.inputs
    curate(cfg, inputs=["a.csv"])     # --input, format detected

Outputs in `$PROJECT_DIR/1.curation/`: curated.jsonl (`{"id", "messages": [user, assistant],
"meta"}`), rejected.jsonl (`id, reason, detail, record`, duplicates name the kept record in
`duplicate_of`), stats.json (the figures of the CURATION STATISTICS block and more),
review_sample.csv / .jsonl (to mark accept/reject/edit) and manifest.json.

Every input record ends up in exactly one of curated.jsonl or rejected.jsonl (checked).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import os
import random
import re
import signal
import sys
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from healthai.data.boilerplate import (BoilerplateMiner, MinedBoilerplate, candidates_csv, edge_units, format_mined,
                                       report)
from healthai.data.cleaning import Rules, clean_text, compile_rules, remove_boilerplate, residual_boilerplate, word_count
from healthai.config import PipelineConfig
from healthai.config.curation import CurationConfig, InputSpec
from healthai.data.dedup import Deduplicator, Features
from healthai.errors import InputError, StageError
from healthai.pipeline.io import BadLine, iter_jsonl
from healthai.data.language import is_language
from healthai.data.pii import scrub_pii
from healthai.data.readers import RawRecord, read_input, source_name
from healthai.pipeline.stage import StageRun

log = logging.getLogger("healthai.curation")

OUTPUT_SUBDIR = "1.curation"
DECISIONS = ("accept", "reject", "edit")
REVIEW_COLUMNS = ("id", "source", "decision", "edited_answer", "note", "question", "answer", "boilerplate_mined")
BATCH_RECORDS = 500
"""Records per task of a worker process (amortises pickling; small enough to keep the workers busy)."""
_TERMINAL = re.compile(r"[.!?][\"')\]]*$")
_LAST_WORD = re.compile(r"([A-Za-z']+)\W*$")


# -- one record: pure ---------------------------------------------------------------------
@dataclass
class Outcome:
    """What happened to one record: kept (question/answer set) or rejected (reason set)."""

    raw: RawRecord
    question: str = ""
    answer: str = ""
    reason: str | None = None
    detail: str = ""
    text_cleaned: bool = False
    phrases_cleaned: bool = False
    pii: dict = field(default_factory=dict)
    language: str = ""
    edges: list = field(default_factory=list)
    """A kept answer's opening / closing units for the boilerplate mining (`healthai.data.boilerplate`)."""


def is_truncated(answer: str, tail_words: set[str]) -> bool:
    """An answer without final punctuation that ends on a function word, comma, colon or bracket was cut."""
    stripped = answer.rstrip()
    if not stripped or _TERMINAL.search(stripped):
        return False
    if stripped[-1] in ",:;(-–—&/":
        return True
    last = _LAST_WORD.search(stripped)
    return bool(last and last.group(1).lower() in tail_words)


def curate_record(raw: RawRecord, cfg: CurationConfig, rules: Rules, tail_words: set[str]) -> Outcome:
    """Clean, strip boilerplate, scrub and filter one record (no I/O, no dedup); a kept one's edge units."""
    out = Outcome(raw)
    question = clean_text(raw.question, cfg, rules)
    answer = clean_text(raw.answer, cfg, rules)
    out.text_cleaned = question != raw.question.strip() or answer != raw.answer.strip()
    stripped = remove_boilerplate(answer, cfg, rules)
    out.phrases_cleaned = stripped != answer
    if cfg.scrub_pii:
        question, q_spans = scrub_pii(question, cfg)
        stripped, a_spans = scrub_pii(stripped, cfg)
        out.pii = dict(Counter(s.kind for s in q_spans + a_spans))
    out.question, out.answer = question, stripped

    n_answer, n_question = word_count(stripped), word_count(question)
    if is_truncated(stripped, tail_words):
        return _reject(out, "truncated", f"the answer ends mid-sentence: …{stripped[-60:]!r}")
    if stripped and not _TERMINAL.search(stripped) and cfg.complete_unpunctuated:
        out.answer = stripped = stripped.rstrip(" ,;:") + "."
        out.text_cleaned = True
    if n_answer < cfg.min_answer_words:
        n_before = word_count(answer)
        if n_before >= cfg.min_answer_words:
            return _reject(out, "boilerplate_only",
                           f"{n_answer} words left of {n_before} after removing greetings and sign-offs")
        return _reject(out, "answer_too_short", f"{n_answer} words < min_answer_words={cfg.min_answer_words}")
    if n_answer > cfg.max_answer_words:
        return _reject(out, "answer_too_long", f"{n_answer} words > max_answer_words={cfg.max_answer_words}")
    if n_question < cfg.min_question_words:
        return _reject(out, "question_too_short", f"{n_question} words < min_question_words={cfg.min_question_words}")
    if n_question > cfg.max_question_words:
        return _reject(out, "question_too_long", f"{n_question} words > max_question_words={cfg.max_question_words}")
    residue = residual_boilerplate(stripped, rules)
    if residue:
        return _reject(out, "boilerplate_residue", f"still matches {residue[0]!r}")
    ok, code = is_language(f"{question}\n{stripped}", cfg.language, cfg.language_fast_accept, cfg.language_seed)
    out.language = code
    if not ok:
        return _reject(out, "non_english", f"detected language '{code}', expected '{cfg.language}'")
    mining = cfg.boilerplate_mining
    if mining.enabled:
        out.edges = edge_units(stripped, mining.edge_sentences, mining.min_words, tuple(mining.positions))
    return out


def strip_mined(entry: dict, units: list, mined: MinedBoilerplate, min_answer_words: int) -> tuple[str, str] | None:
    """Remove a kept entry's mined edge sentences in place; (reason, detail) when too little answer is left.

    The removed sentences go to `meta.boilerplate_mined` (the review sample shows them).
    """
    source = entry["meta"]["source"]
    if not mined.hits(source, units):
        return None
    answer = entry["messages"][1]["content"]
    stripped, removed = mined.strip(answer, source)
    if not removed:
        return None
    n_left, n_before = word_count(stripped), word_count(answer)
    if n_left < min_answer_words:
        return "boilerplate_only", (f"{n_left} words left of {n_before} after removing {len(removed)} mined "
                                    f"boilerplate sentences ({removed[0]!r}…)")
    entry["messages"][1]["content"] = stripped
    entry["meta"]["boilerplate_mined"] = removed
    entry["meta"]["phrases_cleaned"] = True
    return None


def _reject(out: Outcome, reason: str, detail: str) -> Outcome:
    out.reason, out.detail = reason, detail
    return out


def curated_entry(out: Outcome) -> dict:
    raw = out.raw
    meta = {"source": raw.source, "source_file": raw.file, "source_line": raw.line}
    if out.pii:
        meta["pii_scrubbed"] = out.pii
    meta["text_cleaned"] = out.text_cleaned
    meta["phrases_cleaned"] = out.phrases_cleaned
    if "system" in raw.extra:
        meta["system"] = raw.extra["system"]
    return {"id": raw.id, "messages": [{"role": "user", "content": out.question},
                                       {"role": "assistant", "content": out.answer}], "meta": meta}


def rejected_entry(raw: RawRecord, reason: str, detail: str, **extra: object) -> dict:
    return {"id": raw.id, "reason": reason, "detail": detail,
            "record": {"question": raw.question, "answer": raw.answer, **raw.extra},
            "source": raw.source, "source_file": raw.file, "source_line": raw.line, **extra}


def dedup_text(entry: dict, on: str) -> str:
    question, answer = (m["content"] for m in entry["messages"])
    return _dedup_text(question, answer, on)


def _dedup_text(question: str, answer: str, on: str) -> str:
    return {"pair": f"{question}\n{answer}", "question": question, "answer": answer}[on]


# -- the per-record work, in this process or in a pool of workers ----------------------------
class Curator:
    """The pure per-record work of the stage: `curate_record` plus the record's dedup features.

    Only the dedup index look-ups are sequential (the first record kept wins), so everything
    else can run in worker processes; the results come back in input order, and the
    outputs are the same with any number of workers.
    """

    def __init__(self, cfg: CurationConfig):
        self.cfg = cfg
        self.rules = compile_rules(cfg)
        self.tail_words = {w.lower() for w in cfg.truncation_tail_words}
        self.dedup = Deduplicator(cfg)

    def batch(self, records: list[RawRecord]) -> list[tuple[Outcome, Features | None]]:
        """(outcome without its raw record, dedup features of a kept one) per record."""
        out = []
        for raw in records:
            outcome = curate_record(raw, self.cfg, self.rules, self.tail_words)
            features = None if outcome.reason else self.dedup.features(
                _dedup_text(outcome.question, outcome.answer, self.cfg.dedup_on))
            outcome.raw = None  # the caller holds it: not pickled back
            out.append((outcome, features))
        return out


_WORKER: Curator | None = None


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent dies, however it dies.

    Why PR_SET_PDEATHSIG and not a process group the runner kills: a SIGKILLed parent runs no
    cleanup at all, and outside Slurm (laptop, `make demo` without Slurm, CI) no cgroup ends
    the workers either; blocked on a pipe write to the dead parent, they would live forever.
    The kernel's parent-death signal needs no cooperation from the parent. Elsewhere (macOS)
    it is a no-op: the executor's own watchdog is all there is.
    """
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    # The parent may have died between fork and prctl: then no signal will ever come.
    if os.getppid() != parent_pid:
        os._exit(1)


def _init_worker(cfg: CurationConfig, parent_pid: int) -> None:
    global _WORKER
    if sys.platform.startswith("linux"):
        _die_with_parent(parent_pid)
    _WORKER = Curator(cfg)


def _work(records: list[RawRecord]) -> list[tuple[Outcome, Features | None]]:
    return _WORKER.batch(records)


def available_cpus() -> int:
    """CPUs this process may run on (a Slurm job's allocation, not the whole node)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Runner:
    """Runs `Curator.batch` here, or in `workers` processes once an input has more than one batch."""

    def __init__(self, cfg: CurationConfig, workers: int):
        self.cfg = cfg
        self.workers = workers
        self.local = Curator(cfg)
        self.pool = None

    def submit(self, records: list[RawRecord], full: bool):
        if self.pool is None and full and self.workers > 1:
            log.info("curation: %d worker processes", self.workers)
            # ProcessPoolExecutor, not multiprocessing.Pool: a worker that dies (OOM kill) fails the
            # stage instead of leaving it waiting forever for the lost batch.
            # fork on Linux, named: the workers' parent must be this process (a forkserver would
            # be their parent under Python 3.14's default, and outlive us for the death signal).
            context = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
            self.pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                            initargs=(self.cfg, os.getpid()))
        if self.pool is None:
            return self.local.batch(records)
        return self.pool.submit(_work, records)

    @property
    def in_flight(self) -> int:
        return 2 * self.workers + 1 if self.pool is not None else 1

    @staticmethod
    def result(handle: list | Future) -> list:
        if isinstance(handle, list):
            return handle
        try:
            return handle.result()
        except BrokenProcessPool:
            raise StageError("a curation worker process died (out of memory?): rerun with fewer "
                             "--set curation.workers=N (1: no worker processes)") from None

    def close(self, ok: bool = True) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=not ok)
            self.pool = None


def curated_stream(items: Iterable[RawRecord | BadLine], runner: Runner, seen_ids: set[str],
                   batch_records: int | None = None) -> Iterator[tuple[RawRecord | BadLine, Outcome | None,
                                                                      Features | None]]:
    """(item, outcome, features) in input order; the outcome is None for a bad line and for a record
    whose id was already seen (the same file given twice): those are not curated.

    Records go to the runner in batches of `batch_records` (default BATCH_RECORDS), at most
    `runner.in_flight` batches ahead of the one being yielded (bounded memory).
    """
    batch_records = batch_records or BATCH_RECORDS
    pending: deque = deque()

    def flush(block: list, full: bool) -> None:
        records = [item for item, fresh in block if fresh]
        pending.append((block, runner.submit(records, full) if records else []))

    def drain(keep: int) -> Iterator:
        while len(pending) > keep:
            block, handle = pending.popleft()
            results = iter(runner.result(handle))
            for item, fresh in block:
                if fresh:
                    outcome, features = next(results)
                    outcome.raw = item
                    yield item, outcome, features
                else:
                    yield item, None, None

    block: list[tuple[RawRecord | BadLine, bool]] = []
    n_records = 0
    for item in items:
        fresh = not isinstance(item, BadLine) and item.id not in seen_ids
        if fresh:
            seen_ids.add(item.id)
            n_records += 1
        block.append((item, fresh))
        if n_records >= batch_records:
            flush(block, full=True)
            block, n_records = [], 0
            yield from drain(runner.in_flight - 1)
    if block:
        flush(block, full=False)
    yield from drain(0)


# -- manual validation ------------------------------------------------------------------
def sample_for_review(entries: list[dict], size: int, seed: int, exclude: set[str] = frozenset()) -> list[dict]:
    """A sample stratified by source: proportional shares, at least one per source when size allows."""
    by_source: dict[str, list[dict]] = defaultdict(list)
    for entry in entries:
        if entry["id"] not in exclude:
            by_source[entry["meta"]["source"]].append(entry)
    total = sum(len(v) for v in by_source.values())
    if size <= 0 or total == 0:
        return []
    size = min(size, total)
    sources = sorted(by_source)
    quota = {s: (1 if size >= len(sources) else 0) for s in sources}
    left = size - sum(quota.values())
    shares = {s: left * len(by_source[s]) / total for s in sources}
    for s in sources:
        quota[s] += int(shares[s])
    for s in sorted(sources, key=lambda s: shares[s] - int(shares[s]), reverse=True)[:size - sum(quota.values())]:
        quota[s] += 1
    rng = random.Random(seed)
    sample = []
    for s in sources:
        pool = by_source[s]
        sample += rng.sample(pool, min(quota[s], len(pool)))
    return sample


def review_rows(sample: list[dict]) -> list[dict]:
    return [{"id": e["id"], "source": e["meta"]["source"], "decision": "", "edited_answer": "", "note": "",
             "question": e["messages"][0]["content"], "answer": e["messages"][1]["content"],
             "boilerplate_mined": " | ".join(e["meta"].get("boilerplate_mined", []))} for e in sample]


def review_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=REVIEW_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_decisions(path: Path) -> dict[str, dict]:
    """`{id: {"decision", "edited_answer", "line"}}` from a marked CSV or JSONL review file.

    An empty decision means not reviewed yet. An unknown decision, or 'edit' without an
    edited answer, is an InputError naming file and line (a typo must not pass silently).
    """
    rows: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".jsonl":
        for item in iter_jsonl(path, max_record_bytes=1 << 26):
            if isinstance(item, BadLine):
                raise InputError(f"{item.reason}: {item.detail}", file=item.file, line=item.line)
            rows.append((item.line, item.record))
    else:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "id" not in reader.fieldnames or "decision" not in reader.fieldnames:
                raise InputError("a review file needs the columns id and decision", file=str(path), line=1)
            line = 1
            for row in reader:
                rows.append((line + 1, row))
                line = reader.line_num
    out: dict[str, dict] = {}
    for line, row in rows:
        decision = str(row.get("decision") or "").strip().lower()
        rid = str(row.get("id") or "").strip()
        if not decision:
            continue
        if not rid:
            raise InputError("a decision without an id", file=str(path), line=line)
        if decision not in DECISIONS:
            raise InputError(f"unknown decision '{decision}' (accept, reject or edit)", file=str(path), line=line)
        edited = str(row.get("edited_answer") or "").strip()
        if decision == "edit" and not edited:
            raise InputError(f"decision 'edit' for {rid} without an edited_answer", file=str(path), line=line)
        out[rid] = {"decision": decision, "edited_answer": edited, "line": line,
                    "note": str(row.get("note") or "").strip()}
    return out


# -- the statistics block -----------------------------------------------------------------
def statistics(total: int, saved: int, duplicates: int, low_quality: int, text_cleaned: int,
               phrases_cleaned: int) -> dict:
    return {"total_lines_processed": total, "total_examples_saved": saved, "duplicates_removed": duplicates,
            "low_quality_removed": low_quality, "text_cleaned": text_cleaned, "phrases_cleaned": phrases_cleaned,
            "retention_rate": round(100.0 * saved / total, 2) if total else 0.0}


def format_statistics(stats: dict) -> str:
    """The workshop's block, exactly."""
    return "\n".join([
        "--- CURATION STATISTICS ---",
        f"Total lines processed:      {stats['total_lines_processed']}",
        f"Total examples saved:       {stats['total_examples_saved']}",
        f"Duplicates removed:         {stats['duplicates_removed']}",
        f"Low quality removed:        {stats['low_quality_removed']}",
        f"Text cleaned:               {stats['text_cleaned']}",
        f"Phrases cleaned:            {stats['phrases_cleaned']}",
        f"Retention rate:             {stats['retention_rate']:.2f}%",
    ])


# -- the stage ------------------------------------------------------------------------------
def input_specs(cfg: CurationConfig, inputs: list[str] | None = None, input_format: str | None = None) -> list[InputSpec]:
    """The configured inputs, or the --input paths (format from --input-format, else detected)."""
    if inputs:
        return [InputSpec(path=p, format=input_format or "auto") for p in inputs]
    specs = list(cfg.inputs)
    if input_format:
        specs = [InputSpec(path=s.path, format=input_format, question_column=s.question_column,
                           answer_column=s.answer_column, source=s.source) for s in specs]
    return specs


def curate(cfg: PipelineConfig, inputs: list[str] | None = None, input_format: str | None = None,
           force: bool = False, show_progress: bool = True) -> dict:
    """Run stage 1; returns its statistics (those of the current run when it was up to date)."""
    ccfg = cfg.curation
    ccfg.inputs = input_specs(ccfg, inputs, input_format)
    if not ccfg.inputs:
        raise InputError("no inputs (set curation.inputs or pass --input)")
    paths = [cfg.resolve(spec.path) for spec in ccfg.inputs]
    marked = cfg.resolve(ccfg.review_decisions) if ccfg.review_decisions else None
    use_marked = marked is not None and marked.is_file()
    if marked is not None and not use_marked:
        log.info("no marked review file at %s: no review decisions to apply", marked)
    with StageRun("curation", cfg, inputs=paths + ([marked] if use_marked else []),
                  config_sections=["curation", "project"], output_subdir=OUTPUT_SUBDIR, force=force) as run:
        if run.up_to_date:
            stats = run.previous.get("stats", {})
            if "total_lines_processed" in stats:
                print(format_statistics(stats))
            return stats
        stats = _run(run, cfg, paths, marked if use_marked else None, show_progress)
    return stats


def _run(run: StageRun, cfg: PipelineConfig, paths: list[Path], marked: Path | None, show_progress: bool) -> dict:
    ccfg = cfg.curation
    t0 = time.time()
    rules = compile_rules(ccfg)
    decisions = read_decisions(marked) if marked else {}
    curated, rejected = run.writer("curated.jsonl"), run.writer("rejected.jsonl")
    dedup = Deduplicator(ccfg)
    reasons: Counter = Counter()
    per_source: dict[str, Counter] = defaultdict(Counter)
    pii_total: Counter = Counter()
    n_in = text_cleaned = phrases_cleaned = duplicates = n_mined = 0
    kept: list[dict] = []
    seen_ids: set[str] = set()
    miner = BoilerplateMiner(ccfg.boilerplate_mining) if ccfg.boilerplate_mining.enabled else None
    edges: list[list] = []  # per kept entry, its edge units (mining)
    runner = Runner(ccfg, ccfg.workers or available_cpus())
    ok = False
    try:
        for spec, path in zip(ccfg.inputs, paths):
            source = spec.source or source_name(path)
            n_file = bad_file = 0
            first_bad: BadLine | None = None
            items = read_input(path, spec.format, source, spec.question_column, spec.answer_column,
                               cfg.project.max_record_bytes)
            bar = tqdm(items, desc=f"curation {path.name}", unit="rec", disable=not show_progress, mininterval=2.0,
                       leave=False)
            for item, out, features in curated_stream(bar, runner, seen_ids):
                n_in += 1
                n_file += 1
                if isinstance(item, BadLine):
                    bad_file += 1
                    first_bad = first_bad or item
                    log.warning("%s: %s (%s) — quarantined in rejected.jsonl", item.where(), item.reason, item.detail)
                    rejected.write_record({**item.rejected(), "source": source})
                    reasons[item.reason] += 1
                    per_source[source]["rejected"] += 1
                    continue
                if out is None:  # the same file given twice: ids collide, keep the first
                    entry = rejected_entry(item, "duplicate_input", "the same record was read twice (same file?)",
                                           duplicate_of=item.id)
                    rejected.write_record(entry)
                    reasons["duplicate_input"] += 1
                    duplicates += 1
                    per_source[source]["rejected"] += 1
                    continue
                text_cleaned += out.text_cleaned
                phrases_cleaned += out.phrases_cleaned
                if out.reason:
                    rejected.write_record(rejected_entry(item, out.reason, out.detail))
                    reasons[out.reason] += 1
                    per_source[source]["rejected"] += 1
                    continue
                entry = curated_entry(out)
                dup = dedup.check_features(item.id, features)
                if dup is not None:
                    reason = f"{dup.kind}_duplicate"
                    rejected.write_record(rejected_entry(
                        item, reason, f"{dup.kind} duplicate of {dup.kept_id} (Jaccard {dup.similarity:.2f})",
                        duplicate_of=dup.kept_id, similarity=dup.similarity))
                    reasons[reason] += 1
                    duplicates += 1
                    per_source[source]["rejected"] += 1
                    continue
                pii_total.update(out.pii)
                kept.append(entry)
                if miner is not None:
                    miner.add(source, out.edges)
                    edges.append([unit[:2] for unit in out.edges])  # (position, key): the sentences are counted
            bar.close()
            run.check_bad_fraction(str(path), bad_file, n_file, first_bad)
            log.info("%s: %d records read (%d bad lines)", path, n_file, bad_file)
        ok = True
    finally:
        runner.close(ok)

    mined = miner.mine() if miner is not None else None
    if mined:  # the whole corpus is counted: remove what was mined from the answers kept so far
        still = []
        for entry, units in zip(kept, edges):
            was_cleaned = entry["meta"]["phrases_cleaned"]
            before = entry["messages"][1]["content"]
            rejection = strip_mined(entry, units, mined, ccfg.min_answer_words)
            if rejection:
                meta = entry["meta"]
                rejected.write_record({"id": entry["id"], "reason": rejection[0], "detail": rejection[1],
                                       "record": entry, "source": meta["source"], "source_file": meta["source_file"],
                                       "source_line": meta["source_line"]})
                reasons[rejection[0]] += 1
                per_source[meta["source"]]["rejected"] += 1
                continue
            if entry["messages"][1]["content"] != before:
                n_mined += 1
                phrases_cleaned += not was_cleaned
            still.append(entry)
        kept = still
    edges.clear()

    applied = Counter()
    final: list[dict] = []
    for entry in kept:
        decision = decisions.get(entry["id"])
        if decision and decision["decision"] == "reject":
            msg = f"rejected in manual review ({marked}:{decision['line']})"
            rejected.write_record({"id": entry["id"], "reason": "review_rejected",
                                   "detail": msg + (f": {decision['note']}" if decision["note"] else ""),
                                   "record": entry, "source": entry["meta"]["source"]})
            reasons["review_rejected"] += 1
            applied["reject"] += 1
            continue
        if decision and decision["decision"] == "edit":
            entry["messages"][1]["content"] = clean_text(decision["edited_answer"], ccfg, rules)
            applied["edit"] += 1
        if decision:
            entry["meta"]["review"] = decision["decision"]
            if decision["decision"] == "accept":
                applied["accept"] += 1
        final.append(entry)
        curated.write_record(entry)
        per_source[entry["meta"]["source"]]["kept"] += 1
    unknown = set(decisions) - {e["id"] for e in kept}
    if unknown:
        log.warning("%d review decisions name records not in this run's output (e.g. %s): ignored",
                    len(unknown), sorted(unknown)[0])

    sample = sample_for_review(final, ccfg.review_sample_size, ccfg.review_seed, exclude=set(decisions))
    rows = review_rows(sample)
    run.writer("review_sample.csv").write(review_csv(rows))
    if mined is not None:
        run.writer("mined_boilerplate.csv").write(candidates_csv(mined))
    review_jsonl = run.writer("review_sample.jsonl")
    for row in rows:
        review_jsonl.write_record(row)

    run.conserve(n_in, kept=curated.lines, rejected=rejected.lines)
    block = statistics(n_in, curated.lines, duplicates, rejected.lines - duplicates, text_cleaned, phrases_cleaned)
    seconds = time.time() - t0
    details = {**block, "rejected_by_reason": dict(sorted(reasons.items())), "per_source": {
        s: dict(c) for s, c in sorted(per_source.items())}, "pii_scrubbed": dict(sorted(pii_total.items())),
        "dedup": dedup.stats, **({"boilerplate_mining": {
            **report(mined, ccfg.boilerplate_mining.report_top), "answers_changed": n_mined}} if mined is not None
            else {}), "review": {"decisions_file": str(marked) if marked else None, "applied": dict(applied),
                                         "unknown_ids": len(unknown), "sample_size": len(rows)}}
    # wall time goes to manifest.json only: stats.json stays byte-identical across reruns
    run.writer("stats.json").write(json.dumps(details, ensure_ascii=False, indent=2) + "\n")
    run.stats.update({**details, "seconds": round(seconds, 2),
                      "records_per_second": round(n_in / seconds, 1) if seconds else None})
    print(format_statistics(block))
    if mined is not None and mined.candidates:
        print(format_mined(mined))
    return details
