"""The export stage and its GGUF files: llama.cpp reproduces transformers' greedy tokens, the files
carry the chat template and end-of-turn token, the real Qwen3.5-9B layout converts with the real
tokenizer recognised by its hash (no fallback), and bad input fails in one line naming the file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TRAIN_PAIRS, build_real_layout, iclinq_pairs

from healthai.config import REPO_DIR
from healthai.errors import ModelError
from healthai.model import gguf
from healthai.model.gguf_convert import (
    FALLBACK_NOTE,
    QWEN35_REGEX,
    is_qwen35_pretokenizer,
)

pytestmark = pytest.mark.slow

HELD_OUT = [q for q, _ in iclinq_pairs()[TRAIN_PAIRS:TRAIN_PAIRS + 20]]
"""20 iCliniq questions the adapter never saw (it trains on the first TRAIN_PAIRS)."""


def test_f32_gguf_reproduces_transformers_greedy_tokens(tiny_export):
    """4 workshop prompts + 20 held-out questions: llama.cpp's f32 file gives base + adapter's greedy tokens
    (transformers, PEFT unmerged: so the merge and the conversion are checked together)."""
    import torch

    from healthai.model.generation import pad_token_id, render_prompt, stop_token_ids
    from healthai.model.inference import load_for_inference

    cfg, project = tiny_export
    questions = list(cfg.inference.prompts) + HELD_OUT
    assert len(questions) == 24
    model, tokenizer = load_for_inference(cfg, "ft")
    llm = gguf.load_llama(project / "export" / "ft-f32.gguf", n_ctx=1024, threads=2)
    differing = []
    for q in questions:
        text = render_prompt(tokenizer, q, cfg)
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        assert llm.tokenize(gguf.nfc(text).encode(), add_bos=False, special=True) == enc["input_ids"][0].tolist()
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=24, do_sample=False, eos_token_id=stop_token_ids(tokenizer),
                                 pad_token_id=pad_token_id(tokenizer), temperature=None, top_p=None, top_k=None)
        want = out[0, enc["input_ids"].shape[1]:].tolist()
        got = gguf.greedy_tokens(llm, text, 24)
        if got != want:
            differing.append((q[:40], want, got))
    llm.close()
    assert not differing, differing


def test_files_carry_chat_template_end_of_turn_and_no_thinking(tiny_export):
    from transformers import AutoTokenizer

    cfg, project = tiny_export
    tokenizer = AutoTokenizer.from_pretrained(project / "export" / "ft-merged")
    for name in ("ft-f16.gguf", "ft-Q4_K_M.gguf", "base-q8_0.gguf"):
        meta = gguf.gguf_metadata(project / "export" / name)
        assert meta["general.architecture"] == "qwen35"
        assert meta["tokenizer.chat_template"] == tokenizer.chat_template
        assert meta["tokenizer.ggml.pre"] == "qwen35"
        assert int(meta["tokenizer.ggml.eos_token_id"]) == tokenizer.convert_tokens_to_ids("<|im_end|>")
        assert "qwen35.nextn_predict_layers" not in meta          # --no-mtp: no phantom MTP block
    # the GGUF's own template, as llama.cpp's chat and server render it (thinking off), == training's prompt
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from healthai.model.generation import build_messages, render_prompt

    meta = gguf.gguf_metadata(project / "export" / "ft-f16.gguf")
    formatter = Jinja2ChatFormatter(template=meta["tokenizer.chat_template"], eos_token="<|im_end|>", bos_token="")
    for q in cfg.inference.prompts:
        rendered = formatter(messages=build_messages(q, cfg.filter.assistant_system), enable_thinking=False).prompt
        assert rendered == render_prompt(tokenizer, q, cfg)


def test_manifest_card_agreement_and_rerun_is_a_no_op(tiny_export, capsys):
    from healthai.model.export import run_export_stage

    cfg, project = tiny_export
    out = project / "export"
    manifest = json.loads((out / "manifest.json").read_text())
    names = {Path(o["path"]).name for o in manifest["outputs"]}
    expected = {f"{v}-{t}.gguf" for v in ("base", "ft") for t in ("f16", "f32", "q8_0", "Q4_K_M")}
    assert expected <= names and "model.safetensors" in names and "README.md" in names
    assert manifest["counts"] == {"in": 8, "kept": 8, "rejected": 0}
    agreement = json.loads((out / "agreement.json").read_text())
    assert agreement["ft"]["gguf"]["f32"]["token_agreement"] == 1.0
    assert len(agreement["ft"]["transformers"]) == 4 and len(agreement["ft"]["gguf"]["f32"]["prompts"]) == 4
    card = (out / "README.md").read_text()
    assert "| ft-Q4_K_M.gguf |" in card and "100% of 4" in card
    assert all(oct(p.stat().st_mode & 0o007) == "0o0" for p in out.glob("*.gguf"))   # health data: not world-readable
    capsys.readouterr()
    assert run_export_stage(cfg)["fingerprint"] == manifest["fingerprint"]
    assert "up to date" in capsys.readouterr().out


def test_real_qwen35_layout_converts_with_its_tokenizer_recognised(tmp_path):
    """The real Qwen3.5-9B checkpoint layout (ConditionalGeneration, vision tower, vocab 248,320) through the
    same converter call: the real tokenizer is known to llama.cpp by its hash, the fallback never fires."""
    from transformers import AutoTokenizer

    from healthai.config import load_config
    from healthai.model.generation import render_prompt

    folder = build_real_layout(tmp_path / "real")
    out, log = tmp_path / "real-f16.gguf", tmp_path / "convert.log"
    gguf.convert(REPO_DIR / "third_party" / "llama_cpp_convert", folder, out, "f16", log, threads=2)
    assert FALLBACK_NOTE not in log.read_text()
    meta = gguf.gguf_metadata(out)
    assert meta["tokenizer.ggml.pre"] == "qwen35" and meta["general.architecture"] == "qwen35"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert int(meta["tokenizer.ggml.eos_token_id"]) == tokenizer.convert_tokens_to_ids("<|im_end|>") == 248046
    llm = gguf.load_llama(out, n_ctx=512, threads=2)
    cfg = load_config(site="local")
    for q in cfg.inference.prompts:
        text = render_prompt(tokenizer, q, cfg)
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == tokenizer(
            text, add_special_tokens=False)["input_ids"]
    assert len(gguf.greedy_tokens(llm, render_prompt(tokenizer, "Sore throat?", cfg), 4)) == 4   # it runs
    llm.close()


def test_pre_tokenizer_fallback_only_for_qwen35s_exact_split(tiny_export, tmp_path):
    from healthai.model.embedded import PRETOKENIZE_REGEX

    cfg, project = tiny_export
    assert QWEN35_REGEX == PRETOKENIZE_REGEX
    merged = project / "export" / "ft-merged"
    assert "qwen35" in (project / "export" / "logs" / "ft-f16.convert.log").read_text()   # it fired here
    assert is_qwen35_pretokenizer(merged / "tokenizer.json")
    # the same tokenizer with one character of the split regex changed: unknown hash, no fallback
    other = tmp_path / "other"
    shutil.copytree(merged, other)
    tok = json.loads((other / "tokenizer.json").read_text())
    tok["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = QWEN35_REGEX.replace(r"\p{N}", r"\p{N}{1,3}", 1)
    (other / "tokenizer.json").write_text(json.dumps(tok))
    assert not is_qwen35_pretokenizer(other / "tokenizer.json")
    with pytest.raises(ModelError, match="converter failed .*pre-tokenizer was not recognized") as err:
        gguf.convert(cfg.resolve(cfg.export.converter), other, tmp_path / "x.gguf", "f16", tmp_path / "x.log", 2)
    assert "\n" not in str(err.value) and str(other) in str(err.value)
    assert not (tmp_path / "x.gguf").exists() and not list(tmp_path.glob(".x.gguf.tmp.*"))


def test_bad_gguf_files_fail_in_one_line_naming_the_file(tiny_export, tmp_path):
    cfg, project = tiny_export
    good = project / "export" / "ft-f16.gguf"
    recorded = gguf.recorded_output(cfg, good)
    assert recorded and recorded["sha256"]
    cases = {"missing.gguf": None, "empty.gguf": b"", "text.gguf": b"not a model\n",
             "truncated.gguf": good.read_bytes()[:3000]}
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(ModelError) as err:
            gguf.load_llama(path, n_ctx=256, threads=2)
        msg = str(err.value)
        assert str(path) in msg and "\n" not in msg and "run-export.sh" in msg, msg
    # a flipped byte in the tensor data loads in llama.cpp without a word: the recorded sha256 catches it
    flipped = tmp_path / "flipped.gguf"
    data = bytearray(good.read_bytes())
    data[-100] ^= 0xFF
    flipped.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 differs"):
        gguf.check_gguf(flipped, recorded)
    with pytest.raises(ModelError, match="truncated or replaced"):
        gguf.check_gguf(tmp_path / "truncated.gguf", recorded)


def test_missing_adapter_and_unconvertible_base_are_one_line(tiny_export, tmp_path, capsys, monkeypatch):
    import sys

    sys.path.insert(0, str(REPO_DIR / "inference"))
    import export_model

    cfg, _ = tiny_export
    base = Path(cfg.models.base)
    monkeypatch.setenv("HEALTHAI_PROJECT_DIR", str(tmp_path / "p"))   # restored after the test
    args = ["--set", f"models.base={base}",
            "--set", f"models.adapter={tmp_path / 'none'}"]
    assert export_model.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(tmp_path / "none") in err and "run-ft.sh" in err, err
    small = tmp_path / "small"
    shutil.copytree(base, small)
    conf = json.loads((small / "config.json").read_text())
    (small / "config.json").write_text(json.dumps({**conf, "head_dim": 16}))
    assert export_model.main(["--set", f"models.base={small}",
                              "--set", "export.variants=[base]"]) == 1
    err = capsys.readouterr().err.strip()
    assert "head_dim 16" in err and str(small / "config.json") in err, err


def test_gguf_of_another_base_is_refused_by_the_chat(tiny_export, tmp_path):
    from healthai.model.chat import open_llama

    cfg, project = tiny_export
    folder = build_real_layout(tmp_path / "real")
    other = tmp_path / "other-f16.gguf"
    gguf.convert(REPO_DIR / "third_party" / "llama_cpp_convert", folder, other, "f16", tmp_path / "c.log", threads=2)
    with pytest.raises(ModelError, match="another base") as err:
        open_llama(cfg, "ft", other)
    assert str(other) in str(err.value)
    assert open_llama(cfg, "ft", project / "export" / "ft-q8_0.gguf").path.name == "ft-q8_0.gguf"


def test_evaluation_report_section_puts_llama_cpp_next_to_transformers(tiny_export):
    from healthai.model.evaluate import export_agreement_path, llama_section

    cfg, project = tiny_export
    path = export_agreement_path(cfg)
    assert path == project / "export" / "agreement.json"
    agreement = json.loads(path.read_text())
    section = llama_section(path, cfg)
    assert section.count("| prompt | transformers | llama.cpp |") == 2          # base and ft
    for variant in ("base", "ft"):
        rows = agreement[variant]["gguf"][cfg.export.chat_type]["prompts"]
        for hf, row in zip(agreement[variant]["transformers"], rows):
            assert " ".join(hf.split()).replace("|", "\\|") in section
            assert " ".join(row["answer"].split()).replace("|", "\\|") in section


def test_size_estimate_matches_the_exported_files_and_gives_the_9b_table(tiny_export):
    from healthai.model import gguf_sizes

    cfg, project = tiny_export
    manifest = json.loads((project / "export" / "manifest.json").read_text())
    sizes = manifest["stats"]["sizes"]
    rows = {r.qtype: r for r in gguf_sizes.estimate(cfg.resolve(cfg.models.base), cfg.export.n_ctx)}
    # f16 is 2 bytes a weight (norms in f32, metadata and the vocabulary on top); q8_0 8.5 bits
    for qtype, slack in (("f16", 0.15), ("q8_0", 0.25)):
        measured = sizes[f"base-{qtype}.gguf"] / 1e9
        assert abs(rows[qtype].file_gb - measured) <= slack * measured + 0.002, (qtype, rows[qtype], measured)
    assert rows["Q4_K_M"].file_gb < rows["q8_0"].file_gb < rows["f16"].file_gb
    card = (project / "export" / "README.md").read_text()
    assert "| GGUF type | bits/weight | file (GB) | llama.cpp memory (GB) |" in card
    # Qwen3.5-9B from its real config: 8.95 B text parameters, as the README's table says
    out = subprocess.run([sys.executable, str(REPO_DIR / "inference" / "gguf_sizes.py"),
                          str(REPO_DIR / "tests" / "fixtures" / "qwen3.5-9b")], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert out.startswith("8.95 B text parameters")
    assert "| Q4_K_M | 4.90 | 5.48 |" in out and "| f16 | 16.00 | 17.91 |" in out
    readme = (REPO_DIR / "inference" / "README.md").read_text()
    assert "| Q4_K_M | 4.90 | 5.48 |" in readme, "inference/README.md's size table is not the script's output"
    bad = subprocess.run([sys.executable, str(REPO_DIR / "inference" / "gguf_sizes.py"), str(project)], check=False,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "config.json" in bad.stderr
