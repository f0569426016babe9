"""Helpers for tests/test_hpo.py: chat fixtures and a scripted stand-in for train_lora.

The stand-in drives the pruning callback exactly as the Trainer does (on_step_end each
step, on_evaluate every eval_steps) with a loss curve set by the learning rate, so the
search loop, the journal and the pruner are exercised without a model. Tests that need
real training use healthai.model.trainer.train_lora.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

SYSTEM = "You are a careful medical assistant. Answer briefly and safely."

# A few question/answer pairs in the stage-3 form {"messages": [system, user, assistant]}.
PAIRS = [
    ("I have a mild headache and feel a bit tired. What should I do?",
     "Rest, drink water and eat regularly. Please consult a doctor for more personalized medical advice."),
    ("My child has a fever of 38 degrees since this morning.",
     "Keep the child hydrated and watch the temperature. Please consult a doctor for more personalized medical advice."),
    ("I have chest pain spreading to my left arm.",
     "Seek emergency care now: chest pain spreading to the arm can be a heart attack."),
    ("Is it normal to feel dizzy after standing up quickly?",
     "Brief dizziness on standing is common. Please consult a doctor for more personalized medical advice."),
    ("I get heartburn after late dinners.",
     "Eat earlier and smaller meals. Please consult a doctor for more personalized medical advice."),
    ("My knee hurts after running.",
     "Rest the knee and use ice. Please consult a doctor for more personalized medical advice."),
]


def write_chat_split(path: Path, n: int) -> Path:
    """n records cycling over PAIRS, in the {"messages": [...]} training form."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            q, a = PAIRS[i % len(PAIRS)]
            fh.write(json.dumps({"messages": [{"role": "system", "content": SYSTEM},
                                              {"role": "user", "content": q},
                                              {"role": "assistant", "content": a}]}) + "\n")
    return path


def write_merge_splits(project: Path, n_train: int = 24, n_val: int = 6) -> tuple[Path, Path]:
    return (write_chat_split(project / "3.merge" / "train.jsonl", n_train),
            write_chat_split(project / "3.merge" / "val.jsonl", n_val))


def scripted_loss(hparams: dict, step: int, steps: int) -> float:
    """Loss falls faster with a larger learning rate (the search has a clear best)."""
    return 3.0 - 0.5 * math.log10(hparams["learning_rate"] / 1e-5) * step / steps + 0.001 * hparams["lora_r"]


_CALLS = [0]


def scripted_train(cfg, train_path, val_path, out_dir, hparams, callbacks=(), max_steps=None, epochs=1.0,
                   eval_steps=10, seed=0, save=False, sleep=0.0, hang_in_call=0, **_):
    """train_lora's contract without a model: calls the callbacks like the Trainer, returns metrics.

    hang_in_call=N: the N-th call in this process blocks for good after its first evaluation, so
    that a kill drill finds a trial mid-way however slow the machine is (the killer waits for
    that state, not for a time)."""
    _CALLS[0] += 1
    hang = hang_in_call and _CALLS[0] == hang_in_call
    steps = max_steps or 40
    loss = None
    for step in range(1, steps + 1):
        state = SimpleNamespace(global_step=step)
        for cb in callbacks:
            cb.on_step_end(None, state, None)
        if sleep:
            time.sleep(sleep)
        if step % eval_steps == 0 or step == steps:
            loss = scripted_loss(hparams, step, steps)
            for cb in callbacks:
                cb.on_evaluate(None, state, None, metrics={"eval_loss": loss})
            while hang:  # until the drill's SIGKILL
                time.sleep(60)
    return {"eval_loss": loss, "train_steps": steps}


def _worker_main(argv: list[str] | None = None) -> int:
    """`python tests/hpo_helpers.py [--sleep S] [--set k=v ...]`: one search worker with the scripted trainer."""
    import argparse
    import functools
    import logging

    from healthai.config import load_config
    from healthai.model.hpo import run_search

    parser = argparse.ArgumentParser()
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--hang-in-call", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    cfg = load_config(overrides=args.overrides)
    summary = run_search(cfg, train_fn=functools.partial(scripted_train, sleep=args.sleep,
                                                                hang_in_call=args.hang_in_call))
    print(json.dumps({"ran": [r["number"] for r in summary.ran], "counts": summary.counts,
                      "sampler_seed": summary.sampler_seed, "report": summary.report_written}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker_main())


def scripted_slow_train(*args, **kwargs):
    """scripted_train at 0.05 s per step, so that two workers overlap (Slurm array test)."""
    return scripted_train(*args, **{**kwargs, "sleep": 0.05})
