"""The llm rewriter backend end to end with the embedded tiny Qwen3.5-architecture model.

The tiny model writes mostly invalid JSON: those replies must be caught, retried, handed to the
rules fallback and counted. The model is built once per session by healthai.model.embedded.
"""

from __future__ import annotations

import json

import pytest

from healthai.config import REPO_DIR, load_config
from healthai.data.filtering import filter_record
from healthai.pipeline.io import Line, iter_jsonl, read_jsonl
from healthai.data.rewriting import Item, LLMRewriter, RewriteStats, rewrite_items
from healthai.data.triage import is_urgent
from healthai.data.validation import failed_rules

FIXTURE = REPO_DIR / "tests" / "fixtures" / "filter" / "curated_sample.jsonl"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The embedded tiny model + tokenizer, built by healthai.model.embedded (fails, never skips, without it)."""
    from healthai.model import embedded

    folder = tmp_path_factory.mktemp("embedded") / "model"
    return embedded.build_embedded_model(folder)


def items(cfg, n):
    out = []
    for line in iter_jsonl(FIXTURE):
        if isinstance(line, Line) and filter_record(line.record, cfg.filter).reason is None:
            res = filter_record(line.record, cfg.filter)
            out.append(Item(line.record["id"], res.question, res.answer, is_urgent(res.question, cfg.filter)))
    return out[:n]


@pytest.mark.slow
def test_llm_backend_end_to_end(tiny_model_dir):
    cfg = load_config(overrides=["filter.llm.max_new_tokens=16", "filter.llm.retries=1", "filter.llm.batch_size=4",
                                 "filter.llm.max_answer_chars=300"])
    llm = LLMRewriter.load(tiny_model_dir, cfg.filter, device="cpu", dtype="float32")
    prompt = llm.build_prompt("I have a cough.", "Rest.")
    assert cfg.filter.rewriter_system in prompt and prompt.rstrip().endswith(("<think>\n\n</think>", "assistant"))
    batch = items(cfg, 4)
    stats = RewriteStats()
    outs = rewrite_items(batch, cfg.filter, "llm", llm=llm, stats=stats)
    assert len(outs) == 4 and llm.generated_tokens > 0
    for o in outs:                                    # every record ends with a valid answer, by one backend
        assert o.answer and o.backend in ("llm", "rules") and not failed_rules(o.checks)
        assert o.fallback == (o.backend == "rules")
    fell_back = sum(o.fallback for o in outs)
    assert stats.fallbacks == fell_back and stats.attempts == 4 + stats.failures_by_try[0]
    assert stats.json_failures + stats.validation_failures == sum(stats.failures_by_try)
    assert stats.pass_rates()["llm"]["json_schema"]["total"] == stats.attempts
    for o in outs:
        if o.fallback:
            assert o.llm_error.startswith(("json:", "validation:"))


@pytest.mark.slow
def test_batched_matches_one_at_a_time_greedy(tiny_model_dir):
    cfg = load_config(overrides=["filter.llm.max_new_tokens=12", "filter.llm.max_answer_chars=300"])
    llm = LLMRewriter.load(tiny_model_dir, cfg.filter, device="cpu", dtype="float32")
    prompts = [llm.build_prompt(it.question, it.answer) for it in items(cfg, 3)]
    batched = llm.generate(prompts, batch_size=3)     # left-padded: prompts differ in length
    single = llm.generate(prompts, batch_size=1)      # a batch of one is never padded
    assert batched == single                          # greedy, fp32


@pytest.mark.slow
def test_stage_with_llm_backend(project_dir, tiny_model_dir):
    from healthai.data.filter_stage import run_filter

    cfg = load_config(overrides=["filter.backend=llm", f"models.base={tiny_model_dir}", "models.rewriter=null",
                                 "filter.sample_size=4", "filter.reserve_size=1", "filter.draw_slack=0",
                                 "filter.llm.max_new_tokens=16", "filter.llm.retries=1",
                                 "filter.llm.max_answer_chars=300"])
    manifest = run_filter(cfg, input_file=FIXTURE, progress=False)
    out = project_dir / "2.filter"
    rows = read_jsonl(out / "rewritten.jsonl") + read_jsonl(out / "reserve.jsonl")
    assert len(rows) == 5 and all(r["meta"]["backend"] in ("llm", "rules") for r in rows)
    validation = json.loads((out / "validation.json").read_text())
    llm = validation["llm"]
    assert llm["attempts"] >= 5 and llm["fallbacks"] == sum(r["meta"]["fallback"] for r in rows)
    assert validation["pass_rates"]["llm"]["json_schema"]["total"] == llm["attempts"]
    assert manifest["counts"]["kept"] == 4 and "models" in manifest["config"]
    assert any(i["path"].endswith("config.json") for i in manifest["inputs"])  # the model folder is an input
