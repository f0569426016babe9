"""Rewriting: JSON extraction of messy model replies, the rules backend, the llm retry/fallback loop."""

from __future__ import annotations

import json

import pytest

from healthai.config.filtering import FilterConfig
from healthai.data.rewriting import Item, LLMRewriter, RewriteStats, check_model_dir, extract_json, rewrite_items, rewrite_rules, select_advice
from healthai.errors import ModelError

CFG = FilterConfig()
CLOSE = CFG.closing_sentence
GOOD = f"Drink warm fluids and rest. {CLOSE}"


# -- JSON extraction table ----------------------------------------------------------------------
@pytest.mark.parametrize("reply, expected", [
    ('{"rewritten": "Rest.", "is_urgent": false}', ("Rest.", False)),                          # clean
    ('```json\n{"rewritten": "Rest.", "is_urgent": true}\n```', ("Rest.", True)),              # code fence
    ('```\n{"rewritten": "Rest.", "is_urgent": false}\n```\nDone.', ("Rest.", False)),          # bare fence
    ('Sure! Here it is: {"rewritten": "Rest.", "is_urgent": false} Hope that works.', ("Rest.", False)),
    ("{'rewritten': 'Rest.', 'is_urgent': False}", ("Rest.", False)),                           # single quotes
    ('{"rewritten": "Rest.", "is_urgent": "true",}', ("Rest.", True)),                          # trailing comma
    ('{"rewritten": "Rest.", "is_urgent": false', ("Rest.", False)),                            # truncated
    ('<think>\nhmm {x}\n</think>\n{"rewritten": "Rest.", "is_urgent": false}', ("Rest.", False)),
    ('{"rewritten": "Use {brackets} and \\"quotes\\".", "is_urgent": false} }', ('Use {brackets} and "quotes".', False)),
    ('{"rewritten": "Rest\\n and   sleep.", "is_urgent": false}', ("Rest and sleep.", False)),  # whitespace
])
def test_extract_json_accepts(reply, expected):
    parsed, why = extract_json(reply)
    assert why == "" and (parsed["rewritten"], parsed["is_urgent"]) == expected


@pytest.mark.parametrize("reply, why", [
    ("", "empty reply"),
    ("\n\n\n", "empty reply"),
    ("the patient should rest", "no JSON object"),
    ("[1, 2]", "no JSON object"),
    ('{"answer": "Rest."}', "'rewritten'"),
    ('{"rewritten": "", "is_urgent": false}', "'rewritten'"),
    ('{"rewritten": "Rest.", "is_urgent": "maybe"}', "'is_urgent'"),
    ('{"rewritten": "Rest."}', "'is_urgent'"),
])
def test_extract_json_rejects(reply, why):
    parsed, reason = extract_json(reply)
    assert parsed is None and why in reason


# -- rules backend ------------------------------------------------------------------------------
REAL_ANSWER = (  # icliniq_2k_chat.jsonl line 3 style: greeting, concern, advice, sign-off
    "Hello, Welcome to Chat Doctor forum. I can understand your concern. You are suffering from a viral "
    "infection. Drink plenty of warm fluids. Do steam inhalation two times a day. Avoid cold drinks and "
    "ice creams. Take care. Do you smoke?")


def test_rules_keeps_advice_drops_greetings_claims_signoffs_questions():
    assert select_advice(REAL_ANSWER, CFG) == ["Drink plenty of warm fluids.", "Avoid cold drinks and ice creams."]
    # "two times a day" is a regimen: that sentence is dropped too


def test_rules_rewrite_shape():
    text = rewrite_rules("I have a cough", REAL_ANSWER, False, CFG)
    assert text == f"Drink plenty of warm fluids. Avoid cold drinks and ice creams. {CLOSE}"
    urgent = rewrite_rules("chest pain", REAL_ANSWER, True, CFG)
    assert urgent.startswith(CFG.urgent_prefix + " Drink") and urgent.endswith(CLOSE)
    assert rewrite_rules("q", "Hello doctor. Take care. Regards.", False, CFG) is None


def test_rules_prefers_actionable_sentences_and_caps_their_number():
    answer = ("Migraine is common. It runs in families. Sleep on time. It is linked to stress. "
              "You should avoid skipping meals. Keep a headache diary. Exercise regularly.")
    assert select_advice(answer, CFG) == ["Sleep on time.", "You should avoid skipping meals.",
                                          "Keep a headache diary."]
    # bullet lines become sentences; the "...:" line that only introduces them is dropped
    bullets = "Follow these steps:\n1. drink fluids often\n2. rest in bed today\n- avoid the cold air"
    assert select_advice(bullets, CFG) == ["Drink fluids often.", "Rest in bed today.", "Avoid the cold air."]


def test_rules_outcomes_are_validated():
    items = [Item("a", "cough", REAL_ANSWER, False), Item("b", "q", "Hello doctor. Regards.", False)]
    stats = RewriteStats()
    a, b = rewrite_items(items, CFG, "rules", stats=stats)
    assert a.answer and a.backend == "rules" and all(a.checks.values())
    assert b.answer is None and b.reason == "no_advice_left"
    assert stats.pass_rates()["rules"]["closing_sentence"] == {"passed": 1, "total": 1, "rate": 1.0}


# -- llm loop with a scripted model (deterministic: tests retries, fallback, counting) -------------
class ScriptedLLM(LLMRewriter):
    """Replies from a script: replies[item index][try] (the last one repeats)."""

    def __init__(self, cfg, script):
        super().__init__(model=None, tokenizer=None, cfg=cfg, device="cpu")
        self.script, self.calls = script, []

    def build_prompt(self, question, answer):
        return question

    def generate(self, prompts, sample=False, batch_size=None, attempt=0):
        self.calls.append((list(prompts), sample))
        return [self.script[p][min(attempt, len(self.script[p]) - 1)] for p in prompts]


def js(text, urgent=False):
    return json.dumps({"rewritten": text, "is_urgent": urgent})


def test_llm_retries_then_falls_back_and_counts():
    cfg = FilterConfig()
    script = {
        "q-good": [js(GOOD)],                                        # valid on the first (greedy) try
        "q-second": ["garbage", f"```json\n{js(GOOD)}\n```"],          # invalid JSON, then valid
        "q-never": ["nope"],                                         # never valid -> rules fallback
        "q-invalid": [js("Take ibuprofen 400 mg.")],                 # JSON ok, validation fails every time
        "q-urgent": [js(f"{CFG.urgent_prefix} Call an ambulance. {CLOSE}", True)],  # model says urgent
    }
    items = [Item(q, q, "Drink warm fluids and rest. Avoid the cold air today.", False) for q in script]
    llm = ScriptedLLM(cfg, script)
    stats = RewriteStats()
    out = {o.id: o for o in rewrite_items(items, cfg, "llm", llm=llm, stats=stats)}
    assert [sample for _, sample in llm.calls] == [False, True, True]      # greedy first, sampled retries
    assert [len(p) for p, _ in llm.calls] == [5, 3, 2]
    assert out["q-good"].backend == "llm" and out["q-good"].tries == 1 and out["q-good"].checks["json_schema"]
    assert out["q-second"].backend == "llm" and out["q-second"].tries == 2
    assert out["q-never"].backend == "rules" and out["q-never"].fallback and out["q-never"].llm_error.startswith("json")
    assert out["q-invalid"].fallback and "no_dosage" in out["q-invalid"].llm_error
    assert out["q-urgent"].is_urgent and out["q-urgent"].model_is_urgent and out["q-urgent"].backend == "llm"
    assert stats.json_failures == 1 + 3 and stats.validation_failures == 3 and stats.fallbacks == 2
    assert stats.failures_by_try == [3, 2, 2]
    rates = stats.pass_rates()["llm"]
    assert rates["json_schema"]["total"] == 5 + 3 + 2 and rates["no_dosage"]["passed"] == 3


def test_llm_fallback_reject_and_detector_resolution():
    cfg = FilterConfig(urgent_resolution="detector")
    cfg.llm.fallback, cfg.llm.retries = "reject", 0
    script = {"q1": ["nope"], "q2": [js(f"{CFG.urgent_prefix} Go now. {CLOSE}", True)]}
    items = [Item("q1", "q1", "Drink fluids and rest well.", False), Item("q2", "q2", "Drink fluids.", False)]
    o1, o2 = rewrite_items(items, cfg, "llm", llm=ScriptedLLM(cfg, script))
    assert o1.answer is None and o1.reason == "llm_invalid" and "1 tries" in o1.detail
    # detector says not urgent: the model's prefix is over-triage, so it fails and is rejected too
    assert o2.answer is None and "urgent_prefix" in o2.llm_error and o2.model_is_urgent is True


def test_model_dir_checks(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        check_model_dir(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="safetensors"):
        check_model_dir(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"")   # a pickle is never loaded
    with pytest.raises(ModelError, match="safetensors"):
        check_model_dir(tmp_path)
