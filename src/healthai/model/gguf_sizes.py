"""How large a GGUF export is and how much memory llama.cpp needs for it, from a model's config alone.

    rows = estimate(config_dir, n_ctx=4096)     # one row per type: file GB, memory GB
    print(markdown(rows, ...))                  # inference/gguf_sizes.py, the table in inference/README.md

The parameter count is the real one (the text model built from config.json on the meta device, no
weights read); bits per weight are llama.cpp's own figures (tools/quantize/quantize.cpp: Q8_0 7.96 GiB and
Q4_K_M 4.58 GiB for Llama-3-8B's 8.03 B parameters), f16 is 2 bytes. Memory = file + the KV cache of the
full-attention layers at n_ctx (f16 keys and values) + the Gated-DeltaNet layers' fixed recurrent state
(f32) + llama.cpp's compute buffer (COMPUTE_BUFFER_GB, a round figure).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LLAMA3_8B_PARAMS = 8.03e9
BITS_PER_WEIGHT = {
    "f16": 16.0,
    "q8_0": 7.96 * 2**30 * 8 / LLAMA3_8B_PARAMS,     # 8.5: 34 bytes per block of 32
    "Q4_K_M": 4.58 * 2**30 * 8 / LLAMA3_8B_PARAMS,   # ~4.9: Q4_K, with Q6_K for half the attention/FFN-down
}
COMPUTE_BUFFER_GB = 0.5


@dataclass(frozen=True)
class SizeRow:
    qtype: str
    file_gb: float
    memory_gb: float


def text_config(config_dir: str | Path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(config_dir, trust_remote_code=False)
    return getattr(config, "text_config", None) or config


def text_params(config_dir: str | Path) -> int:
    """Parameters of the text model (what the GGUF holds; vision tower and MTP layers left out)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(text_config(config_dir))
    return sum(p.numel() for p in model.parameters())


def context_bytes(tc, n_ctx: int) -> int:
    """KV cache of the full-attention layers at n_ctx tokens + the linear layers' recurrent/conv state."""
    types = list(getattr(tc, "layer_types", None) or ["full_attention"] * tc.num_hidden_layers)
    full = types.count("full_attention")
    kv = full * 2 * tc.num_key_value_heads * tc.head_dim * 2 * n_ctx
    linear = len(types) - full
    if not linear:
        return kv
    key_dim = tc.linear_num_key_heads * tc.linear_key_head_dim
    value_dim = tc.linear_num_value_heads * tc.linear_value_head_dim
    state = tc.linear_num_value_heads * tc.linear_key_head_dim * tc.linear_value_head_dim
    conv = (tc.linear_conv_kernel_dim - 1) * (2 * key_dim + value_dim)
    return kv + linear * (state + conv) * 4


def estimate(config_dir: str | Path, n_ctx: int, qtypes: tuple[str, ...] = tuple(BITS_PER_WEIGHT)) -> list[SizeRow]:
    params = text_params(config_dir)
    extra = context_bytes(text_config(config_dir), n_ctx) / 1e9 + COMPUTE_BUFFER_GB
    rows = []
    for qtype in qtypes:
        file_gb = params * BITS_PER_WEIGHT[qtype] / 8 / 1e9
        rows.append(SizeRow(qtype, file_gb, file_gb + extra))
    return rows


def markdown(rows: list[SizeRow], params: int, n_ctx: int) -> str:
    lines = [f"{params / 1e9:.2f} B text parameters; memory at a {n_ctx:,}-token context (GB = 10^9 bytes)", "",
             "| GGUF type | bits/weight | file (GB) | llama.cpp memory (GB) |", "|---|---|---|---|"]
    lines += [f"| {r.qtype} | {BITS_PER_WEIGHT[r.qtype]:.2f} | {r.file_gb:.2f} | {r.memory_gb:.2f} |" for r in rows]
    return "\n".join(lines)
