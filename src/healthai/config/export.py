"""llama.cpp export, chat and server settings (inference/export_model.py, run-export.sh, run-chat.sh)."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field

CONVERT_TYPES = ("f32", "f16", "bf16", "q8_0")
"""What llama.cpp's convert_hf_to_gguf.py writes directly."""

QUANT_TYPES = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q6_K", "Q4_0", "Q5_0", "Q8_0")
"""What llama.cpp's quantize makes from the f16 file (LLAMA_FTYPE_MOSTLY_<name>)."""


@dataclass
class ExportConfig:
    """Merge the adapter, convert base and fine-tuned model to GGUF, quantize, chat and serve with llama.cpp."""

    variants: list[str] = field(["base", "ft"])
    """Which models to export: base (models.base) and/or ft (base + the LoRA adapter, merged)."""
    convert_types: list[str] = field(["f16", "q8_0"])
    """GGUF types written by llama.cpp's converter (f32, f16, bf16, q8_0); f16 is always written (quantize reads it)."""
    quant_types: list[str] = field(["Q4_K_M"])
    """llama.cpp quantizations made from the f16 file (Q4_K_M = what most people run on a laptop)."""
    chat_type: str = "Q4_K_M"
    """Which exported file run-chat.sh and the server load (one of convert_types or quant_types)."""
    agreement_prompts: int = field(4, min=0)
    """Workshop prompts (inference.prompts) answered by transformers and by every GGUF for the model card's
    agreement table (0 = skip: the 9B in fp32 on a CPU node takes a while)."""
    agreement_max_new_tokens: int = field(64, min=1)
    """Greedy tokens per prompt compared between transformers and llama.cpp."""
    n_ctx: int = field(4096, min=256)
    """llama.cpp context (tokens) for chat and server: the whole conversation must fit (oldest turns drop out)."""
    n_threads: int = field(0, min=0)
    """CPU threads for llama.cpp (0 = the CPUs this process may use, i.e. the Slurm allocation)."""
    max_tokens: int = field(256, min=1)
    """Longest answer in the chat and the server's default (tokens)."""
    host: str = "127.0.0.1"
    """Server address: loopback only (reach it from a laptop through an SSH tunnel, inference/README.md)."""
    port: int = field(8080, min=1, max=65535)
    """Server port (run-chat.sh ft --serve --port N overrides it)."""
    server_ready_s: float = field(120.0, min=1.0)
    """How long to wait for the server to answer GET /v1/models before giving up (seconds)."""
    converter: str = "{repo}/third_party/llama_cpp_convert"
    """llama.cpp's convert_hf_to_gguf.py + conversion/ + gguf-py/ (vendored from llama-cpp-python 0.3.36)."""

    def validate(self) -> None:
        bad = [v for v in self.variants if v not in ("base", "ft")]
        if bad or not self.variants:
            raise ValueError(f"variants must be a non-empty list of base/ft, got {self.variants}")
        for t in self.convert_types:
            if t not in CONVERT_TYPES:
                raise ValueError(f"convert_types: '{t}' is not one of {', '.join(CONVERT_TYPES)}")
        for t in self.quant_types:
            if t not in QUANT_TYPES:
                raise ValueError(f"quant_types: '{t}' is not one of {', '.join(QUANT_TYPES)}")
        if self.chat_type not in self.all_types():
            raise ValueError(f"chat_type '{self.chat_type}' is not exported (types: {', '.join(self.all_types())})")

    def all_types(self) -> list[str]:
        """Every GGUF type the stage writes, f16 first (the quantizations are made from it)."""
        types = ["f16"] + [t for t in self.convert_types if t != "f16"]
        return types + [t for t in self.quant_types if t not in types]
