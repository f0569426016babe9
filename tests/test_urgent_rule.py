"""The urgent-rule levers: oversampling, first-token loss weights, trainable format-token rows."""

from __future__ import annotations

import torch
from torch import nn

from healthai.config import load_config
from healthai.urgent_rule import (apply_token_rows, first_token_weights, first_tokens_loss, format_token_ids,
                                  oversample_urgent, save_token_rows, train_token_rows, urgent_style_answer)


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
    out, out_flags = oversample_urgent(rows, flags, 3.0, seed=1)
    assert len(out) == 4 * 3 + 6 and sum(out_flags) == 12
    assert sorted(set(out)) == rows
    assert oversample_urgent(rows, flags, 3.0, seed=1) == (out, out_flags)  # seeded
    assert oversample_urgent(rows, flags, 1.0) == (rows, flags)  # off = unchanged order
    frac, _ = oversample_urgent(rows, flags, 2.5, seed=0)
    assert 4 * 2 + 6 <= len(frac) <= 4 * 3 + 6


def test_first_token_weights_mark_the_opening_of_each_row():
    labels = torch.tensor([[-100, -100, 5, 6, 7, 8], [-100, 3, 4, -100, -100, -100]])
    w = first_token_weights(labels, n_first=2, weight=4.0)
    # shifted targets: row 0 -> [-100, 5, 6, 7, 8], row 1 -> [3, 4, -100, -100, -100]
    assert w.tolist() == [[0.0, 4.0, 4.0, 1.0, 1.0], [4.0, 4.0, 0.0, 0.0, 0.0]]


def test_first_tokens_loss_equals_plain_loss_at_weight_one():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, -100, 5, 6, 7, 8], [-100, 3, 4, 1, -100, -100]])
    out = type("O", (), {"logits": logits})()
    plain = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.allclose(first_tokens_loss(3, 1.0)(out, labels), plain)
    assert first_tokens_loss(3, 5.0)(out, labels) > plain  # weighting adds loss on the opening tokens


def test_only_the_chosen_rows_move_tied_and_untied(tmp_path):
    for tied in (True, False):
        torch.manual_seed(0)
        model = TinyLM(tied=tied)
        for p in model.parameters():
            p.requires_grad_(False)  # as under LoRA: the base is frozen
        before = [w.detach().clone() for w in (model.embed.weight, model.head.weight)]
        handles = train_token_rows(model, [3, 7])
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
        path = save_token_rows(model, [3, 7], tmp_path / f"rows-{tied}.safetensors")
        fresh = TinyLM(tied=tied)
        fresh.load_state_dict({k: v for k, v in zip(("embed.weight", "body.weight", "body.bias", "head.weight"),
                                                    (before[0], model.body.weight, model.body.bias, before[1]))})
        assert apply_token_rows(fresh, path) == 2
        assert torch.equal(fresh.embed.weight, model.embed.weight)
        assert torch.equal(fresh.head.weight, model.head.weight)
        for h in handles:
            h.remove()
    assert apply_token_rows(TinyLM(), tmp_path / "absent.safetensors") == 0


def test_format_token_ids_cover_both_spellings():
    class Tok:  # a word-level stand-in: a leading space is its own token
        vocab: dict[str, int] = {}

        def encode(self, text, add_special_tokens=False):
            parts = (["_"] if text.startswith(" ") else []) + text.split()
            return [self.vocab.setdefault(p, len(self.vocab)) for p in parts]

    ids = format_token_ids(Tok(), ["Seek emergency care immediately."])
    assert len(ids) == 5  # four words and the leading-space marker


def test_urgent_style_answer_uses_the_detector():
    fcfg = load_config().filter
    urgent = urgent_style_answer("My dad suddenly cannot lift his right arm.", "Call an ambulance.", fcfg)
    assert urgent == "Seek emergency care immediately. Call an ambulance."
    assert urgent_style_answer("I have a mild cold.", "Rest and drink fluids.", fcfg) == "Rest and drink fluids."
    assert urgent_style_answer("My dad suddenly cannot lift his right arm.", urgent, fcfg) == urgent  # no double prefix
