"""The urgent-rule levers as the trainer implements them (healthai.model.trainer, lora, sft_data: oversampling, format-token
rows through a gradient mask, saved and re-applied) and the base-corpus lever (healthai.model.base_corpus)."""

from __future__ import annotations

import torch
from torch import nn

from healthai.config import load_config
from healthai.model.lora import TOKEN_ROWS, apply_token_rows, enable_token_rows, token_rows_state
from healthai.model.sft_data import oversample
from healthai.model.base_corpus import urgent_style_answer


class TinyLM(nn.Module):
    """Embedding -> linear head (tied or not): the two matrices the hook must handle."""

    def __init__(self, vocab=20, dim=8, tied=True):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.body = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def get_input_embeddings(self):
        return self.embed

    def get_output_embeddings(self):
        return self.head

    def forward(self, ids):
        return self.head(torch.tanh(self.body(self.embed(ids))))


def test_oversample_counts_and_determinism():
    rows = list(range(10))
    flags = [i < 4 for i in rows]  # 4 urgent
    out = oversample(rows, flags, 3.0, seed=1)
    assert len(out) == 4 * 3 + 6 and sorted(set(out)) == rows
    assert oversample(rows, flags, 3.0, seed=1) == out  # seeded
    assert oversample(rows, flags, 1.0, seed=1) == rows  # off = unchanged
    assert 4 * 2 + 6 <= len(oversample(rows, flags, 2.5, seed=0)) <= 4 * 3 + 6


def test_only_the_chosen_rows_move_tied_and_untied(tmp_path):
    for tied in (True, False):
        torch.manual_seed(0)
        model = TinyLM(tied=tied)
        for p in model.parameters():
            p.requires_grad_(False)  # as under LoRA: the base is frozen
        before = [w.detach().clone() for w in (model.embed.weight, model.head.weight)]
        enable_token_rows(model, [3, 7])
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=0.1, weight_decay=0.0)
        for _ in range(3):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(torch.tensor([[1, 3, 5, 7]])).view(-1, 20),
                                               torch.tensor([3, 7, 7, 3]))
            loss.backward()
            opt.step()
        after = [model.embed.weight.detach(), model.head.weight.detach()]
        for b, a in zip(before, after):
            changed = (b != a).any(dim=1).nonzero().flatten().tolist()
            assert changed == [3, 7], (tied, changed)
        from safetensors.torch import save_file

        folder = tmp_path / f"adapter-{tied}"
        folder.mkdir()
        save_file(token_rows_state(model, [3, 7]), str(folder / TOKEN_ROWS))
        fresh = TinyLM(tied=tied)
        fresh.load_state_dict({k: v for k, v in zip(("embed.weight", "body.weight", "body.bias", "head.weight"),
                                                    (before[0], model.body.weight, model.body.bias, before[1]))})
        assert apply_token_rows(fresh, folder)
        assert torch.equal(fresh.embed.weight, model.embed.weight)
        assert torch.equal(fresh.head.weight, model.head.weight)
    assert not apply_token_rows(TinyLM(), tmp_path / "no-adapter-here")


def test_urgent_style_answer_uses_the_detector():
    fcfg = load_config().filter
    urgent = urgent_style_answer("My dad suddenly cannot lift his right arm.", "Call an ambulance.", fcfg)
    assert urgent == "Seek emergency care immediately. Call an ambulance."
    assert urgent_style_answer("I have a mild cold.", "Rest and drink fluids.", fcfg) == "Rest and drink fluids."
    assert urgent_style_answer("My dad suddenly cannot lift his right arm.", urgent, fcfg) == urgent  # no double prefix


def test_urgent_style_texts_keep_questions_and_leave_out_held_out(tmp_path, monkeypatch):
    import json

    from healthai.model.base_corpus import urgent_style_texts

    # a curated-format corpus: one urgent question, one mild, one that is in the test split
    def rec(q, a):
        return {"id": q[:8], "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}

    monkeypatch.setenv("HEALTHAI_PROJECT_DIR", str(tmp_path))
    corpus = tmp_path / "curated.jsonl"
    rows = [rec("My dad suddenly cannot lift his right arm.", "Call an ambulance now."),
            rec("I have a mild cold.", "Rest and drink fluids."),
            rec("A test question about chest pain right now.", "Go to the emergency room.")]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "3.merge").mkdir()
    (tmp_path / "3.merge" / "test.jsonl").write_text(json.dumps(rows[2]) + "\n", encoding="utf-8")
    texts = urgent_style_texts(corpus, load_config())
    assert texts == [("My dad suddenly cannot lift his right arm.", "Seek emergency care immediately. Call an ambulance now."),
                     ("I have a mild cold.", "Rest and drink fluids.")]


def test_domain_blocks_keep_a_short_text_in_one_block_and_weight_the_answer_start():
    from healthai.model.embedded import PAD, build_tokenizer, domain_blocks

    texts = [("Crushing chest pain now.", "Seek emergency care immediately. Call 112."), "Rest and drink fluids. " * 3,
             "A long answer that runs on. " * 40]
    tok = build_tokenizer([t if isinstance(t, str) else "\n\n".join(t) for t in texts] * 5)
    ids, weights = domain_blocks(texts, tok, block_size=32, max_tokens=10_000, seed=0, answer_start_weight=7.0)
    eot = tok.convert_tokens_to_ids(PAD)
    seek = tok("Seek", add_special_tokens=False).input_ids[0]
    rows = [[tok.decode([i]) for i in row] for row in ids.tolist()]
    # the question/answer pair sits whole in one block, and only its answer's first token is weighted 7
    pair = next(r for r, row in enumerate(ids.tolist()) if seek in row)
    at = ids[pair].tolist().index(seek)
    assert "Crushing" in "".join(rows[pair][:at]) and weights[pair, at] == 7.0
    assert (weights == 7.0).sum() == 1
    # padding before a block boundary carries no loss; every padded slot is <|endoftext|>
    assert ((weights == 0) <= (ids == eot)).all() and (weights == 0).any()
    # the long text runs on over several blocks, none of its tokens lost
    long_ids = tok("A long answer that runs on. " * 40, add_special_tokens=False).input_ids
    assert ids.numel() >= len(long_ids) > 32
