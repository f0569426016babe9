"""healthai.model trainer, hparams, sft_data, memory, lora: hyperparameters, data checks, memory plan,
LoRA targets, masks, training, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from healthai.model import base_corpus, embedded, finetune, folder, hparams, lora, memory, sft_data, time_limit, trainer
from healthai.config import REPO_DIR, load_config
from healthai.config.modeling import EmbeddedModelConfig
from healthai.errors import ConfigError, InputError, StageError

QWEN = Path(__file__).parents[1] / "fixtures" / "qwen3.5-9b"
SMALL = EmbeddedModelConfig(vocab_size=700, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                            num_key_value_heads=1, head_dim=16, linear_num_key_heads=1, linear_num_value_heads=2,
                            linear_head_dim=16)
SYSTEM = "You are a careful medical assistant."
CLOSING = "Please consult a doctor for more personalized medical advice."
# short hand-made pairs (urgent ones start with the prefix), so max_length 128 keeps every answer
PAIRS = [
    ("I have a mild headache since yesterday.", f"Rest and drink water. {CLOSING}", False),
    ("My child has a fever of 38 degrees.", f"Keep the child hydrated. {CLOSING}", False),
    ("I have crushing chest pain and sweating.", f"Seek emergency care immediately. Call an ambulance. {CLOSING}",
     True),
    ("I feel dizzy when I stand up.", f"Stand up slowly and drink fluids. {CLOSING}", False),
    ("I get heartburn after dinner.", f"Eat smaller meals earlier. {CLOSING}", False),
    ("My face droops and my speech is slurred.", f"Seek emergency care immediately. This may be a stroke. {CLOSING}",
     True),
]


def _records(n: int, offset: int = 0) -> list[dict]:
    out = []
    for i in range(n):
        q, a, _ = PAIRS[(i + offset) % len(PAIRS)]
        out.append({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                                 {"role": "assistant", "content": a}]})
    return out


def _write_split(project: Path, n_train: int = 16, n_val: int = 4) -> tuple[Path, Path]:
    d = project / "3.merge"
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(n_train)))
    (d / "train.meta.jsonl").write_text("".join(
        json.dumps({"id": f"t{i}", "is_urgent": PAIRS[i % len(PAIRS)][2]}) + "\n" for i in range(n_train)))
    (d / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(n_val, offset=3)))
    return d / "train.jsonl", d / "val.jsonl"


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    texts = base_corpus.read_answers(REPO_DIR / "data" / "raw" / "icliniq_2k_chat.jsonl")[:150]
    texts += [a for _, a, _ in PAIRS]
    return embedded.build_embedded_model(tmp_path_factory.mktemp("ft-base") / "base", texts, SMALL)


def _cfg(base: Path, *extra: str):
    # step counts below are for the plain data: the urgent lever (default x3) only where a test sets it
    return load_config(overrides=[f"models.base={base}", "site.device=cpu", "finetune.max_length=128",
                                  "finetune.batch_size=4", "finetune.learning_rate=0.003", "finetune.lora_r=4",
                                  "finetune.lora_alpha=8", "finetune.compare_prompts=0", "finetune.tensorboard=false",
                                  f"filter.closing_sentence={CLOSING}", "finetune.urgent_oversample=1", *extra])


# -- hyperparameters and data (pure) ---------------------------------------------------------------
def test_hparams_are_finetune_keys_and_unknown_ones_fail():
    cfg = load_config()
    hp = hparams.resolve_hparams(cfg, {"lora_r": 8.0, "learning_rate": 1e-3})
    assert hp["lora_r"] == 8 and isinstance(hp["lora_r"], int) and hp["lora_alpha"] == cfg.finetune.lora_alpha
    assert all(hasattr(cfg.finetune, k) for k in hparams.HPARAMS)
    with pytest.raises(ConfigError, match="unknown hyperparameter.*lora_rank"):
        hparams.resolve_hparams(cfg, {"lora_rank": 8})


@pytest.mark.parametrize("record, reason", [
    ({"messages": "text"}, "no 'messages' list"),                                      # wrong type
    ({"messages": []}, "empty"),                                                      # nothing
    ({"messages": [{"role": "user", "content": "q"}]}, "last message"),               # no answer
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}, "last message"),
    ({"messages": [{"role": "doctor", "content": "q"}, {"role": "assistant", "content": "a"}]}, "role"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}, "no user"),
])
def test_check_messages_edge_cases(record, reason):
    assert reason in sft_data.check_messages(record)


def test_check_messages_accepts_the_stage_3_form():
    assert sft_data.check_messages(_records(1)[0]) is None


def test_read_messages_quarantines_bad_lines(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(_records(1)[0]) + "\n{broken\n" + json.dumps({"messages": []}) + "\n")
    good, bad = sft_data.read_messages(path)
    assert len(good) == 1 and [b["source_line"] for b in bad] == [2, 3]
    with pytest.raises(InputError, match="run stage 3"):
        sft_data.read_messages(tmp_path / "missing.jsonl")


def test_urgent_flags_from_the_sidecar_or_none_without_one(tmp_path, caplog):
    meta = tmp_path / "train.meta.jsonl"
    meta.write_text('{"is_urgent": true}\n{"is_urgent": false}\n{}\n')
    assert sft_data.read_urgent_flags(meta, 3) == [True, False, False]
    meta.write_text('{"is_urgent": true}\n{}\n')
    with pytest.raises(InputError, match="2 lines for 3 training records"):
        sft_data.read_urgent_flags(meta, 3)
    # a dataset made outside the pipeline has no sidecar: the default lever is skipped, loudly
    assert sft_data.read_urgent_flags(tmp_path / "none.meta.jsonl", 3) is None
    assert "urgent_oversample not applied" in caplog.text


def test_oversample_repeats_only_urgent_records_deterministically():
    recs = [{"i": i} for i in range(100)]
    flags = [i % 4 == 0 for i in range(100)]
    out = sft_data.oversample(recs, flags, 2.5, seed=1)
    assert out == sft_data.oversample(recs, flags, 2.5, seed=1)
    urgent = sum(1 for r in out if r["i"] % 4 == 0)
    assert len(out) - urgent == 75 and 50 <= urgent <= 75 and abs(urgent / 25 - 2.5) < 0.4
    assert sft_data.oversample(recs, flags, 1.0, seed=1) == recs


def test_final_hparams_precedence(project_dir, capsys):
    cfg = load_config(overrides=["finetune.lora_r=4", "finetune.learning_rate=0.01"])
    hp, path = hparams.final_hparams(cfg)
    assert path is None and hp["lora_r"] == 4
    best = project_dir / "hpo" / "best_params.yaml"
    best.parent.mkdir(parents=True)
    best.write_text("params:\n  lora_r: 24\n  learning_rate: 0.0003\n")
    hp, path = hparams.final_hparams(cfg)
    assert path == best and hp["lora_r"] == 24 and hp["learning_rate"] == 0.0003
    assert str(best) in capsys.readouterr().out  # the file used is printed
    hp, _ = hparams.final_hparams(cfg, cli_keys=hparams.cli_finetune_keys(["finetune.lora_r=4"]))
    assert hp["lora_r"] == 4 and hp["learning_rate"] == 0.0003


# -- memory plan and the real 9B on the meta device -------------------------------------------------
@pytest.fixture(scope="module")
def qwen_meta():
    return folder.meta_model(QWEN)


@pytest.mark.slow
def test_qwen35_9b_text_model_and_lora_counts(qwen_meta):
    total, _ = folder.count_params(qwen_meta)
    assert total == 8_953_803_264
    peft_model, wrapped = lora.apply_lora(qwen_meta, {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0})
    assert folder.count_params(peft_model)[1] == 21_639_168
    # all-linear reaches the 24 Gated DeltaNet layers and the 8 full-attention layers, not lm_head
    assert wrapped == {"down_proj": 32, "gate_proj": 32, "up_proj": 32, "in_proj_qkv": 24, "in_proj_z": 24,
                       "in_proj_a": 24, "in_proj_b": 24, "out_proj": 24, "q_proj": 8, "k_proj": 8, "v_proj": 8,
                       "o_proj": 8}
    peft_model.unload()


@pytest.mark.slow
def test_a_classic_target_list_misses_the_linear_attention_layers():
    model = folder.meta_model(QWEN)
    _, wrapped = lora.apply_lora(model, {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0},
                                     ["q_proj", "k_proj", "v_proj", "o_proj"])
    assert wrapped == {"q_proj": 8, "k_proj": 8, "v_proj": 8, "o_proj": 8}  # 24 of 32 layers get nothing


def test_memory_plan_for_the_9b_on_an_a100_40gb():
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(QWEN)
    total, lora_params = 8_953_803_264, 21_639_168
    plan = memory.plan_memory(config, total, lora_params, batch=8, length=512, weight_bytes=2, checkpointing=True,
                                available_gib=36.0)
    assert 16.6 < plan.weights < 16.8 and plan.lora_and_optimizer < 0.4 and plan.fits
    assert "fits" in plan.lines()[0]
    # fp32 weights without checkpointing at long sequences cannot fit
    worse = memory.plan_memory(config, total, lora_params, batch=8, length=4096, weight_bytes=4, checkpointing=False,
                                 available_gib=36.0)
    assert not worse.fits and worse.total > 2 * plan.total


@pytest.mark.slow
def test_check_memory_stops_with_a_clear_message(tiny_base):
    import torch

    cfg = _cfg(tiny_base, "finetune.gpu_memory_gib=1", "finetune.memory_headroom=0.1", "finetune.max_length=4096",
               "finetune.batch_size=64")
    hp = hparams.resolve_hparams(cfg)
    with pytest.raises(StageError, match="does not fit.*lower finetune.batch_size"):
        memory.check_memory(cfg, tiny_base, hp, "cpu", torch.float32)


# -- masks through TRL with our arguments ----------------------------------------------------------------
@pytest.mark.slow
def test_sft_labels_cover_exactly_the_assistant_answers(tiny_base, tmp_path):
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    cfg = _cfg(tiny_base)
    hp = hparams.resolve_hparams(cfg)
    model, tok = folder.load_model_and_tokenizer(tiny_base, cfg)
    tok.chat_template = folder.training_chat_template()
    args = trainer.sft_args(cfg, hp, tmp_path, "cpu", torch.float32, max_steps=1, epochs=None, eval_steps=None,
                             seed=1, save=False)
    assert args.assistant_only_loss and not args.packing and not args.bf16 and not args.gradient_checkpointing
    assert args.train_sampling_strategy == "group_by_length" and args.use_cpu
    recs = _records(6)
    sft_trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(recs),
                         eval_dataset=Dataset.from_list(recs[:2]), processing_class=tok)
    batch = sft_trainer.data_collator([sft_trainer.train_dataset[i] for i in range(len(recs))])
    for row, labels, rec in zip(batch["input_ids"], batch["labels"], recs):
        kept = [int(t) for t, lab in zip(row, labels) if lab != -100]
        assert tok.decode(kept) == rec["messages"][-1]["content"] + "<|im_end|>"


# -- training ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_lora_interrupt_and_resume_matches_an_uninterrupted_run(tiny_base, project_dir, capsys):
    """One uninterrupted run, then the same run stopped by SIGUSR1 after step 2 and resumed.

    Tolerance: every adapter tensor within 1e-5 (absolute) of the uninterrupted run, with LoRA
    dropout off. Measured: with the default dropout 0.05 the resumed adapter differs by up to
    ~7e-3 (the dropout masks after the resume are not reproduced), so dropout is off here to
    test what must be exact: optimizer, scheduler, data order and position.
    """
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    train, val = _write_split(project_dir)
    cfg = _cfg(tiny_base, "finetune.epochs=2", "finetune.early_stopping_patience=0", "finetune.lora_dropout=0.0")
    ref = trainer.train_lora(cfg, train, val, project_dir / "ref", fingerprint="k")
    out = capsys.readouterr().out
    assert "Total params: " in out and ", trainable: " in out
    assert ref["train_steps"] == 8 and len(ref["eval_losses"]) == 2           # eval each epoch
    assert ref["eval_losses"][-1][1] < ref["eval_losses"][0][1]
    assert {"in_proj_qkv", "in_proj_z", "in_proj_a", "in_proj_b", "out_proj"} <= set(ref["wrapped_modules"])
    assert ref["tokens_per_s"] > 0 and ref["peak_rss_mb"] > 100 and ref["trainable_params"] > 0
    adapter = project_dir / "ref" / "adapter"
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in adapter.iterdir()}

    class SignalAtStep2(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 2:
                os.kill(os.getpid(), signal.SIGUSR1)   # what Slurm's --signal=B:USR1 relays

    with pytest.raises(time_limit.TrainingInterrupted, match="checkpoint saved at step 3"):
        trainer.train_lora(cfg, train, val, project_dir / "cut", fingerprint="k", callbacks=[SignalAtStep2()])
    assert (project_dir / "cut" / "checkpoints" / "checkpoint-3" / "optimizer.pt").is_file()
    resumed = trainer.train_lora(cfg, train, val, project_dir / "cut", fingerprint="k")
    assert resumed["resumed_from"].endswith("checkpoint-3") and resumed["train_steps"] == 8
    a = load_file(str(adapter / "adapter_model.safetensors"))
    b = load_file(str(project_dir / "cut" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-5, f"resumed adapter differs by {worst}"
    # a checkpoint from other inputs/config is not resumed
    assert trainer.last_checkpoint(project_dir / "cut" / "checkpoints", "other") is None


@pytest.mark.slow
def test_stage_writes_ft_outputs_and_is_a_noop_when_current(tiny_base, project_dir):
    _write_split(project_dir, n_train=8, n_val=4)
    with open(project_dir / "3.merge" / "train.jsonl", "a") as fh:
        fh.write('{"messages": "not a list"}\n')  # quarantined, counted
    cfg = _cfg(tiny_base, "finetune.epochs=1", "finetune.compare_prompts=2", "finetune.compare_max_new_tokens=8",
               "finetune.tensorboard=true", "finetune.merge=true", "project.max_bad_fraction=0.2")
    manifest = finetune.run_finetune_stage(cfg)
    ft = project_dir / "ft"
    assert manifest["counts"] == {"in": 9, "kept": 8, "rejected": 1}
    metrics = json.loads((ft / "metrics.json").read_text())
    assert {"eval_loss", "train_losses", "tokens_per_s", "peak_rss_mb", "wall_seconds"} <= set(metrics)
    assert set(metrics["comparison"]) >= {"base", "ft", "samples"}
    assert (ft / "loss_curve.png").stat().st_size > 1000 and any((ft / "tensorboard").iterdir())
    assert (ft / "merged" / "model.safetensors").is_file() and not (ft / "checkpoints").exists()
    folder.check_model_folder(ft / "merged")
    assert finetune.run_finetune_stage(cfg)["fingerprint"] == manifest["fingerprint"]


@pytest.mark.slow
def test_first_token_weight_and_urgent_oversample_switches_train(tiny_base, project_dir):
    train, val = _write_split(project_dir, n_train=8, n_val=4)
    cfg = _cfg(tiny_base, "finetune.first_token_weight=5", "finetune.urgent_oversample=2",
               "finetune.train_format_rows=true", "filter.urgent_prefix=Seek emergency care immediately.")
    m = trainer.train_lora(cfg, train, val, project_dir / "ft", max_steps=2, fingerprint="k")
    assert m["n_train"] == 8 + 2  # two urgent records of eight, each twice
    assert (project_dir / "ft" / "adapter" / lora.TOKEN_ROWS).is_file()
    model, _ = folder.load_model_and_tokenizer(tiny_base, cfg)
    before = model.get_input_embeddings().weight.detach().clone()
    assert lora.apply_token_rows(model, project_dir / "ft" / "adapter")
    changed = (model.get_input_embeddings().weight != before).any(dim=1).nonzero().flatten().tolist()
    assert changed and set(changed) <= set(lora.format_token_ids(
        _tok(tiny_base), ("Seek emergency care immediately.", CLOSING)))


def _tok(base: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_base, project_dir):
    """The multi-GPU path on CPU: torchrun gives two ranks (gloo); rank 0 writes the stage's files."""
    _write_split(project_dir, n_train=8, n_val=4)
    env = {**os.environ, "HEALTHAI_PROJECT_DIR": str(project_dir), "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(REPO_DIR / "fine-tuning" / "simple-fine-tuning.py"), "--set", f"models.base={tiny_base}",
           "--set", "site.device=cpu", "--set", "finetune.max_length=128", "--set", "finetune.batch_size=2",
           "--set", "finetune.epochs=1", "--set", "finetune.compare_prompts=0", "--set", "finetune.lora_r=4",
           "--set", "finetune.urgent_oversample=1"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((project_dir / "ft" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["train_steps"] == 2  # 8 examples / (2 per rank x 2 ranks)
    assert out.stdout.count("Total params: ") == 1  # printed by rank 0 only


@pytest.mark.slurm
@pytest.mark.slow
def test_sbatch_run_ft_checkpoints_requeues_and_resumes_to_the_same_adapter(slurm_cluster, tiny_base, project_dir,
                                                                            tmp_path):
    """The real wrapper on the local cluster: Slurm's time-limit warning (USR1 to the batch shell, what
    `--signal=B:USR1@60` sends) -> checkpoint -> `scontrol requeue` -> the restarted job resumes.
    Tolerance: the final adapter within 1e-5 of an uninterrupted in-process run (dropout off, as above)."""

    from safetensors.torch import load_file
    from slurm_helpers import sbatch, slurm_env, wait_job
    from waiting import wait_for

    _write_split(project_dir, n_train=64, n_val=4)
    sets = [f"models.base={tiny_base}", "site.device=cpu", "finetune.max_length=128", "finetune.batch_size=4",
            "finetune.learning_rate=0.003", "finetune.lora_r=4", "finetune.lora_alpha=8", "finetune.lora_dropout=0.0",
            "finetune.epochs=3", "finetune.compare_prompts=0", "finetune.tensorboard=false",
            "finetune.early_stopping_patience=0", "finetune.urgent_oversample=1"]
    stage = REPO_DIR / "fine-tuning"
    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(project_dir), "OMP_NUM_THREADS": "1"})
    args = [a for s in sets for a in ("--set", s)]
    job = sbatch(stage / "run-ft.sh", args, cwd=stage, env=env, sbatch_args=["--time=00:15:00"])
    stamp = project_dir / "ft" / "checkpoints" / trainer.FINGERPRINT
    # The fingerprint is written after the USR1 handler is installed: from then on the signal
    # is caught (before the first step too: the first step then saves and stops).
    wait_for(stamp.is_file, f"the training's checkpoint fingerprint {stamp} (job {job})",
             interval_s=0.5)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=env, check=True)
    info = wait_job(job, 900, env)
    log = Path(info["StdOut"]).read_text(errors="replace")
    try:
        assert info["JobState"] == "COMPLETED", log[-3000:]
        assert "time limit near" in log and "resuming from" in log and int(info.get("Restarts", 0)) >= 1
        cfg = load_config(overrides=sets)
        ref = trainer.train_lora(cfg, project_dir / "3.merge" / "train.jsonl", project_dir / "3.merge" / "val.jsonl",
                                  tmp_path / "ref", fingerprint="ref")
        a = load_file(str(tmp_path / "ref" / "adapter" / "adapter_model.safetensors"))
        b = load_file(str(project_dir / "ft" / "adapter" / "adapter_model.safetensors"))
        assert ref["train_steps"] == 48 and a.keys() == b.keys()
        assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    finally:
        Path(info["StdOut"]).unlink(missing_ok=True)


@pytest.mark.slurm
@pytest.mark.slow
def test_scancel_mid_epoch_then_resubmit_resumes_from_the_last_periodic_checkpoint(slurm_cluster, tiny_base,
                                                                                  project_dir, tmp_path):
    """A plain `scancel` (SIGTERM to every process of the job, SIGKILL after KillWait: no warning, nothing
    saved on the way out) once a periodic checkpoint exists; the job is gone, and a resubmission resumes
    from the last complete checkpoint and finishes. checkpoint_steps=3 with 16 steps an epoch: every
    checkpoint before the last (48) lies mid-epoch. Tolerance as for the USR1 drill: the adapter within
    1e-5 of an uninterrupted in-process run; dropout is off and a checkpoint restores weights, optimizer,
    scheduler, RNG and the data position (epoch-seeded sampler), so both runs do the same fp32 arithmetic
    and only the order of summation in a few kernels may differ."""
    import re
    import time

    from safetensors.torch import load_file
    from slurm_helpers import sbatch, slurm_env, wait_job
    from waiting import wait_for

    _write_split(project_dir, n_train=64, n_val=4)
    sets = [f"models.base={tiny_base}", "site.device=cpu", "finetune.max_length=128", "finetune.batch_size=4",
            "finetune.learning_rate=0.003", "finetune.lora_r=4", "finetune.lora_alpha=8", "finetune.lora_dropout=0.0",
            "finetune.epochs=3", "finetune.compare_prompts=0", "finetune.tensorboard=false",
            "finetune.early_stopping_patience=0", "finetune.checkpoint_steps=3", "finetune.urgent_oversample=1"]
    stage = REPO_DIR / "fine-tuning"
    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(project_dir), "OMP_NUM_THREADS": "1"})
    args = [a for s in sets for a in ("--set", s)]
    ckpt_dir = project_dir / "ft" / "checkpoints"

    def complete_checkpoints() -> list[int]:  # trainer_state.json is written last into a checkpoint
        return sorted(int(p.parent.name.split("-")[1]) for p in ckpt_dir.glob("checkpoint-*/trainer_state.json"))

    t0 = time.time()
    first = sbatch(stage / "run-ft.sh", args, cwd=stage, env=env, sbatch_args=["--time=00:15:00"])
    wait_for(complete_checkpoints, f"a complete periodic checkpoint in {ckpt_dir} (job {first})", interval_s=0.2)
    subprocess.run(["scancel", first], env=env, check=True)
    killed = wait_job(first, 120, env)
    second = None
    try:
        assert killed["JobState"] == "CANCELLED", killed
        assert "time limit near" not in Path(killed["StdOut"]).read_text(errors="replace")  # not the USR1 path
        left = complete_checkpoints()
        assert left and left[-1] < 48 and not (project_dir / "ft" / "adapter").exists(), left  # killed mid-run
        second = wait_job(sbatch(stage / "run-ft.sh", args, cwd=stage, env=env, sbatch_args=["--time=00:15:00"]),
                          900, env)
        wall = time.time() - t0
        log = Path(second["StdOut"]).read_text(errors="replace")
        assert second["JobState"] == "COMPLETED", log[-3000:]
        resumed = re.search(r"resuming from \S*checkpoint-(\d+)", log)
        assert resumed and 0 < int(resumed.group(1)) < 48 and int(resumed.group(1)) % 16, log[-3000:]
        metrics = json.loads((project_dir / "ft" / "metrics.json").read_text())
        assert metrics["train_steps"] == 48 and metrics["resumed_from"].endswith(f"checkpoint-{resumed.group(1)}")
        cfg = load_config(overrides=sets)
        ref = trainer.train_lora(cfg, project_dir / "3.merge" / "train.jsonl", project_dir / "3.merge" / "val.jsonl",
                                  tmp_path / "ref", fingerprint="ref")
        a = load_file(str(tmp_path / "ref" / "adapter" / "adapter_model.safetensors"))
        b = load_file(str(project_dir / "ft" / "adapter" / "adapter_model.safetensors"))
        assert ref["train_steps"] == 48 and ref["resumed_from"] is None and a.keys() == b.keys()
        diff = max(float((a[k] - b[k]).abs().max()) for k in a)
        print(f"scancel drill: cancelled after checkpoint-{left[-1]}, resumed from checkpoint-{resumed.group(1)}, "
              f"both jobs {wall:.0f} s, adapter max |diff| {diff:.1e}")
        assert diff <= 1e-5
    finally:
        for info in (killed, second):
            if info and info.get("StdOut"):
                Path(info["StdOut"]).unlink(missing_ok=True)
