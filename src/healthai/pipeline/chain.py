"""The whole pipeline as a job chain: which stages, in which order, which are current, how jobs went.

Used by `slurm/submit-pipeline.sh` (submission stays in bash: plain `sbatch --parsable
--dependency=afterok:…`, as a workshop participant would type it):

    python -m healthai.pipeline plan                 # stage table: folder, script, needs, current?
    python -m healthai.pipeline current STAGE        # exit 0 when STAGE's manifest is current
    python -m healthai.pipeline follow NAME=JOBID …  # progress per stage until the chain ends
    python -m healthai.pipeline summary              # report location, metrics, the four workshop answers
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from healthai.config import PipelineConfig, load_config
from healthai.errors import ConfigError
from healthai.pipeline.io import sha256_file
from healthai.pipeline.stage import MANIFEST, code_version, fingerprint


@dataclass(frozen=True)
class Stage:
    name: str
    folder: str
    script: str
    outputs: str
    """Output folder under $PROJECT_DIR (where its manifest.json lives)."""
    needs: tuple[str, ...] = ()
    builds_base: bool = False
    """Builds a base model: part of the chain only where models.base is its output folder."""


STAGES: tuple[Stage, ...] = (
    Stage("curation", "1.Initial-curation", "run-curation.sh", "1.curation"),
    Stage("filter", "2.Filter", "run-filter.sh", "2.filter", ("curation",)),
    Stage("merge", "3.Merge", "run-merge.sh", "3.merge", ("filter",)),
    # after merge: the shipped base (embedded.shipped, `make base`) is refused unless its held-out record covers
    # today's held-out files and splits; with embedded.shipped null the tiny base built here leaves val/test out
    Stage("base-model", "fine-tuning", "run-build-model.sh", "models/embedded-base", ("curation", "merge"),
          builds_base=True),
    Stage("optuna", "fine-tuning", "run-ft-optuna.sh", "hpo", ("merge", "base-model")),
    Stage("finetune", "fine-tuning", "run-ft.sh", "ft", ("optuna",)),
    # after finetune: the GGUF files for llama.cpp (chat, server, Deucalion's Llama.cpp app); the
    # evaluation report shows their answers next to transformers'
    Stage("export", "inference", "run-export.sh", "export", ("finetune",)),
    Stage("evaluate", "inference", "run-evaluate.sh", "inference", ("finetune", "export")),
    Stage("clinical", "4.Clinical-reasoning", "run-clinical.sh", "4.clinical"),
)
BY_NAME = {s.name: s for s in STAGES}


def manifest_is_current(out_dir: Path, cfg: PipelineConfig) -> bool:
    """True when out_dir's manifest still matches its inputs, today's config sections, the code and outputs."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        inputs = []
        for item in manifest["inputs"]:
            p = Path(item["path"])
            if not p.is_file():
                return False
            inputs.append({"path": item["path"], "sha256": sha256_file(p)})
        config = {name: cfg.section(name) for name in manifest.get("config", {})}
        if fingerprint(inputs, config, code_version()) != manifest["fingerprint"]:
            return False
        return all(Path(o["path"]).is_file() and sha256_file(o["path"]) == o["sha256"] for o in manifest["outputs"])
    except (KeyError, TypeError, ValueError, OSError):
        return False


def stage_is_used(stage: Stage, cfg: PipelineConfig) -> bool:
    """A base-building stage only where models.base points at its output (the embedded base is not
    built on Deucalion, where the base is Qwen3.5-9B); every other stage always."""
    return not stage.builds_base or (
        cfg.resolve(cfg.models.base).resolve() == (cfg.project_path() / stage.outputs).resolve())


def current_stages(cfg: PipelineConfig) -> dict[str, bool]:
    """A stage counts as current only if it and every stage it needs are current (an unused one is)."""
    status: dict[str, bool] = {}
    for stage in STAGES:
        status[stage.name] = not stage_is_used(stage, cfg) or (
            manifest_is_current(cfg.project_path() / stage.outputs, cfg) and all(status[n] for n in stage.needs))
    return status


def job_state(job_id: str) -> tuple[str, str, str]:
    """(state, exit code, log path) from `scontrol show job` (no accounting database locally)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    info = dict(tok.split("=", 1) for tok in out.stdout.split() if "=" in tok)
    return info.get("JobState", "UNKNOWN"), info.get("ExitCode", "?"), info.get("StdOut", "?")


def follow(jobs: list[tuple[str, str]], poll: float = 2.0, timeout: float = 6 * 3600) -> int:
    """Print one line per stage state change until every job has ended; 0 if all completed."""
    finished = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE", "UNKNOWN"}
    seen: dict[str, str] = {}
    started: dict[str, float] = {}
    ended: dict[str, tuple[str, str, str, float]] = {}
    deadline = time.time() + timeout
    while len(ended) < len(jobs) and time.time() < deadline:
        for name, job in jobs:
            if name in ended:
                continue
            state, code, log = job_state(job)
            if state != seen.get(name):
                seen[name] = state
                if state == "RUNNING":
                    started[name] = time.time()
                took = f" in {time.time() - started[name]:.0f} s" if name in started and state in finished else ""
                print(f"[pipeline] {time.strftime('%H:%M:%S')} {name:<11} job {job:<6} {state}{took}", flush=True)
            if state in finished:
                ended[name] = (state, code, log, time.time() - started.get(name, time.time()))
        time.sleep(poll)
    failed = [(n, e) for n, e in ended.items() if e[0] != "COMPLETED"]
    root = [(n, e) for n, e in failed if e[0] != "CANCELLED"] or failed
    if root:
        name, (state, code, log, _) = root[0]
        cancelled = [n for n, e in failed if e[0] == "CANCELLED" and n != name]
        print(f"[pipeline] stage '{name}' {state} (exit {code}); its log: {log}", file=sys.stderr)
        if cancelled:
            print(f"[pipeline] cancelled because of it: {', '.join(cancelled)}", file=sys.stderr)
        return 1
    if len(ended) < len(jobs):
        print("[pipeline] gave up waiting (timeout)", file=sys.stderr)
        return 1
    print("[pipeline] stage timings: " + ", ".join(f"{n} {e[3]:.0f} s" for n, e in ended.items()))
    return 0


def print_summary(cfg: PipelineConfig) -> int:
    """The end of `make demo`: where the report is, the headline metrics, the four workshop answers."""
    from healthai.model.evaluation import METRICS, metric_value

    out = cfg.project_path() / "inference"
    path = out / "report.json"
    if not path.is_file():
        print(f"[demo] no report yet: {path} is missing (did the evaluate stage run?)", file=sys.stderr)
        return 1
    report = json.loads(path.read_text(encoding="utf-8"))
    metrics = report["metrics"]
    print(f"\n=== Report: {out / 'report.md'} (also report.json, report.png)")
    print(f"    {'metric':<44}" + "".join(f"{m:>10}" for m in metrics))
    for key, label in METRICS:
        values = [metric_value(metrics[m], key) for m in metrics]
        print(f"    {label:<44}" + "".join(f"{'n/a' if v is None else format(v, '.3f'):>10}" for v in values))
    print("\n=== The four workshop prompts, base vs fine-tuned")
    prompts = report["prompts"]
    for i, item in enumerate(next(iter(prompts.values()))):
        print(f"\n[{i + 1}] {item['question']}")
        for mode, answers in prompts.items():
            print(f"  {mode:>4}: {answers[i]['answer']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m healthai.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--site", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("plan")
    cur = sub.add_parser("current")
    cur.add_argument("stage", choices=list(BY_NAME))
    sub.add_parser("summary")
    fol = sub.add_parser("follow")
    fol.add_argument("jobs", nargs="+", metavar="NAME=JOBID")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(site=args.site, overrides=args.overrides)
    except ConfigError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    if args.cmd == "plan":
        status = current_stages(cfg)
        for s in STAGES:
            needs = ",".join(s.needs) or "-"
            state = "unused" if not stage_is_used(s, cfg) else "current" if status[s.name] else "to-run"
            print(f"{s.name}\t{s.folder}\t{s.script}\t{needs}\t{state}")
        return 0
    if args.cmd == "summary":
        return print_summary(cfg)
    if args.cmd == "current":
        return 0 if current_stages(cfg)[args.stage] else 1
    jobs = [tuple(item.split("=", 1)) for item in args.jobs]
    return follow(jobs)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
