"""Inference: argument errors, missing adapter, batched == sequential greedy output, streaming,
the evaluation report, the merged export, and run-inference.sh inside salloc on the local cluster."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from healthai.model import generation, inference
from healthai.config import REPO_DIR, load_config
from healthai.errors import ConfigError, InputError, ModelError

RUN = REPO_DIR / "inference" / "run-inference.sh"
sys.path.insert(0, str(REPO_DIR / "inference"))
import inference as entry  # noqa: E402  (the thin entry script, inference/inference.py)

PROMPTS = [  # different lengths on purpose: the batch carries real left padding
    "I have a mild headache and feel a bit tired. What should I do?",
    "Sore throat?",
    "My 3-year-old has had a fever of 101.5°F for two days. She's drinking fluids but not eating. "
    "Should I be worried?",
    "I've been feeling down lately and can't sleep well.",
    "I'm having chest pain that radiates to my left arm and I'm short of breath.",
]


# -- a tiny real model (session scope: built once, never trained) ------------------------------
@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """(base folder, adapter folder): the embedded Qwen3.5-architecture model at a toy size, its
    weights jittered so that greedy decoding does not collapse into one repeated token, and a LoRA
    adapter with random (non-zero) B matrices so that ft answers differ from base answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from healthai.model.base_corpus import read_answers
    from model_helpers import jittered_embedded_base

    root = tmp_path_factory.mktemp("tiny")
    cfg = load_config(site="local", overrides=[
        "embedded.vocab_size=1024", "embedded.hidden_size=64", "embedded.intermediate_size=128",
        "embedded.head_dim=16", "embedded.linear_head_dim=16"])
    texts = read_answers(REPO_DIR / "data" / "raw" / "icliniq_2k_chat.jsonl")[:200]
    base = jittered_embedded_base(root / "base", texts, cfg)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  init_lora_weights=False))
    adapter = root / "adapter"
    peft_model.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(base).save_pretrained(adapter)
    return base, adapter


def tiny_cfg(base, adapter, *extra):
    return load_config(site="local", overrides=[f"models.base={base}", f"models.adapter={adapter}",
                                                "site.device=cpu", "site.dtype=float32",
                                                "inference.max_new_tokens=12", *extra])


@pytest.fixture(scope="session")
def tiny_loaded(tiny_models):
    cfg = tiny_cfg(*tiny_models)
    model, tokenizer = inference.load_base(cfg)
    return cfg, model, tokenizer


# -- arguments (fast) ----------------------------------------------------------------------------
@pytest.mark.parametrize("args", [[], ["fine-tuned"], ["BASE"], ["--mode", "ft"]])
def test_run_inference_bad_mode_exits_2_with_usage(args):
    out = subprocess.run(["bash", str(RUN), *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "usage: bash run-inference.sh MODE" in out.stderr and "base | ft" in out.stderr


@pytest.mark.parametrize("argv, message", [
    (["--mode", "tuned"], "invalid choice: 'tuned'"),
    (["--evaluate", "--interactive"], "not allowed with"),
    (["--evaluate", "--prompt", "hi"], "do not combine"),
    (["--prompt", "a", "--prompts-file", "f.txt"], "either --prompt or --prompts-file"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--evaluate", "--mode", "ft"], "leave out --mode"),
])
def test_cli_argument_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        entry.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_adapter_names_path_and_command(project_dir, capsys):
    rc = entry.main(["--mode", "ft"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1                       # one line, no traceback
    assert str(project_dir / "ft" / "adapter") in err and "cd fine-tuning && sbatch run-ft.sh" in err
    assert entry.main(["--evaluate"]) == 1                             # the evaluation checks it first too
    assert "sbatch run-ft.sh" in capsys.readouterr().err


def test_adapter_folder_without_weights_is_named(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelError) as exc:
        inference.check_adapter(tmp_path)
    assert "adapter_model.safetensors" in str(exc.value) and "sbatch run-ft.sh" in str(exc.value)


def test_missing_base_model_is_one_line(project_dir, capsys):
    assert entry.main(["--mode", "base"]) == 1
    err = capsys.readouterr().err
    assert "models/embedded-base" in err and "Traceback" not in err


def test_prompts_from_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# a comment line\nFirst question?\n\n  Second question?  \n", encoding="utf-8")
    assert inference.read_prompts_file(txt) == ["First question?", "Second question?"]
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "A?"}\n{"question": "B?"}\n'
                  '{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "C?"}]}\n')
    assert inference.read_prompts_file(jl) == ["A?", "B?", "C?"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "A?"}\n{"answer": "no question"}\n')
    with pytest.raises(InputError) as exc:
        inference.read_prompts_file(bad)
    assert exc.value.line == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n")
    with pytest.raises(InputError):
        inference.read_prompts_file(empty)
    cfg = load_config(site="local")
    assert inference.resolve_prompts(cfg) == cfg.inference.prompts and len(cfg.inference.prompts) == 4
    assert inference.resolve_prompts(cfg, ["  Q?  "]) == ["Q?"]
    assert inference.resolve_prompts(cfg, (), str(txt)) == ["First question?", "Second question?"]
    with pytest.raises(ConfigError):
        inference.load_for_inference(cfg, "tuned")


# -- generation on the tiny model (slow) ----------------------------------------------------------
@pytest.mark.slow
def test_prompt_is_the_training_template_without_thinking(tiny_loaded):
    cfg, _, tokenizer = tiny_loaded
    text = generation.render_prompt(tokenizer, "Sore throat?", cfg)
    assert text.startswith("<|im_start|>system\n" + cfg.filter.assistant_system)
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")   # thinking disabled


@pytest.mark.slow
def test_batched_equals_sequential_under_greedy_fp32(tiny_loaded):
    cfg, model, tokenizer = tiny_loaded
    batched = generation.generate_answers(model, tokenizer, PROMPTS, cfg, batch_size=8)
    single = generation.generate_answers(model, tokenizer, PROMPTS, cfg, batch_size=1)
    assert [g.question for g in batched] == PROMPTS                    # input order restored
    assert [g.answer for g in batched] == [g.answer for g in single]
    assert [g.new_tokens for g in batched] == [g.new_tokens for g in single]
    assert len({g.answer for g in single}) > 1 and all(g.answer for g in single)  # a real, varied check
    pair = generation.generate_answers(model, tokenizer, PROMPTS[:2], cfg, batch_size=2)
    assert [g.answer for g in pair] == [g.answer for g in single[:2]]


@pytest.mark.slow
def test_streaming_matches_generate_and_interactive_loop(tiny_loaded):
    import io

    cfg, model, tokenizer = tiny_loaded
    pieces: list[str] = []
    streamed = generation.stream_answer(model, tokenizer, PROMPTS[0], cfg, write=pieces.append)
    plain = generation.generate_answers(model, tokenizer, PROMPTS[:1], cfg)[0]
    assert streamed.answer == plain.answer and "".join(pieces).strip() == plain.answer
    assert len(pieces) > 1 and streamed.first_token_s is not None and streamed.first_token_s < streamed.seconds
    questions = iter([PROMPTS[1], "exit"])
    out = io.StringIO()
    assert inference.interactive(model, tokenizer, cfg, "base", read=lambda _: next(questions), out=out) == 1
    assert "base> " in out.getvalue() and "first after" in out.getvalue()


@pytest.mark.slow
def test_next_token_probabilities_batched_equal_single(tiny_loaded):
    cfg, model, tokenizer = tiny_loaded
    batched = generation.next_token_probabilities(model, tokenizer, PROMPTS, cfg, ["Seek", "Rest"], batch_size=8)
    single = generation.next_token_probabilities(model, tokenizer, PROMPTS, cfg, ["Seek", "Rest"], batch_size=1)
    for b, s in zip(batched, single):
        assert b.keys() == {"Seek", "Rest"} and 0 < b["Seek"] < 1
        assert b["Seek"] == pytest.approx(s["Seek"], rel=1e-4, abs=1e-7)


@pytest.mark.slow
def test_cli_answers_prompts_with_base_and_ft(tiny_models, project_dir, capsys):
    base, adapter = tiny_models
    common = ["--set", f"models.base={base}", "--set", f"models.adapter={adapter}",
              "--set", "inference.max_new_tokens=8", "--set", "site.dtype=float32"]
    assert entry.main(["--mode", "base", *common]) == 0
    out_base = capsys.readouterr().out
    assert out_base.count("--- [base] prompt") == 4 and "Q: I'm having chest pain" in out_base
    assert entry.main(["--mode", "ft", "--prompt", PROMPTS[1], *common]) == 0
    out_ft = capsys.readouterr().out
    assert "--- [ft] prompt 1/1 ---" in out_ft and "A: " in out_ft


def write_split(project_dir: Path) -> int:
    """3.merge/test.jsonl + line-aligned test.meta.jsonl: real questions (iCliniq lines 1-4,
    shortened) with contract-shaped references, one urgent hand-made item, and one broken line
    (covers quarantine in rejected.jsonl and the conservation count)."""
    cfg = load_config(site="local")
    system, close, prefix = cfg.filter.assistant_system, cfg.filter.closing_sentence, cfg.filter.urgent_prefix
    rows = [
        ("icliniq-1", False, "I had mumps five months ago and now my left testis has shrunk.",
         f"See a urologist for an examination and a semen analysis. {close}"),
        ("icliniq-2", False, "How long does cocaine stay in sperm? We are trying to conceive.",
         f"Wait at least three months before trying to conceive. {close}"),
        ("edge-urgent", True, "I have crushing chest pain and I am short of breath.",
         f"{prefix} Call emergency services now. {close}"),
        ("icliniq-4", False, "I have had a dry cough for a week.",
         f"Drink warm fluids and rest. {close}"),
    ]
    folder = project_dir / "3.merge"
    folder.mkdir()
    with open(folder / "test.jsonl", "w") as data, open(folder / "test.meta.jsonl", "w") as meta:
        for rid, urgent, q, a in rows:
            data.write(json.dumps({"messages": [{"role": "system", "content": system},
                                                {"role": "user", "content": q},
                                                {"role": "assistant", "content": a}]}) + "\n")
            meta.write(json.dumps({"id": rid, "split": "test", "category": "x", "is_urgent": urgent}) + "\n")
        data.write('{"messages": [{"role": "user", "content": "truncated\n')       # broken line
        meta.write(json.dumps({"id": "broken", "split": "test", "is_urgent": False}) + "\n")
    return len(rows) + 1


@pytest.mark.slow
def test_evaluate_writes_report_files(tiny_models, project_dir, capsys):
    base, adapter = tiny_models
    n_lines = write_split(project_dir)
    args = ["--evaluate", "--set", f"models.base={base}", "--set", f"models.adapter={adapter}",
            "--set", "inference.max_new_tokens=12", "--set", "site.dtype=float32",
            "--set", "inference.triage_set=null"]
    assert entry.main(args) == 0
    out_dir = project_dir / "inference"
    report = (out_dir / "report.md").read_text()
    assert "| ends with the closing sentence |" in report and "| metric | base | ft |" in report
    assert "## The workshop prompts" in report and report.count("**ft:**") == 4
    assert "## Worst cases" in report and 'First-token probability of "Seek"' in report
    data = json.loads((out_dir / "report.json").read_text())
    assert data["metrics"]["base"]["n"] == 4 and data["metrics"]["ft"]["urgent_recall"]["n"] == 1
    assert (out_dir / "report.png").read_bytes()[:4] == b"\x89PNG"
    answers = [json.loads(x) for x in (out_dir / "answers.jsonl").read_text().splitlines()]
    assert [a["id"] for a in answers] == ["icliniq-1", "icliniq-2", "edge-urgent", "icliniq-4"]
    assert any(a["answers"]["base"] != a["answers"]["ft"] for a in answers)   # the adapter is applied
    rejected = [json.loads(x) for x in (out_dir / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 1 and rejected[0]["reason"] == "malformed_json"
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["counts"] == {"in": n_lines, "kept": 4, "rejected": 1, "skipped": 0}
    capsys.readouterr()
    assert entry.main(args) == 0                                           # unchanged: a no-op
    assert "up to date" in capsys.readouterr().out


@pytest.mark.slow
def test_merged_model_loads_with_plain_automodel(tiny_models, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, adapter = tiny_models
    cfg = tiny_cfg(base, adapter)
    out = inference.merge_adapter(cfg, tmp_path / "merged")
    for name in ("config.json", "tokenizer.json", "chat_template.jinja", "README.md"):
        assert (out / name).is_file(), name
    assert list(out.glob("*.safetensors")) and not list(out.glob("*.bin")) and not list(out.glob("adapter_*"))
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and len(tokenizer(PROMPTS[0])["input_ids"]) > 0
    peft_model, _ = inference.load_for_inference(cfg, "ft")
    ids = tokenizer(generation.render_prompt(tokenizer, PROMPTS[0], cfg), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = merged(ids).logits, peft_model(ids).logits
    # W + BA summed once vs x(W) + x(B)(A) every step: fp32 rounding through ~70 positions of the
    # recurrent (GatedDeltaNet) layers reaches 3e-4 on logits of magnitude ~4 (measured; the thread
    # count changes it), so 1e-3; the next-token choice must not change at all.
    assert torch.allclose(a, b, atol=1e-3), float((a - b).abs().max())
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    with pytest.raises(ConfigError):                                       # never overwrites silently
        inference.merge_adapter(cfg, out)


# -- through the local Slurm cluster (last) -------------------------------------------------------
@pytest.mark.slurm
@pytest.mark.slow
def test_run_inference_inside_salloc_runs_as_gpu_step(slurm_cluster, tiny_models, project_dir):
    from slurm_helpers import slurm_env

    base, adapter = tiny_models
    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(project_dir)})
    inner = (f"bash {RUN} base --set models.base={base} --set inference.max_new_tokens=6 "
             f"--prompt 'Sore throat?'")
    out = subprocess.run(["salloc", "-p", "normal-a100-40", "--gpus=1", "-t", "00:05:00", "bash", "-c", inner],
                         capture_output=True, text=True, timeout=300, env=env, cwd=str(REPO_DIR / "inference"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "running as a job step (srun" in out.stderr
    # the step got the allocated (fake) GPU; its index depends on what other jobs hold (no cgroups here)
    assert re.search(r"visible_gpus: \d", out.stdout), out.stdout[-2000:]
    assert "--- [base] prompt 1/1 ---" in out.stdout and "Q: Sore throat?" in out.stdout
