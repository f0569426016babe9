"""The evaluation stage: base vs fine-tuned on the held-out split and the triage set, report.md/json/png.

    evaluate(cfg)                # inference/run-evaluate.sh -> $PROJECT_DIR/inference/
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from healthai.config import PipelineConfig
from healthai.errors import InputError
from healthai.model.generation import Generation, generate_answers, next_token_probabilities
from healthai.model.inference import (
    ADAPTER_FILES,
    MODES,
    adapter_path,
    attach_adapter,
    base_path,
    check_adapter,
    check_base,
    load_base,
)

log = logging.getLogger("healthai.inference")


def split_paths(cfg: PipelineConfig) -> tuple[Path, Path]:
    split = cfg.inference.eval_split
    folder = cfg.project_path() / "3.merge"
    return folder / f"{split}.jsonl", folder / f"{split}.meta.jsonl"


def read_eval_items(cfg: PipelineConfig) -> tuple[list[dict], list[dict], int]:
    """(items, rejected, n_in) from the split and its line-aligned meta sidecar.

    An item is {"id", "question", "reference", "is_urgent", "category"}; a line without a user
    and an assistant turn, or with a meta line that is not an object with a boolean is_urgent,
    is rejected (and counted), never silently dropped.
    """
    from healthai.pipeline.io import BadLine, iter_jsonl

    data_path, meta_path = split_paths(cfg)
    for p in (data_path, meta_path):
        if not p.is_file():
            raise InputError("evaluation split not found; run stage 3 first (cd 3.Merge && sbatch run-merge.sh)",
                             file=str(p))
    limit = cfg.project.max_record_bytes
    data = list(iter_jsonl(data_path, limit))
    meta = list(iter_jsonl(meta_path, limit))
    if len(data) != len(meta):
        raise InputError(f"{len(data)} lines but {meta_path.name} has {len(meta)}: the sidecar must be "
                         f"line-aligned", file=str(meta_path))
    items, rejected = [], []
    for d, m in zip(data, meta):
        if isinstance(d, BadLine):
            rejected.append(d.rejected())
            continue
        if isinstance(m, BadLine):
            rejected.append(m.rejected())
            continue
        messages = d.record.get("messages") or []
        user = next((x.get("content") for x in messages if isinstance(x, dict) and x.get("role") == "user"), None)
        ref = next((x.get("content") for x in messages if isinstance(x, dict) and x.get("role") == "assistant"), None)
        where = f"{d.file}:{d.line}"
        if not isinstance(user, str) or not user.strip() or not isinstance(ref, str):
            rejected.append({"id": where, "reason": "bad_structure", "detail": "no user or assistant message",
                             "record": d.record})
            continue
        if not isinstance(m.record.get("is_urgent"), bool):
            rejected.append({"id": f"{m.file}:{m.line}", "reason": "bad_meta",
                             "detail": "is_urgent missing or not true/false", "record": m.record})
            continue
        items.append({"id": m.record.get("id") or where, "question": user.strip(), "reference": ref.strip(),
                      "is_urgent": m.record["is_urgent"], "category": m.record.get("category")})
    return items, rejected, len(data)


def read_triage_set(cfg: PipelineConfig) -> list[dict]:
    """The hand-labelled triage set (`inference.triage_set`, data/triage/triage_labels.jsonl) as
    evaluation items {"id", "question", "is_urgent", "category"}; [] when the key is null."""
    if not cfg.inference.triage_set:
        return []
    from healthai.pipeline.io import read_jsonl

    path = cfg.resolve(cfg.inference.triage_set)
    if not path.is_file():
        raise InputError("hand-labelled triage set not found (set inference.triage_set: null to skip it)",
                         file=str(path))
    return [{"id": r["id"], "question": r["question"], "is_urgent": bool(r["urgent"]),
             "category": r.get("case") or r["source"]} for r in read_jsonl(path)]


def evaluate(cfg: PipelineConfig, force: bool = False, progress: bool = False) -> dict:
    """Answer the split with base and fine-tuned model, score both, write the report (a StageRun).

    The base model is loaded once; its answers are generated first, then the adapter is put on
    top for the fine-tuned answers (one 9B load instead of two).
    """
    from healthai.model import evaluation as ev
    from healthai.pipeline.stage import StageRun

    data_path, meta_path = split_paths(cfg)
    adapter = adapter_path(cfg)
    check_adapter(adapter)
    check_base(base_path(cfg))
    inputs = [data_path, meta_path, base_path(cfg) / "config.json"] + [adapter / n for n in ADAPTER_FILES]
    if cfg.inference.triage_set:
        inputs.append(cfg.resolve(cfg.inference.triage_set))
    agreement = export_agreement_path(cfg)
    if agreement.is_file():  # the export stage ran: its llama.cpp answers go into the report
        inputs.append(agreement)
    with StageRun("evaluate", cfg, inputs=inputs, config_sections=["inference", "filter", "models"],
                  output_subdir="inference", force=force) as run:
        if run.up_to_date:
            return run.previous or {}
        items, rejected_rows, n_in = read_eval_items(cfg)
        limit = cfg.inference.eval_limit
        skipped = max(0, len(items) - limit) if limit else 0
        items = items[:limit] if limit else items
        if not items:
            raise InputError("no usable item to evaluate", file=str(data_path))
        rejected = run.writer("rejected.jsonl")
        for row in rejected_rows:
            run.log.warning("%s: %s (%s) — quarantined in rejected.jsonl", row["id"], row["reason"], row["detail"])
            rejected.write_record(row)
        questions = [it["question"] for it in items]
        prompts = list(cfg.inference.prompts)
        seek = cfg.filter.urgent_prefix.split()[0]

        answers: dict[str, list[Generation]] = {}
        prompt_answers: dict[str, list[dict]] = {}
        p_seek: dict[str, list[float]] = {}
        timings: dict[str, dict] = {}
        triage_items = read_triage_set(cfg)
        t_answers: dict[str, list[Generation]] = {}
        t_seek: dict[str, list[float]] = {}
        model, tokenizer = load_base(cfg)
        for mode in MODES:
            if mode == "ft":
                model = attach_adapter(model, cfg)
            t0 = time.perf_counter()
            answers[mode] = generate_answers(model, tokenizer, questions, cfg, progress=progress)
            took = time.perf_counter() - t0
            tokens = sum(g.new_tokens for g in answers[mode])
            timings[mode] = {"seconds": round(took, 2), "new_tokens": tokens,
                             "tokens_per_s": round(tokens / took, 1) if took else None}
            run.log.info("%s: %d answers, %d tokens in %.1f s", mode, len(questions), tokens, took)
            prompt_answers[mode] = [{"question": g.question, "answer": g.answer}
                                    for g in generate_answers(model, tokenizer, prompts, cfg)]
            p_seek[mode] = [p[seek] for p in next_token_probabilities(model, tokenizer, questions, cfg, [seek])]
            if triage_items:
                t_questions = [it["question"] for it in triage_items]
                # only the opening decides triage: a few tokens per question keep the report cheap
                short = dataclasses.replace(cfg, inference=dataclasses.replace(
                    cfg.inference, max_new_tokens=cfg.inference.triage_max_new_tokens))
                t_answers[mode] = generate_answers(model, tokenizer, t_questions, short)
                t_seek[mode] = [p[seek] for p in next_token_probabilities(model, tokenizer, t_questions, cfg, [seek])]

        scored = {mode: [ev.score_answer({**it, "answer": g.answer, "new_tokens": g.new_tokens,
                                          f"p_{seek.lower()}": p}, cfg.filter)
                         for it, g, p in zip(items, answers[mode], p_seek[mode])] for mode in MODES}
        summaries = {mode: ev.summarize(rows, cfg.inference.ci_level) for mode, rows in scored.items()}
        worst = {mode: ev.worst_cases(rows, cfg.inference.worst_cases) for mode, rows in scored.items()}
        first_token = {mode: ev.first_token_summary(p_seek[mode], [it["is_urgent"] for it in items]) for mode in MODES}
        info = {"split": cfg.inference.eval_split, "items": len(items), "urgent items": sum(i["is_urgent"] for i in items),
                "base model": str(base_path(cfg)), "adapter": str(adapter), "site": cfg.site.name,
                "decoding": "sampling" if cfg.inference.do_sample else "greedy",
                "max_new_tokens": cfg.inference.max_new_tokens, "date": time.strftime("%Y-%m-%d %H:%M")}
        extra = [(f'First-token probability of "{seek}"', first_token_table(first_token, seek))]
        if triage_items:  # the hand-labelled triage set (inference.triage_set): labels by a clinician, not stage 2
            t_scored = {m: [ev.score_answer({**it, "answer": g.answer, f"p_{seek.lower()}": p}, cfg.filter)
                            for it, g, p in zip(triage_items, t_answers[m], t_seek[m])] for m in MODES}
            triage_set = {"path": str(cfg.resolve(cfg.inference.triage_set)), "items": len(triage_items),
                          "summaries": {m: ev.summarize(rows, cfg.inference.ci_level) for m, rows in t_scored.items()},
                          "first_token": {m: ev.first_token_summary(t_seek[m], [it["is_urgent"] for it in triage_items])
                                          for m in MODES}}
            extra.append(("Hand-labelled triage set", ev.triage_set_section(triage_set, seek)))
        if agreement.is_file():
            extra.append(("The workshop prompts in llama.cpp", llama_section(agreement, cfg)))
        out = run.writer("answers.jsonl")
        for i, it in enumerate(items):
            out.write_record({**it, "answers": {m: answers[m][i].answer for m in MODES},
                              "checks": {m: {k: scored[m][i][k] for k in ("closing", "prefix", "forbidden", "dosages",
                                                                         "sentences", "words", "similarity")}
                                         for m in MODES},
                              f"p_{seek.lower()}": {m: p_seek[m][i] for m in MODES}})
        with_report = run.writer("report.md")
        with_report.write(ev.render_report(summaries, prompt_answers, worst, info, extra_sections=extra))
        data = ev.report_data(summaries, prompt_answers, worst, info,
                              extras={"first_token": first_token, "timings": timings,
                                      "triage_set": triage_set if triage_items else None})
        import json

        run.writer("report.json").write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        png = run.writer("report.png", binary=True)
        ev.plot_comparison(summaries, png.fh)
        run.conserve(n_in=n_in, kept=len(items), rejected=len(rejected_rows), skipped=skipped)
        run.stats.update({"summaries": summaries, "first_token": first_token, "timings": timings})
        return {"summaries": summaries, "out_dir": str(run.out_dir), "first_token": first_token}


def export_agreement_path(cfg: PipelineConfig) -> Path:
    from healthai.model.gguf import OUTPUT_SUBDIR

    return cfg.project_path() / OUTPUT_SUBDIR / "agreement.json"


def llama_section(path: Path, cfg: PipelineConfig) -> str:
    """The export's greedy answers: transformers next to llama.cpp (export.chat_type, the file people chat with)."""
    import json

    from healthai.model.evaluation import _md_text

    agreement = json.loads(path.read_text(encoding="utf-8"))
    qtype = cfg.export.chat_type
    most = next(iter(agreement.values()), {}).get("max_new_tokens", "?")
    lines = [(f"Greedy answers written by the export stage ({path}): transformers and the `{qtype}` GGUF "
              f"through llama.cpp, the file `run-chat.sh` loads. Up to {most} tokens each."), ""]
    for variant, a in agreement.items():
        g = a["gguf"].get(qtype)
        if not g:
            continue
        lines.append(f"**{variant}** ({qtype}): the same tokens as transformers on {g['token_agreement']:.0%} of "
                     f"the prompts, the same urgent decision on {g['urgent_decision_agreement']:.0%}.")
        lines.append("")
        lines += ["| prompt | transformers | llama.cpp |", "|---|---|---|"]
        for q, hf, row in zip(a["prompts"], a["transformers"], g["prompts"]):
            lines.append(f"| {_md_text(q)[:120]} | {_md_text(hf) or '(empty)'} | {_md_text(row['answer']) or '(empty)'} |")
        lines.append("")
    return "\n".join(lines)


def first_token_table(first_token: dict[str, dict], word: str) -> str:
    lines = [f'Mean P(first answer token = "{word}") right after the generation prompt. A model that learned '
             "the urgent rule puts the mass on urgent questions; one that learned only the rate spreads it. "
             "AUC: the chance that an urgent question gets a higher probability than a non-urgent one "
             "(0.5 = the rate only, 1.0 = the rule).", "",
             "| model | urgent prompts | non-urgent prompts | AUC |", "|---|---|---|---|"]
    for mode, s in first_token.items():
        u = "n/a" if s["urgent_mean"] is None else f"{s['urgent_mean']:.4f} (n={s['urgent_n']})"
        n = "n/a" if s["non_urgent_mean"] is None else f"{s['non_urgent_mean']:.4f} (n={s['non_urgent_n']})"
        auc = "n/a" if s.get("auc") is None else f"{s['auc']:.2f}"
        lines.append(f"| {mode} | {u} | {n} | {auc} |")
    return "\n".join(lines)
