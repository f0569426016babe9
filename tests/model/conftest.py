"""The llama.cpp tests' shared model (tests/model/test_export.py, test_chat.py): built and exported once."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from healthai.config import REPO_DIR, load_config

ICLINIQ = REPO_DIR / "data" / "raw" / "icliniq_2k_chat.jsonl"
TRAIN_PAIRS = 200
"""The adapter trains on the first 200 iCliniq questions; the fidelity test asks later ones (held out)."""

TINY = ["embedded.vocab_size=1024", "embedded.hidden_size=64", "embedded.intermediate_size=128",
        "embedded.head_dim=32", "embedded.linear_head_dim=16"]
"""test_inference's toy sizes, but head_dim 32: llama.cpp's qwen35 asserts head_dim >= 11+11+10 (rope sections)."""
EXPORT = ["export.convert_types=[f32,f16,q8_0]", "export.quant_types=[Q4_K_M]", "export.chat_type=f16",
          "export.agreement_max_new_tokens=24", "export.n_threads=2", "export.n_ctx=1024",
          "site.device=cpu", "site.dtype=float32", "inference.max_new_tokens=24", "export.max_tokens=24"]


def iclinq_pairs() -> list[tuple[str, str]]:
    """(question, first 60 words of the doctor's answer) of every iCliniq turn, in file order."""
    pairs = []
    for line in ICLINIQ.read_text(encoding="utf-8").splitlines():
        for turn in json.loads(line).get("chat") or []:
            q = next((m["content"] for m in turn.get("input", []) if m.get("role") == "user"), None)
            if q and turn.get("ideal"):
                pairs.append((" ".join(q.split()[:80]), " ".join(turn["ideal"].split()[:60])))
    return pairs


def export_cfg(project: Path, base: Path, adapter: Path, *extra: str):
    return load_config(site="local", overrides=[f"project.dir={project}", f"models.base={base}",
                                                f"models.adapter={adapter}", *TINY, *EXPORT, *extra])


def train_adapter(base: Path, adapter: Path, steps: int = 30) -> None:
    """A LoRA adapter trained for a few steps on chat-rendered iCliniq Q&A (learns the turn format)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from healthai.model.lora import apply_lora, save_adapter

    system = load_config(site="local").filter.assistant_system
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(0)
    peft_model, _ = apply_lora(model, {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0})
    chats = [tok.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": q},
                                      {"role": "assistant", "content": a}], tokenize=False, enable_thinking=False)
             for q, a in iclinq_pairs()[:TRAIN_PAIRS]]
    random.Random(0).shuffle(chats)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=3e-3)
    peft_model.train()
    for step in range(steps):
        batch = tok(chats[step * 6 % len(chats):][:6], return_tensors="pt", padding=True, truncation=True,
                    max_length=256, add_special_tokens=False)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        peft_model(**batch, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    peft_model.eval()
    save_adapter(peft_model, tok, adapter)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """(cfg, project dir): the embedded Qwen3.5-architecture model at a toy size (jittered so that greedy
    decoding does not collapse), a quickly trained adapter, and the export stage run on both."""
    from healthai.model.base_corpus import read_answers
    from healthai.model.export import run_export_stage
    from model_helpers import jittered_embedded_base

    root = tmp_path_factory.mktemp("gguf")
    base, adapter, project = root / "base", root / "adapter", root / "project"
    project.mkdir()
    cfg = export_cfg(project, base, adapter)
    jittered_embedded_base(base, read_answers(ICLINIQ)[:200], cfg)
    train_adapter(base, adapter)
    run_export_stage(cfg)
    return cfg, project


def build_real_layout(out: Path, hidden: int = 64) -> Path:
    """A random-initialised Qwen3_5ForConditionalGeneration in the real Qwen3.5-9B checkpoint layout:
    the fixture's config (vision part included, vocab 248,320, mtp_num_hidden_layers 1) scaled down to
    3 linear-attention + 1 full-attention layers of width `hidden`, the real tokenizer and chat
    template. 32.6M parameters at hidden 64, 97 % of them the embedding and the untied lm_head."""
    import shutil

    import torch
    from transformers import AutoConfig, Qwen3_5ForConditionalGeneration

    from healthai.model.folder import derive_tokenizer_json

    fixture = REPO_DIR / "tests" / "fixtures" / "qwen3.5-9b"
    cfg = json.loads((fixture / "config.json").read_text())
    text, vision = cfg["text_config"], cfg["vision_config"]
    text.update(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=4,
                layer_types=["linear_attention"] * 3 + ["full_attention"], num_attention_heads=2,
                num_key_value_heads=1, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=32,
                linear_value_head_dim=32, dtype="float32")  # head_dim 256, mrope [11,11,10], vocab kept
    vision.update(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    torch.manual_seed(0)
    model = Qwen3_5ForConditionalGeneration(AutoConfig.from_pretrained(out)).eval()
    model.save_pretrained(out, safe_serialization=True)
    derive_tokenizer_json(fixture, out)
    shutil.copy(fixture / "chat_template.jinja", out / "chat_template.jinja")
    return out
