"""The size sweep behind the shipped base: parameters x tokens -> validation loss and the urgent probe.

Each size is the `make base` recipe itself (same corpus, schedule and budget) stopped after --seconds of
wall time in its own work dir, so the size chosen can simply continue (`--set pretrain.work_dir=DIR/sweep-X`).

    python fine-tuning/base_sweep.py run --dir runs/base-sweep --seconds 330 [--sizes S,M,L]
    python fine-tuning/base_sweep.py report --dir runs/base-sweep --out models/embedded-base
        # -> sweep.json, sweep.png (val loss vs tokens and vs seconds), sweep.md (the card's table)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SIZES = {
    "S": [],  # the embedded defaults: hidden 128, MLP 384, 4 layers
    "M": ["embedded.hidden_size=192", "embedded.intermediate_size=576", "embedded.num_attention_heads=6",
          "embedded.linear_num_key_heads=3", "embedded.linear_num_value_heads=6"],
    "L": ["embedded.hidden_size=256", "embedded.intermediate_size=768", "embedded.num_attention_heads=8",
          "embedded.linear_num_key_heads=4", "embedded.linear_num_value_heads=8"],
}
SWEEP_SETTINGS = ["pretrain.eval_every_tokens=65536", "pretrain.eval_blocks=32"]


def run(args) -> int:
    for name in args.sizes.split(","):
        work = Path(args.dir).resolve() / f"sweep-{name}"
        if (work / "done").is_file():
            print(f"[sweep] {name}: done before, skipped")
            continue
        work.mkdir(parents=True, exist_ok=True)
        sets = SIZES[name] + SWEEP_SETTINGS + [f"pretrain.work_dir={work}", f"pretrain.output={work / 'out'}",
                                               f"pretrain.max_seconds={args.seconds}"]
        cmd = [sys.executable, str(REPO / "fine-tuning" / "pretrain_base.py")] + [
            x for s in sets + args.set for x in ("--set", s)]
        print(f"[sweep] {name}: {' '.join(cmd[2:])}", flush=True)
        with open(work / "log.txt", "a", encoding="utf-8") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ).returncode
        if rc:
            print(f"[sweep] {name}: failed (rc {rc}), see {work / 'log.txt'}", file=sys.stderr)
            return rc
        (work / "done").touch()
    return 0


def curve_of(work: Path) -> list[dict]:
    """The evaluations of a work dir, one per step (a resumed run may have repeated some)."""
    points: dict[int, dict] = {}
    path = work / "curve.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        point = json.loads(line)
        points[point["step"]] = {**points.get(point["step"], {}), **{k: v for k, v in point.items() if v is not None}}
    return [points[s] for s in sorted(points)]


def report(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for work in sorted(Path(args.dir).glob("sweep-*")):
        manifest_path = work / "out" / "pretrain.json"
        if not manifest_path.is_file():
            continue
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        curve = curve_of(work)
        probes = [p for p in curve if p.get("probe_auc") is not None]
        rows.append({"size": work.name.removeprefix("sweep-"), "params": manifest["params"],
                     "hidden": manifest["config"]["embedded"]["hidden_size"], "tokens": manifest["tokens"],
                     "train_seconds": manifest["train_seconds"], "tokens_per_s": manifest["tokens_per_s"],
                     "val_loss": curve[-1]["val_loss"] if curve else None,
                     "probe_auc": probes[-1]["probe_auc"] if probes else None, "curve": curve})
    if not rows:
        print(f"error: no finished sweep run under {args.dir}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for row in rows:
        label = f"{row['size']}: {row['params'] / 1e6:.1f}M params, probe AUC {row['probe_auc']}"
        ax1.plot([p["tokens"] / 1e3 for p in row["curve"]], [p["val_loss"] for p in row["curve"]], "o-", label=label)
        ax2.plot([p["seconds"] / 60 for p in row["curve"]], [p["val_loss"] for p in row["curve"]], "o-",
                 label=f"{row['size']}: {row['tokens_per_s']:,.0f} tokens/s")
    ax1.set(xlabel="training tokens (thousands)", ylabel="validation loss (MedQuAD)", title="loss per token")
    ax2.set(xlabel="training minutes (2 shared cores)", ylabel="validation loss", title="loss per minute")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=110)
    lines = ["## The size sweep", "",
             f"Each size ran the recipe itself (budget and schedule of `make base`) for {args.seconds_label} of "
             "wall time on the shared 2-core box; validation loss on MedQuAD's held-out pairs, urgent probe on "
             "the demo's val questions (train questions fit the probe). Plot: `sweep.png`; data: `sweep.json`.", "",
             "| size | parameters | tokens seen | tokens/s | val loss | probe AUC |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['size']} (hidden {row['hidden']}) | {row['params']:,} | {row['tokens']:,} | "
                     f"{row['tokens_per_s']:,.0f} | {row['val_loss']} | {row['probe_auc']} |")
    (out / "sweep.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"[sweep] {len(rows)} sizes -> {out / 'sweep.png'}, sweep.json, sweep.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run each size for --seconds (resumable: a rerun continues)")
    r.add_argument("--dir", required=True)
    r.add_argument("--seconds", type=float, default=330)
    r.add_argument("--sizes", default=",".join(SIZES))
    r.add_argument("--set", action="append", default=[], help="extra SECTION.KEY=VALUE for every size")
    p = sub.add_parser("report", help="sweep.json, sweep.png and sweep.md from the finished sizes")
    p.add_argument("--dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seconds-label", default="about 5.5 minutes")
    args = parser.parse_args(argv)
    os.umask(0o007)
    return run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    raise SystemExit(main())
