"""The base pretraining recipe: a run killed mid-way resumes to the same weights; schedule, data order, refusals."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healthai.config import REPO_DIR, load_config
from healthai.model.pretrain import batch_indices, lr_factor, run_key, split_pairs

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "fine-tuning" / "pretrain_base.py"

TINY = ["embedded.vocab_size=600", "embedded.hidden_size=32", "embedded.intermediate_size=64",
        "embedded.num_hidden_layers=2", "embedded.full_attention_interval=2", "embedded.num_attention_heads=2",
        "embedded.num_key_value_heads=1", "embedded.head_dim=16", "embedded.linear_num_key_heads=1",
        "embedded.linear_num_value_heads=2", "embedded.linear_head_dim=16", "pretrain.block_size=64",
        "pretrain.batch_size=2", "pretrain.max_tokens=25600", "pretrain.checkpoint_every_seconds=0",
        "pretrain.eval_every_tokens=1000000", "pretrain.eval_blocks=4", "pretrain.probe_splits=null",
        "pretrain.val_fraction=0.05"]


def _corpus(tmp_path: Path, n: int = 150) -> Path:
    """The first n records of the shipped MedQuAD corpus, as a small gzip corpus."""
    src = REPO / "data" / "raw" / "medquad.jsonl.gz"
    path = tmp_path / "small.jsonl.gz"
    with gzip.open(src, "rt", encoding="utf-8") as fin, gzip.open(path, "wt", encoding="utf-8") as fout:
        for i, line in enumerate(fin):
            if i == n:
                break
            fout.write(line)
    return path


def _command(tmp_path: Path, name: str, corpus: Path) -> list[str]:
    args = [sys.executable, str(SCRIPT), "--project-dir", str(tmp_path / "proj")]
    for item in TINY + [f"pretrain.corpus={corpus}", f"pretrain.work_dir={tmp_path / name}",
                        f"pretrain.output={tmp_path / name / 'out'}"]:
        args += ["--set", item]
    return args


def _env() -> dict:
    # one thread: bit-identical float sums in both runs
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO / "src")}


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _wait_for_step(progress: Path, proc: subprocess.Popen, step: int, deadline_s: float) -> dict:
    """Poll progress.json (written atomically after each checkpoint) until it reaches `step`."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before its checkpoint reached step {step}")
        if progress.is_file():
            try:
                state = json.loads(progress.read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("step", 0) >= step:
                return state
        time.sleep(0.005)  # a poll interval, not synchronisation: the state is read from the file
    pytest.fail(f"{progress} never showed step {step} within {deadline_s} s")


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_to_the_same_weights(tmp_path):
    corpus = _corpus(tmp_path)
    whole = subprocess.run(_command(tmp_path, "whole", corpus), env=_env(), capture_output=True, text=True,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    total = json.loads((tmp_path / "whole" / "progress.json").read_text())["total_steps"]
    assert total == 25600 // (2 * 64) == 200

    proc = subprocess.Popen(_command(tmp_path, "killed", corpus), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_step(tmp_path / "killed" / "progress.json", proc, 20, deadline_s=300)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    at_kill = json.loads((tmp_path / "killed" / "progress.json").read_text())
    assert 20 <= at_kill["step"] < total, f"the kill was not mid-way: {at_kill}"
    assert not (tmp_path / "killed" / "out" / "model.safetensors").exists()

    resumed = subprocess.run(_command(tmp_path, "killed", corpus), env=_env(), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {tmp_path / 'killed' / 'checkpoint.pt'} at step {at_kill['step']}" in resumed.stdout

    a, b = _weights(tmp_path / "whole" / "out"), _weights(tmp_path / "killed" / "out")
    assert sorted(a) == sorted(b)
    differing = [k for k in a if not (a[k] == b[k]).all()]
    assert not differing, f"resumed weights differ from the uninterrupted run in {differing[:5]}"
    manifest = json.loads((tmp_path / "killed" / "out" / "pretrain.json").read_text())
    assert manifest["complete"] and manifest["step"] == total and manifest["tokens"] == 25600
    assert manifest["curve"][-1]["val_loss"] > 0
    held_out = json.loads((tmp_path / "killed" / "out" / "held_out.json").read_text())
    assert held_out["removed_pairs"] == 0 and len(held_out["fingerprint"]) == 64
    card = (tmp_path / "killed" / "out" / "MODEL_CARD.md").read_text()
    assert "**This is not Qwen, and not a medical model.**" in card and "25,600 tokens" in card
    assert held_out["fingerprint"][:12] in card and "Never use it to answer a patient" in card

    # a checkpoint of another run (other sizes) is refused in one line naming the folder
    other = _command(tmp_path, "killed", corpus) + ["--set", "embedded.hidden_size=48"]
    refused = subprocess.run(other, env=_env(), capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0
    assert "the checkpoint belongs to another run" in refused.stderr and str(tmp_path / "killed") in refused.stderr


def test_the_schedule_warms_up_holds_then_decays():
    factors = [lr_factor(s, 100, 0.05, 0.2, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.2) and factors[4] == 1.0
    assert set(factors[5:80]) == {1.0}
    assert factors[80] == 1.0 and factors[99] == pytest.approx(1 - 0.9 * 19 / 20)
    # a larger budget keeps the same early schedule (a stopped run continues unchanged)
    assert [lr_factor(s, 200, 0.025, 0.2, 0.1) for s in range(80)] == factors[:80]


def test_the_data_position_is_the_step():
    seen = [batch_indices(s, 10, 3, seed=7).tolist() for s in range(10)]
    flat = [i for b in seen for i in b]
    assert sorted(flat[:10]) == list(range(10))            # epoch 0 is a permutation of every block
    assert sorted(flat[10:20]) == list(range(10))
    assert flat[:10] != flat[10:20]                        # epochs are reshuffled
    assert batch_indices(4, 10, 3, seed=7).tolist() == seen[4]  # the same batch, recomputed after a resume


def test_validation_pairs_are_keyed_by_the_question():
    pairs = [(f"What is disease {i} ?", f"Answer {i}.") for i in range(2000)]
    train, val = split_pairs(pairs, 0.05)
    assert 60 < len(val) < 140 and len(train) + len(val) == 2000
    train2, val2 = split_pairs(list(reversed(pairs)) + [("What is new ?", "x")], 0.05)
    assert set(val) <= set(val2) and not set(val2) & set(train)


def test_a_checkpoint_is_keyed_by_what_shapes_the_model_not_by_other_settings():
    record = {"corpus_sha256": "c", "fingerprint": "f"}
    key = run_key(load_config(), record)
    assert run_key(load_config(overrides=["embedded.shipped=null", "embedded.domain_epochs=3",
                                          "pretrain.max_tokens=99999", "pretrain.max_seconds=5"]), record) == key
    assert run_key(load_config(overrides=["embedded.hidden_size=192"]), record) != key
    assert run_key(load_config(), {**record, "fingerprint": "g"}) != key


def test_the_shipped_base_is_complete_small_and_holds_out_todays_files():
    """models/embedded-base, what `make demo` fine-tunes (embedded.shipped): made by `make base`, within the size
    a clone accepts, safetensors only, loadable by transformers, its held-out record current."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from healthai.config import load_config
    from healthai.model.base_stage import check_held_out

    cfg = load_config(site="local")
    shipped = cfg.resolve(cfg.embedded.shipped)
    assert shipped == REPO_DIR / "models" / "embedded-base"
    weights = shipped / "model.safetensors"
    assert weights.stat().st_size <= 20e6
    assert not list(shipped.glob("*.bin")) and not list(shipped.glob("*.pt"))
    with safe_open(str(weights), framework="pt") as f:
        assert len(list(f.keys())) > 10
    manifest = json.loads((shipped / "pretrain.json").read_text())
    assert manifest["complete"] and manifest["tokens"] >= 10_000_000
    assert manifest["curve"][-1]["val_loss"] < manifest["curve"][0]["val_loss"] - 2   # it learned the corpus
    card = (shipped / "MODEL_CARD.md").read_text()
    assert "## How the size was chosen (the sweep)" in card and (shipped / "sweep.png").stat().st_size > 10_000
    check_held_out(shipped, cfg)      # raises naming `make base` when today's held-out files changed
    model = AutoModelForCausalLM.from_pretrained(shipped, trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(shipped)
    assert type(model).__name__ == "Qwen3_5ForCausalLM" and "<|im_end|>" in tok.get_vocab()
