"""healthai.model (embedded, folder, base_stage): tokenizer, chat template, the tiny Qwen3.5 model, folder validation, the stage."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from healthai.model import base_corpus, base_stage, embedded, folder
from healthai.config import REPO_DIR, load_config
from healthai.config.modeling import EmbeddedModelConfig
from healthai.errors import InputError, ModelError

QWEN = Path(__file__).parents[1] / "fixtures" / "qwen3.5-9b"
RAW = REPO_DIR / "data" / "raw" / "icliniq_2k_chat.jsonl"
ORIGINAL_TEMPLATE = folder.TEMPLATES / "qwen3_5_original.jinja"
SMALL = EmbeddedModelConfig(vocab_size=700, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                            num_key_value_heads=1, head_dim=16, linear_num_key_heads=1, linear_num_value_heads=2,
                            linear_head_dim=16, domain_max_tokens=3000, domain_block_size=64, domain_batch_size=8)
# system + user + assistant, the stage-3 record form; the answer has the closing sentence
CHAT = [{"role": "system", "content": "You are a careful medical assistant."},
        {"role": "user", "content": "I have a mild headache since yesterday. What should I do?"},
        {"role": "assistant", "content": "Rest and drink water. Please consult a doctor for more personalized "
                                         "medical advice."}]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return base_corpus.read_answers(RAW)[:150]


@pytest.fixture(scope="module")
def tokenizer(texts):
    return embedded.build_tokenizer(texts, SMALL)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, texts) -> Path:
    return embedded.build_embedded_model(tmp_path_factory.mktemp("tiny") / "model", texts, SMALL)


# -- corpus --------------------------------------------------------------------------------------
def test_read_answers_both_formats(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        json.dumps({"id": "a", "messages": [{"role": "user", "content": "q"},
                                            {"role": "assistant", "content": " Curated answer. "}]}) + "\n"
        + RAW.read_text(encoding="utf-8").splitlines()[0] + "\n"   # a real raw iCliniq line
        + "{not json\n"                                            # a broken line: skipped, not fatal
        + json.dumps({"messages": [{"role": "user", "content": "only a question"}]}) + "\n",
        encoding="utf-8")
    answers = base_corpus.read_answers(path)
    assert answers[0] == "Curated answer."
    assert answers[1].startswith("Hello, Welcome to Chat Doctor forum.")
    assert len(answers) == 2


def test_read_answers_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        base_corpus.read_answers(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"messages": []}\n')
    with pytest.raises(InputError, match="no assistant answers"):
        base_corpus.read_answers(empty)


def test_corpus_falls_back_to_raw_answers_until_stage_1_ran(project_dir):
    cfg = load_config()
    assert base_corpus.corpus_path(cfg) == RAW
    curated = project_dir / "1.curation" / "curated.jsonl"
    curated.parent.mkdir(parents=True)
    curated.write_text('{"messages": [{"role": "assistant", "content": "x"}]}\n')
    assert base_corpus.corpus_path(cfg) == curated
    curated.unlink()
    with pytest.raises(InputError, match="run stage 1"):
        base_corpus.corpus_path(load_config(overrides=["embedded.fallback_corpus=null"]))


# -- tokenizer -------------------------------------------------------------------------------------
def test_tokenizer_has_qwen_special_tokens_as_single_tokens(tokenizer):
    for tok in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"):
        ids = tokenizer(tok, add_special_tokens=False).input_ids
        assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids[0]) == tok
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert len(tokenizer) == SMALL.vocab_size
    # byte-level: any text round-trips, accents and digits included
    text = "Febre de 39.5 °C há 2 dias — what now?"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text


def test_tokenizer_is_deterministic_and_order_independent(texts, tokenizer):
    again = embedded.build_tokenizer(list(reversed(texts)) + texts[:10], SMALL)
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()


# -- chat template ---------------------------------------------------------------------------------
def test_training_template_renders_the_real_qwen_text(tokenizer):
    original = ORIGINAL_TEMPLATE.read_text(encoding="utf-8")
    ours = tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert ours == tokenizer.apply_chat_template(CHAT, tokenize=False, chat_template=original)
    # the final assistant turn carries the empty think block, as in the real template
    assert "<|im_start|>assistant\n<think>\n\n</think>\n\nRest and drink water." in ours
    prompt = tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True,
                                           enable_thinking=False)
    assert prompt == tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True,
                                                   enable_thinking=False, chat_template=original)
    # thinking is off by default in ours (on in the real one)
    assert tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True) == prompt


def test_train_text_starts_with_the_inference_prompt_token_for_token(tokenizer):
    prompt = tokenizer.apply_chat_template(CHAT[:2], add_generation_prompt=True, enable_thinking=False,
                                           tokenize=True, return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(CHAT, tokenize=True, return_dict=True)["input_ids"]
    assert full[:len(prompt)] == prompt


def _masked_text(tokenizer, messages) -> tuple[str, list[int], list[int]]:
    enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    return tokenizer.decode([i for i, m in zip(ids, mask) if m]), ids, mask


def test_assistant_mask_is_exactly_the_answer_and_end_of_turn(tokenizer):
    text, ids, mask = _masked_text(tokenizer, CHAT)
    assert text == CHAT[2]["content"] + "<|im_end|>"
    # the think block and the header are prompt: the first masked token comes right after "</think>\n\n"
    first = mask.index(1)
    assert tokenizer.decode(ids[:first]).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert sum(mask) == len(tokenizer(CHAT[2]["content"], add_special_tokens=False).input_ids) + 1


def test_real_reasoning_text_would_be_trained(tokenizer):
    # a record with reasoning: the think block is then part of what the model must produce
    msgs = CHAT[:2] + [{"role": "assistant", "content": "<think>\nshort check\n</think>\n\nRest."}]
    text, _, _ = _masked_text(tokenizer, msgs)
    assert text == "<think>\nshort check\n</think>\n\nRest.<|im_end|>"


# -- the tiny model ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_embedded_model_loads_with_auto_classes_and_has_qwen35_layers(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = {p.name for p in tiny_model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert not any(n.endswith((".bin", ".pt")) for n in names)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(tiny_model, trust_remote_code=False)
    assert type(model).__name__ == "Qwen3_5ForCausalLM"
    assert model.config.layer_types == ["linear_attention"] * 3 + ["full_attention"]
    assert model.config.vocab_size == len(tok) and model.config.eos_token_id == tok.eos_token_id
    leaves = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    assert {"in_proj_qkv", "in_proj_z", "in_proj_a", "in_proj_b", "out_proj", "q_proj", "o_proj"} <= leaves
    assert tok.chat_template and "{% generation %}" in tok.chat_template.replace("{%- generation %}",
                                                                               "{% generation %}")


@pytest.mark.slow
def test_embedded_model_is_deterministic_from_the_seed(tiny_model, texts, tmp_path):
    again = embedded.build_embedded_model(tmp_path / "again", texts, SMALL)

    def digest(p: Path) -> str:
        from safetensors.torch import load_file

        state = load_file(str(p / "model.safetensors"))
        h = hashlib.sha256()
        for k in sorted(state):
            h.update(k.encode())
            h.update(state[k].numpy().tobytes())
        return h.hexdigest()

    assert digest(again) == digest(tiny_model)
    other = embedded.build_embedded_model(tmp_path / "other", texts, EmbeddedModelConfig(**{**SMALL.__dict__,
                                                                                          "seed": 7}))
    assert digest(other) != digest(tiny_model)


@pytest.mark.slow
def test_load_model_and_tokenizer_uses_the_site_device_and_dtype(tiny_model):
    import torch

    cfg = load_config(overrides=["site.device=cpu", "site.dtype=auto"])
    model, tok = folder.load_model_and_tokenizer(tiny_model, cfg)
    assert model.device.type == "cpu" and model.dtype == torch.float32
    # the other argument order (used by inference.py) works too
    model2, _ = folder.load_model_and_tokenizer(cfg, tiny_model)
    assert type(model2) is type(model)
    assert tok("headache", add_special_tokens=False).input_ids


# -- folder validation -------------------------------------------------------------------------------
def _copy_meta(tmp_path) -> Path:
    """A copy of the real Qwen3.5-9B metadata: config, tokenizer config, template, vocab, merges; no weights."""
    dest = tmp_path / "Qwen3.5-9B"
    shutil.copytree(QWEN, dest, ignore=shutil.ignore_patterns("SOURCES.md"))
    return dest


def test_check_names_the_missing_piece(tmp_path):
    with pytest.raises(ModelError, match="model folder not found"):
        folder.check_model_folder(tmp_path / "nowhere")
    model_dir = _copy_meta(tmp_path)
    with pytest.raises(ModelError, match=r"no \*\.safetensors weights"):
        folder.check_model_folder(model_dir)
    (model_dir / "pytorch_model.bin").write_bytes(b"pickle")  # refused: only safetensors are loaded
    with pytest.raises(ModelError, match="pytorch_model.bin: only safetensors"):
        folder.check_model_folder(model_dir)
    (model_dir / "model-00001-of-00004.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="no tokenizer.json"):
        folder.check_model_folder(model_dir)
    (model_dir / "config.json").unlink()
    with pytest.raises(ModelError, match="no config.json"):
        folder.check_model_folder(model_dir)


@pytest.mark.slow
def test_check_catches_a_tokenizer_of_another_model(tmp_path, tiny_model):
    model_dir = _copy_meta(tmp_path)
    (model_dir / "model.safetensors").write_bytes(b"")
    shutil.copy(tiny_model / "tokenizer.json", model_dir / "tokenizer.json")  # 700 tokens for a 248k model
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    with pytest.raises(ModelError, match="only 700 tokens for a vocab_size of 248320"):
        folder.check_model_folder(model_dir)


def test_check_cli_one_line(tmp_path):
    model_dir = _copy_meta(tmp_path)
    out = subprocess.run([sys.executable, "-m", "healthai.model.folder", "check", str(model_dir)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "safetensors" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_real_qwen_tokenizer_derived_and_training_template_on_it(tmp_path):
    """The real 248k vocabulary: derived tokenizer.json, think tokens, template text and mask."""
    from transformers import AutoTokenizer

    model_dir = _copy_meta(tmp_path)
    folder.derive_tokenizer_json(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert len(tok) > 240_000
    assert tok.convert_tokens_to_ids(["<|im_end|>", "<think>", "</think>"]) == [248046, 248068, 248069]
    assert tok("Hello doctor", add_special_tokens=False).input_ids
    tok.chat_template = folder.training_chat_template()
    real = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    assert tok.apply_chat_template(CHAT, tokenize=False) == tok.apply_chat_template(CHAT, tokenize=False,
                                                                                    chat_template=real)
    text, ids, mask = _masked_text(tok, CHAT)
    assert text == CHAT[2]["content"] + "<|im_end|>"
    think = [i for i, t in enumerate(ids) if t in (248068, 248069)]
    first = mask.index(1)
    assert len(think) == 2 and think[1] < first  # the empty think block is prompt, not loss
    assert tok.decode(ids[think[1] + 1:first]) == "\n\n"


# -- the stage -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_build_stage_writes_a_loadable_trained_model_with_a_card(project_dir):
    sets = [f"embedded.{k}={v}" for k, v in SMALL.__dict__.items() if k not in ("corpus", "fallback_corpus", "shipped")]
    sets.append("embedded.shipped=null")  # the tiny base built here, not the shipped one
    cfg = load_config(overrides=sets + ["embedded.domain_epochs=1", "embedded.urgent_style_corpus=false"])
    manifest = base_stage.build_base_stage(cfg)
    out = project_dir / "models" / "embedded-base"
    info = folder.check_model_folder(out)
    assert info["model_type"] == "qwen3_5_text"
    card = (out / "README.md").read_text()
    assert "**This is not Qwen.**" in card and "from scratch" in card and "do not show" in card
    dom = manifest["stats"]["domain"]
    assert dom["steps"] > 0 and dom["final_loss"] < dom["first_loss"]
    assert manifest["counts"]["in"] == manifest["counts"]["kept"] > 0
    # a rerun with the same corpus and config is a no-op
    again = base_stage.build_base_stage(cfg)
    assert again["fingerprint"] == manifest["fingerprint"]


@pytest.mark.slow
def test_urgent_style_base_needs_the_splits_and_tracks_them_as_inputs(project_dir):
    from healthai.errors import InputError

    sets = [f"embedded.{k}={v}" for k, v in SMALL.__dict__.items() if k not in ("corpus", "fallback_corpus", "shipped")]
    sets.append("embedded.shipped=null")  # the tiny base built here, not the shipped one
    cfg = load_config(overrides=sets + ["embedded.domain_epochs=0.2", "embedded.urgent_style_corpus=true"])
    with pytest.raises(InputError, match=r"3\.merge/val\.jsonl: .*run stage 3 first"):
        base_stage.build_base_stage(cfg)
    merge = project_dir / "3.merge"
    merge.mkdir(parents=True)
    held = {"messages": [{"role": "user", "content": "A held-out question about chest pain."},
                         {"role": "assistant", "content": "Go now."}]}
    for split in ("val", "test"):
        (merge / f"{split}.jsonl").write_text(json.dumps(held) + "\n", encoding="utf-8")
    manifest = base_stage.build_base_stage(cfg)
    assert {Path(i["path"]).name for i in manifest["inputs"]} >= {"val.jsonl", "test.jsonl"}
    assert manifest["stats"]["domain"]["steps"] > 0
    # a changed split makes the base stale (its questions decide what the base may see)
    (merge / "test.jsonl").write_text("", encoding="utf-8")
    assert base_stage.build_base_stage(cfg)["fingerprint"] != manifest["fingerprint"]
