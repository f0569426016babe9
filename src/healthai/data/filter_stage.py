"""Stage 2 as one StageRun: filter -> categorize -> stratified sample -> rewrite -> validate -> write.

    manifest = run_filter(cfg, force=False)

Reads `$PROJECT_DIR/1.curation/curated.jsonl`; writes to `$PROJECT_DIR/2.filter/`:
rewritten.jsonl (the sample), reserve.jsonl (extra validated rewrites for stage 3's top-up),
rejected.jsonl (every record not kept, with the failed rule), pool.jsonl (records that passed
the filters but were not drawn), sampling.json, validation.json, urgent_disagreements.jsonl,
sampling.png, manifest.json. Conservation: in = sample + reserve + rejected + not_sampled.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter, OrderedDict
from pathlib import Path

from healthai.config import PipelineConfig
from healthai.data.filtering import filter_record
from healthai.pipeline.io import BadLine
from healthai.data.rewriting import Item, LLMRewriter, Outcome, RewriteStats, check_model_dir, rewrite_items
from healthai.data.sampling import allocate, format_table, sample_stratified
from healthai.pipeline.stage import StageRun
from healthai.data.triage import categorize, is_urgent, urgent_matches

log = logging.getLogger("healthai.filter")

OUT_SUBDIR = "2.filter"


def input_path(cfg: PipelineConfig) -> Path:
    return cfg.project_path() / "1.curation" / "curated.jsonl"


def rewriter_dir(cfg: PipelineConfig) -> Path:
    """models.rewriter, else models.base (site profile paths, {project_dir} expanded)."""
    return cfg.resolve(cfg.models.rewriter or cfg.models.base)


def build_record(pooled: dict, outcome: Outcome, cfg: PipelineConfig) -> dict:
    """The stage-2 record: {"id", "messages": [system, user, assistant], "meta": {...}}."""
    f = cfg.filter
    meta = {
        "category": pooled["category"],
        "is_urgent": outcome.is_urgent,
        "backend": outcome.backend,
        "original_answer": pooled["original_answer"],
        "source": pooled["source"],
        "checks": outcome.checks,
        "detector_is_urgent": pooled["detector_urgent"],
        "model_is_urgent": outcome.model_is_urgent,
        "fallback": outcome.fallback,
    }
    if outcome.llm_error:
        meta["llm_error"] = outcome.llm_error
    for key in ("source_file", "source_line"):
        if key in pooled["meta"]:
            meta[key] = pooled["meta"][key]
    return {"id": pooled["id"], "messages": [
        {"role": "system", "content": f.assistant_system},
        {"role": "user", "content": pooled["question"]},
        {"role": "assistant", "content": outcome.answer},
    ], "meta": meta}


def plot_sampling(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["category"] for r in rows]
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar([i - 0.2 for i in x], [r["target"] for r in rows], 0.4, label="target (weight x size)")
    ax.bar([i + 0.2 for i in x], [r["got"] for r in rows], 0.4, label="got")
    ax.set_xticks(list(x), names, rotation=20, ha="right")
    ax.set_ylabel("records")
    ax.set_title("Stage 2 stratified sample: target vs got per category")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_filter(cfg: PipelineConfig, force: bool = False, input_file: str | Path | None = None,
               progress: bool = True) -> dict:
    """Run stage 2; returns the manifest (also when the outputs were already current)."""
    f = cfg.filter
    src = Path(input_file) if input_file else input_path(cfg)
    inputs: list[Path] = [src]
    sections = ["filter"]
    if f.backend == "llm":
        check_model_dir(rewriter_dir(cfg))  # a clear one-line error before anything else
        inputs.append(rewriter_dir(cfg) / "config.json")  # a different model folder redoes the stage
        sections += ["models", "site"]
    with StageRun("filter", cfg, inputs=inputs, config_sections=sections, output_subdir=OUT_SUBDIR,
                  force=force) as run:
        if run.up_to_date:
            return run.previous
        t0 = time.time()
        rejected = run.writer("rejected.jsonl")
        n_in, bad, first_bad, total_lines = 0, 0, None, 0
        reasons: Counter = Counter()
        pool: dict[str, dict] = OrderedDict()
        phrases_removed = 0

        # 1. quality filters
        for item in _iter_input(src, cfg):
            n_in += 1
            total_lines += 1
            if isinstance(item, BadLine):
                bad += 1
                first_bad = first_bad or item
                reasons[item.reason] += 1
                run.reject_bad_line(item, rejected)
                continue
            record = item.record
            res = filter_record(record, f)
            if res.reason is None and record["id"] in pool:
                res.reason, res.detail = "duplicate_id", f"id {record['id']!r} already seen in this file"
            if res.reason:
                reasons[res.reason] += 1
                entry = res.rejected(record)
                entry.update(source_file=item.file, source_line=item.line)
                rejected.write_record(entry)
                continue
            phrases_removed += res.phrases_removed
            meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
            category = categorize(res.question, f)
            # categorize() puts every detector-urgent question in urgent_category: elsewhere it is False
            urgent = category == f.urgent_category and is_urgent(res.question, f)
            pool[record["id"]] = {
                "id": record["id"], "question": res.question, "answer": res.answer,
                "original_answer": record["messages"][1]["content"], "source": meta.get("source", "unknown"),
                "meta": meta, "category": category, "detector_urgent": urgent, "record": record,
            }
        run.check_bad_fraction(str(src), bad, total_lines, first_bad)
        log.info("%d records read, %d passed the filters, %d rejected", n_in, len(pool), n_in - len(pool))

        # 2. stratified sample (+ reserve)
        weights = {c.name: c.weight for c in f.categories}
        by_cat: dict[str, list[str]] = {k: [] for k in weights}
        for rid, p in pool.items():
            by_cat[p["category"]].append(rid)
        # draw a little extra so that failed rewrites do not leave the reserve short
        slack = math.ceil(f.draw_slack * (f.sample_size + f.reserve_size))
        plan = sample_stratified(by_cat, weights, f.sample_size, reserve=f.reserve_size + slack, seed=f.seed)
        quotas = {k: len(v) for k, v in plan.sample.items()}

        # 3. rewrite + validate the drawn records (sample and reserve together)
        drawn = [rid for k in weights for rid in plan.sample[k] + plan.reserve[k]]
        items = [Item(rid, pool[rid]["question"], pool[rid]["answer"], pool[rid]["detector_urgent"]) for rid in drawn]
        stats = RewriteStats()
        llm = None
        if f.backend == "llm":
            llm = LLMRewriter.load(rewriter_dir(cfg), f, device=cfg.site.device, dtype=cfg.site.dtype, seed=f.seed)
        t_rw = time.time()
        outcomes = {o.id: o for o in rewrite_items(items, f, backend=f.backend, llm=llm, stats=stats,
                                                   progress=progress)}
        rewrite_s = time.time() - t_rw

        # 4. fill each category's quota with validated rewrites in draw order; the rest is reserve
        final_sample: dict[str, list[str]] = {}
        final_reserve: dict[str, list[str]] = {}
        for k in weights:
            ok = [rid for rid in plan.sample[k] + plan.reserve[k] if outcomes[rid].answer is not None]
            final_sample[k], final_reserve[k] = ok[:quotas[k]], ok[quotas[k]:]
        short = f.sample_size - sum(len(v) for v in final_sample.values())
        if short > 0:  # rewrites that failed left the sample short: refill from the reserve, by weight
            spare = {k: len(final_reserve[k]) for k in weights}
            for k, n in allocate(weights, spare, short).items():
                final_sample[k] += final_reserve[k][:n]
                final_reserve[k] = final_reserve[k][n:]
        keep = allocate(weights, {k: len(final_reserve[k]) for k in weights}, f.reserve_size)
        extra = {k: final_reserve[k][keep[k]:] for k in weights}  # validated but beyond reserve_size
        final_reserve = {k: final_reserve[k][:keep[k]] for k in weights}
        plan.sample, plan.reserve = final_sample, final_reserve
        for k in weights:
            plan.rest[k] = extra[k] + plan.rest[k]

        out = run.writer("rewritten.jsonl")
        res_out = run.writer("reserve.jsonl")
        for k in weights:
            for rid in final_sample[k]:
                out.write_record(build_record(pool[rid], outcomes[rid], cfg))
            for rid in final_reserve[k]:
                res_out.write_record(build_record(pool[rid], outcomes[rid], cfg))
        for rid in drawn:
            o = outcomes[rid]
            if o.answer is None:
                reasons[o.reason] += 1
                p = pool[rid]
                rejected.write_record({"id": rid, "reason": o.reason, "detail": o.detail, "record": p["record"],
                                       "category": p["category"], "backend": o.backend, "llm_error": o.llm_error,
                                       "source_file": p["meta"].get("source_file"),
                                       "source_line": p["meta"].get("source_line")})
        pool_out = run.writer("pool.jsonl")
        for k in weights:
            for rid in plan.rest[k]:
                p = pool[rid]
                pool_out.write_record({**p["record"], "filter": {"category": p["category"],
                                                                  "detector_is_urgent": p["detector_urgent"]}})

        # 5. urgent cross-check (model vs detector)
        disagree = run.writer("urgent_disagreements.jsonl")
        n_model = 0
        for rid in drawn:
            o = outcomes[rid]
            if o.model_is_urgent is None:
                continue
            n_model += 1
            if o.model_is_urgent != pool[rid]["detector_urgent"]:
                disagree.write_record({"id": rid, "model_is_urgent": o.model_is_urgent,
                                       "detector_is_urgent": pool[rid]["detector_urgent"],
                                       "detector_matches": urgent_matches(pool[rid]["question"], f),
                                       "question": pool[rid]["question"]})

        # 6. reports
        table = plan.table()
        sampling = {"size": f.sample_size, "seed": f.seed, "pool": len(pool), "reserve_size": f.reserve_size,
                    "categories": table,
                    "redistributed": {r["category"]: r["diff"] for r in table if r["diff"]},
                    "note": "a category short of its target gives its shortfall to the others in proportion to "
                            "their weights; 'got' counts validated rewrites"}
        run.writer("sampling.json").write(json.dumps(sampling, ensure_ascii=False, indent=2) + "\n")
        backends = Counter(outcomes[rid].backend for k in weights for rid in final_sample[k] + final_reserve[k])
        validation = {
            "backend": f.backend,
            "pass_rates": stats.pass_rates(),
            "final_backends": dict(backends),
            "llm": {"attempts": stats.attempts, "json_failures": stats.json_failures,
                    "validation_failures": stats.validation_failures, "still_failing_after_try": stats.failures_by_try,
                    "fallbacks": stats.fallbacks, "rejected": stats.llm_rejected,
                    "generated_tokens": llm.generated_tokens if llm else 0,
                    "examples_of_failures": stats.examples} if f.backend == "llm" else None,
            "urgent": {"model_answers": n_model, "disagreements": disagree.lines,
                       "detector_urgent_in_sample": sum(pool[r]["detector_urgent"] for k in weights
                                                        for r in final_sample[k]),
                       "urgent_in_sample": sum(outcomes[r].is_urgent for k in weights for r in final_sample[k])},
        }  # timings go to manifest.json (run.stats): outputs stay byte-identical across reruns
        run.writer("validation.json").write(json.dumps(validation, ensure_ascii=False, indent=2) + "\n")
        plot_sampling(table, run.out_dir / "sampling.png")
        run.add_output(run.out_dir / "sampling.png")

        run.conserve(n_in, kept=out.lines, rejected=rejected.lines, reserve=res_out.lines,
                     not_sampled=pool_out.lines)
        run.stats.update({"rejected_by_reason": dict(reasons), "pool": len(pool), "sample": out.lines,
                          "reserve": res_out.lines, "phrases_removed": phrases_removed,
                          "categories_in_pool": {k: len(v) for k, v in by_cat.items()},
                          "backends": dict(backends), "urgent_disagreements": disagree.lines,
                          "seconds": round(time.time() - t0, 3), "rewrite_seconds": round(rewrite_s, 3),
                          "records_per_second": round(len(drawn) / rewrite_s, 1) if rewrite_s > 0 else None})
        print_summary(run.stats, table, validation, n_in)
    return run.previous


def _iter_input(src: Path, cfg: PipelineConfig):
    from healthai.pipeline.io import iter_jsonl

    return iter_jsonl(src, max_record_bytes=cfg.project.max_record_bytes, required=("id", "messages"))


def print_summary(stats: dict, table: list[dict], validation: dict, n_in: int) -> None:
    lines = ["--- FILTER STATISTICS ---", f"records in:          {n_in}",
             f"passed the filters:  {stats['pool']}"]
    for reason, n in sorted(stats["rejected_by_reason"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  rejected {reason:<22} {n}")
    lines.append(f"forbidden phrases removed: {stats['phrases_removed']}")
    lines.append(f"sample: {stats['sample']}   reserve: {stats['reserve']}   backends: {stats['backends']}")
    if validation.get("llm"):
        llm = validation["llm"]
        lines.append(f"llm: {llm['attempts']} replies, {llm['json_failures']} not valid JSON, "
                     f"{llm['validation_failures']} failed validation, {llm['fallbacks']} fell back to rules, "
                     f"{llm['rejected']} rejected")
    lines.append(f"urgent: model vs detector disagreements {validation['urgent']['disagreements']} of "
                 f"{validation['urgent']['model_answers']} model answers; urgent in sample "
                 f"{validation['urgent']['urgent_in_sample']}")
    for backend, rules in validation["pass_rates"].items():
        cells = ", ".join(f"{r} {v['rate']:.0%}" for r, v in rules.items() if v["rate"] is not None)
        lines.append(f"pass rates ({backend}): {cells}")
    print("\n".join(lines))
    print(format_table(table))
    print(json.dumps({"records_per_second": stats["records_per_second"]}))
