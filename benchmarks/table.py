"""Regenerate the table in benchmarks/README.md from benchmarks/results/*.json.

    python benchmarks/table.py          # rewrite the block between the BEGIN/END markers
    python benchmarks/table.py --check  # exit 1 when the README's table is not the results' table

One row per headline figure: the figure, its baseline measured in the same run, the ratio, the
goal and whether it holds, with the run's date and commit from the JSON (benchmarks/runinfo.py).
A figure lives here only; the stage READMEs point to this table.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BEGIN, END = "<!-- BEGIN benchmark table (benchmarks/table.py) -->", "<!-- END benchmark table -->"


@dataclass
class Row:
    """How to read one headline figure out of a result file."""

    file: str
    what: str
    figure: Callable[[dict], str]
    baseline: Callable[[dict], str]
    ratio: Callable[[dict], float | None]
    goal: str
    holds: Callable[[dict], bool | None]


ROWS = [
    Row("curation_benchmark.json", "stage 1 on 100k records: wall s",
        lambda d: f"{d['stage']['seconds']:.1f} s", lambda d: f"pandas exact dedup {d['pandas_exact_baseline']['seconds']:.1f} s",
        lambda d: d["stage"]["seconds"] / d["pandas_exact_baseline"]["seconds"],
        "< 90 s, near-dup recall ≥ 0.95", lambda d: d["stage"]["seconds"] < 90 and d["stage"]["recall"] >= 0.95),
    Row("curation_benchmark.json", "stage 1 with boilerplate mining on: wall s (median)",
        lambda d: f"{d['boilerplate_mining']['seconds_on']['median']:.1f} s",
        lambda d: f"mining off {d['boilerplate_mining']['seconds_off']['median']:.1f} s",
        lambda d: d["boilerplate_mining"]["ratio_on_off"]["median"], "≤ 1.10x mining off",
        lambda d: d["boilerplate_mining"]["ratio_on_off"]["median"] <= 1.10),
    Row("clinical_benchmark.json", "stage 4 on the full tables: wall s",
        lambda d: f"{d['stage']['wall_s_median']:.1f} s", lambda d: f"read 3 CSVs {d['baseline_read_csvs']['wall_s_median']:.1f} s",
        lambda d: d["ratio_stage_vs_baseline"], "< 60 s", lambda d: d["stage"]["wall_s_median"] < 60),
    Row("merge_near_dups.json", "merge near-dups (2000 questions): MinHash-LSH s",
        lambda d: f"{d['results'][-1]['minhash_lsh_s']:.2f} s", lambda d: f"exhaustive {d['results'][-1]['exhaustive_s']:.2f} s",
        lambda d: d["results"][-1]["speedup"], "same groups as exhaustive",
        lambda d: all(r["same_groups_as_exhaustive"] for r in d["results"])),
    Row("triage_detector.json", "urgent detector on 304 labelled questions: recall",
        lambda d: f"{d['all']['detector']['recall']:.2f} (over-triage {d['all']['detector']['over_triage']:.2f})",
        lambda d: f"slide keywords {d['all']['slide_keywords']['recall']:.2f}",
        lambda d: d["all"]["detector"]["recall"] / max(d["all"]["slide_keywords"]["recall"], 1e-9),
        "recall ≥ 0.85", lambda d: d["all"]["detector"]["recall"] >= 0.85),
    Row("rewrite_benchmark.json", "stage 2 LLM rewriting: batched prompts/s",
        lambda d: f"{d['llm']['batched']['prompts_per_second']:.2f}/s",
        lambda d: f"one at a time {d['llm']['one_at_a_time']['prompts_per_second']:.2f}/s",
        lambda d: d["batched_speedup"], f"≥ 3x, identical greedy replies",
        lambda d: d["batched_speedup"] >= d["target_speedup"] and d["greedy_replies_identical"].split("/")[0]
        == d["greedy_replies_identical"].split("/")[1]),
    Row("finetune_benchmark.json", "LoRA training (embedded model): tokens/s",
        lambda d: f"{d['training']['ours']['tokens_per_s']:.0f}", lambda d: f"TRL defaults {d['training']['trl_defaults']['tokens_per_s']:.0f}",
        lambda d: d["speedup_ours_vs_trl_defaults"], "faster than TRL defaults", lambda d: d["speedup_ours_vs_trl_defaults"] > 1),
    Row("hpo_benchmark.json", "Optuna with the median pruner: training steps saved",
        lambda d: f"{d['steps_saved']:.0%} (best loss given up {d['best_loss_given_up']:.1%})",
        lambda d: f"no pruning {d['no_pruning']['total_steps']} steps", lambda d: None,
        "≥ 30 % saved, ≤ 2 % loss given up", lambda d: d["meets_targets"]),
    Row("inference_benchmark.json", "inference, 16 prompts: batched tokens/s",
        lambda d: f"{d['runs']['batched']['tokens_per_s']:.1f}", lambda d: f"one at a time {d['runs']['one_at_a_time']['tokens_per_s']:.1f}",
        lambda d: d["batched_speedup"], "≥ 3x", lambda d: d["batched_speedup"] >= d["target_speedup"]),
    Row("export_benchmark.json", "llama.cpp ft-Q4_K_M: tokens/s (median)",
        lambda d: f"{d['gguf']['Q4_K_M']['tokens_per_s']['median']:.0f} (greedy tokens = transformers on "
                  f"{d['gguf']['Q4_K_M']['token_agreement']:.0%}, q8_0 {d['gguf']['q8_0']['token_agreement']:.0%}, "
                  f"f16 {d['gguf']['f16']['token_agreement']:.0%} of {d['prompts']})",
        lambda d: f"transformers fp32 {d['transformers_tokens_per_s']['median']:.0f}",
        lambda d: d["gguf"]["Q4_K_M"]["speed_ratio_vs_transformers"],
        "faster than transformers; q8_0 urgent decision ≥ 95 %", lambda d: d["meets_targets"]),
]


def _when(doc: dict) -> str:
    run = doc.get("run")
    if not run:
        return "before runinfo (no run record)"
    dirty = "+dirty" if run.get("git_dirty") else ""
    return f"{run['started_utc'][:16].replace('T', ' ')} UTC, {(run.get('git_commit') or '?')[:8]}{dirty}, load {run['load_before'][0] if run.get('load_before') else '?'}"


def table(results: Path = HERE / "results") -> str:
    lines = ["| figure | measured | baseline (same run) | ratio | goal | holds | run |",
             "|---|---|---|---|---|---|---|"]
    for row in ROWS:
        path = results / row.file
        if not path.is_file():
            lines.append(f"| {row.what} | not measured yet | | | {row.goal} | | `{row.file}` missing |")
            continue
        doc = json.loads(path.read_text())
        try:
            ratio = row.ratio(doc)
            holds = row.holds(doc)
            cells = [row.figure(doc), row.baseline(doc), "—" if ratio is None else f"{ratio:.2f}x",
                     {True: "yes", False: "**no**", None: "—"}[holds]]
        except (KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
            cells = [f"unreadable ({type(exc).__name__}: {exc})", "", "", ""]
        lines.append(f"| {row.what} | {cells[0]} | {cells[1]} | {cells[2]} | {row.goal} | {cells[3]} | {_when(doc)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    text = README.read_text()
    if BEGIN not in text or END not in text:
        print(f"error: {README}: the markers {BEGIN!r} / {END!r} are missing", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{table(args.results)}{END}{tail}"
    if args.check:
        return 0 if new == text else 1
    README.write_text(new)
    print(f"wrote the table of {len(ROWS)} figures into {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
