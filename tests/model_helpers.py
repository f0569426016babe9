"""Test models shared by the model tests (tests only)."""

from __future__ import annotations

from pathlib import Path


def jittered_embedded_base(out: Path, texts: list[str], cfg) -> Path:
    """The embedded Qwen3.5-architecture model built at `out`, its weights jittered (seed 0) so that
    greedy decoding does not collapse into one repeated token; saved back in place."""
    import torch
    from transformers import AutoModelForCausalLM

    from healthai.model.embedded import build_embedded_model

    base = build_embedded_model(out, texts, cfg)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not any(k in name for k in ("norm", "A_log", "dt_bias")):
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    model.save_pretrained(base)
    return base
