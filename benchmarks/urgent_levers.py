"""Which lever teaches the embedded model the urgent rule? LoRA fine-tunes with each lever, scored on VAL.

Every variant fine-tunes the same embedded base on `3.merge/train.jsonl` with the pipeline's
trainer (`healthai.model.trainer.train_lora`, the lever switches of the finetune section) and answers
`3.merge/val.jsonl` (never test) greedily; the baseline in the same run is plain LoRA (all
levers off). Reported per variant: closing-sentence rate, urgent recall, over-triage, mean
P(first token = "Seek") on urgent vs non-urgent prompts, training seconds. Writes
benchmarks/results/urgent_levers.json and urgent_levers.png (recall vs over-triage, the
trade-off curve). The chosen recipe goes into the finetune defaults and is then measured
once on test by the evaluation report (docs/TRIAGE.md).

    HEALTHAI_PROJECT_DIR=/tmp/proj .venv/bin/python benchmarks/urgent_levers.py \\
        --variant plain --variant rows:train_format_rows=true --variant rows+w5:train_format_rows=true,first_token_weight=5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import runinfo  # benchmarks/runinfo.py: the run's own date, commit, machine, load, versions

RUN = runinfo.start()

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "urgent_levers.json"

DEFAULT_VARIANTS = [
    "plain",
    "oversample3:urgent_oversample=3",
    "weight5:first_token_weight=5",
    "rows:train_format_rows=true",
    "rows+oversample3:train_format_rows=true,urgent_oversample=3",
    "rows+weight5:train_format_rows=true,first_token_weight=5",
    "all:train_format_rows=true,first_token_weight=5,urgent_oversample=3",
]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'name:key=v,key=v' -> (name, ['finetune.key=v', ...]); keys may name another section ('embedded.x=1')."""
    name, _, rest = text.partition(":")
    sets = []
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        sets.append(f"{key if '.' in key else 'finetune.' + key}={value}")
    return name, sets


def read_split(folder: Path, split: str) -> tuple[list[dict], list[bool]]:
    from healthai.pipeline.io import read_jsonl

    rows = read_jsonl(folder / f"{split}.jsonl")
    meta = read_jsonl(folder / f"{split}.meta.jsonl")
    return rows, [bool(m["is_urgent"]) for m in meta]


def train_variant(cfg, folder: Path, out_dir: Path, args) -> tuple[object, object, dict]:
    """LoRA SFT through the pipeline's one trainer (`healthai.model.trainer.train_lora`, levers from
    cfg.finetune), then the base + adapter (+ trained format-token rows) loaded as inference does."""
    from healthai.model.inference import attach_adapter, load_base
    from healthai.model.trainer import train_lora

    metrics = train_lora(cfg, folder / "train.jsonl", folder / "val.jsonl", out_dir, epochs=args.epochs,
                         seed=args.seed, save=True, resume=False)
    from healthai.config import load_config

    icfg = load_config(overrides=args.overrides + [f"models.adapter={out_dir / 'adapter'}"])
    model, tokenizer = load_base(icfg)
    model = attach_adapter(model, icfg)
    keep = ("train_seconds", "train_steps", "eval_loss", "train_loss", "tokens_per_s", "trainable_params")
    return model, tokenizer, {k: metrics.get(k) for k in keep}


BASE_KEYS = ("urgent_style_corpus", "urgent_style_weight", "domain_epochs", "domain_max_tokens", "domain_block_size")


def base_recipe(cfg) -> dict:
    """The embedded-base lever settings the variant was trained on, from the base folder's saved config."""
    import yaml

    saved = cfg.resolve(cfg.models.base) / "config.yaml"
    embedded = (yaml.safe_load(saved.read_text()) or {}).get("embedded", {}) if saved.is_file() else {}
    return {k: embedded.get(k) for k in BASE_KEYS}


def score_variant(model, tokenizer, cfg, rows: list[dict], flags: list[bool]) -> dict:
    """Greedy answers on the split: closing rate, recall, over-triage (Wilson CIs), P("Seek") by class."""
    from healthai.model import evaluation as ev
    from healthai.model.generation import generate_answers, next_token_probabilities
    from healthai.model.inference import question_of

    questions = [question_of(r) for r in rows]
    gens = generate_answers(model, tokenizer, questions, cfg)
    seek = cfg.filter.urgent_prefix.split()[0]
    probs = [p[seek] for p in next_token_probabilities(model, tokenizer, questions, cfg, [seek])]
    scored = [ev.score_answer({"question": q, "answer": g.answer, "is_urgent": u}, cfg.filter)
              for q, g, u in zip(questions, gens, flags)]
    s = ev.summarize(scored)
    first = ev.first_token_summary(probs, flags)
    return {"closing_rate": s["closing_rate"], "urgent_recall": s["urgent_recall"], "over_triage": s["over_triage"],
            "confusion": s["confusion"], "p_seek_urgent": first["urgent_mean"], "p_seek_non_urgent": first["non_urgent_mean"],
            "p_seek_auc": first["auc"],
            "sample_answers": [g.answer for g in gens[:2]]}


def base_label(base: dict) -> str:
    if base.get("urgent_style_corpus"):
        return f"question+answer, answer-start weight {base.get('urgent_style_weight', 1):g}, {base.get('domain_epochs', 1):g} ep"
    return f"answers only, {base.get('domain_epochs', 1):g} ep" if base else "answers only (not recorded)"


def plot(results: list[dict], path: Path) -> None:
    """Left: the trade-off (recall vs over-triage on val), one numbered point per variant, coloured by
    domain base. Right: per variant, closing rate, recall, over-triage and the P("Seek") AUC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bases = sorted({base_label(r.get("base") or {}) for r in results})
    colors = dict(zip(bases, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 0.35 * len(results) + 4.5), gridspec_kw={"width_ratios": [1, 1.2]})
    names = [f"{i}. {r['name']} [{base_label(r.get('base') or {})}]" for i, r in enumerate(results, 1)]
    for i, r in enumerate(results, 1):
        x, y = r["val"]["over_triage"]["rate"], r["val"]["urgent_recall"]["rate"]
        label = base_label(r.get("base") or {})
        ax.scatter([x], [y], s=60, color=colors[label], label=label, alpha=0.7)
        ax.annotate(str(i), (x, y), fontsize=8, xytext=(4 + 7 * (i % 3), 3 + 7 * (i % 4)), textcoords="offset points")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), title="domain base", fontsize=7, title_fontsize=7, loc="center right")
    ax.axhline(0.85, ls="--", lw=0.8, color="green")
    ax.axvline(0.10, ls="--", lw=0.8, color="green")
    ax.plot([0, 1], [0, 1], ls=":", lw=0.8, color="grey")  # the chance line: prefix at random
    ax.text(0.11, 0.87, "target: recall >= 0.85, over-triage <= 0.10", fontsize=7, color="green")
    ax.set_xlim(-0.03, 1.05)
    ax.set_ylim(-0.03, 1.08)
    ax.set_xlabel("over-triage on val (prefix on non-urgent)")
    ax.set_ylabel("urgent recall on val (prefix on urgent)")
    ax.set_title("Trade-off (dotted: chance)", fontsize=10)
    metrics = [("closing", lambda r: r["val"]["closing_rate"]), ("urgent recall", lambda r: r["val"]["urgent_recall"]["rate"]),
               ("over-triage", lambda r: r["val"]["over_triage"]["rate"]), ('P("Seek") AUC', lambda r: r["val"].get("p_seek_auc") or 0)]
    height = 0.8 / len(metrics)
    for k, (label, get) in enumerate(metrics):
        bx.barh([i + k * height for i in range(len(results))], [get(r) for r in results], height=height, label=label)
    bx.set_yticks([i + 0.4 - height / 2 for i in range(len(results))], names, fontsize=7)
    bx.invert_yaxis()
    bx.axvline(0.5, ls=":", lw=0.8, color="grey")
    bx.set_xlim(0, 1.05)
    bx.legend(fontsize=7, loc="lower right")
    bx.set_title("Per variant, validation split", fontsize=10)
    fig.suptitle("Urgent-rule levers, embedded model (choices on val only)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", default=[], help="name:key=value,... (finetune keys)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="val", choices=("val",), help="choices are made on val only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every variant (e.g. models.base=...)")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N val rows (smoke test)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import tempfile

    from healthai.config import load_config

    base_cfg = load_config(overrides=args.overrides)
    folder = base_cfg.project_path() / "3.merge"
    train_rows, _ = read_split(folder, "train")
    val_rows, val_flags = read_split(folder, args.split)
    if args.limit:
        val_rows, val_flags = val_rows[:args.limit], val_flags[:args.limit]
    results = json.loads(args.out.read_text()).get("variants", []) if args.out.is_file() else []
    for text in args.variant or DEFAULT_VARIANTS:
        name, sets = parse_variant(text)
        cfg = load_config(overrides=args.overrides + sets)
        with tempfile.TemporaryDirectory() as tmp:
            model, tokenizer, stats = train_variant(cfg, folder, Path(tmp), args)
            val = score_variant(model, tokenizer, cfg, val_rows, val_flags)
        row = {"name": name, "overrides": sets, "epochs": args.epochs, "base": base_recipe(cfg), **stats, "val": val}
        results = [r for r in results if (r["name"], r.get("base")) != (name, row["base"])] + [row]
        print(f"{name:<22} {stats['train_seconds']:>6.0f}s closing {val['closing_rate']:.2f} recall "
              f"{val['urgent_recall']['rate']:.2f} over {val['over_triage']['rate']:.2f} "
              f"P(Seek) {val['p_seek_urgent']:.3f}/{val['p_seek_non_urgent']:.3f} AUC {val['p_seek_auc']:.2f}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        runinfo.write(args.out, RUN, {"split": args.split, "train": len(train_rows), "val": len(val_rows),
                                      "val_urgent": sum(val_flags), "variants": results})
        plot(results, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
