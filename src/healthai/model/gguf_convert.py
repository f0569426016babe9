"""llama.cpp's convert_hf_to_gguf.py with one narrow fix, run in its own process by healthai.model.gguf.

    python -m healthai.model.gguf_convert CONVERTER_DIR MODEL_DIR --outfile X.gguf --outtype f16 --no-mtp

CONVERTER_DIR holds convert_hf_to_gguf.py, conversion/ and gguf-py/ (third_party/llama_cpp_convert).
Every other argument goes to the converter unchanged.

The fix: llama.cpp names a BPE pre-tokenizer by hashing the token ids of a fixed test text. The
embedded model's tokenizer (trained here, 6k vocab) has a hash no table knows, although its split
regex is exactly Qwen3.5's. The converter's own lookup runs first, so the real Qwen3.5 tokenizer is
still recognised by its hash; only when it raises NotImplementedError AND tokenizer.json's
pre-tokenizer is exactly Split(Qwen3.5 regex, isolated) + ByteLevel(use_regex=false) is the answer
"qwen35" (llama.cpp's name for that pre-tokenizer, src/llama-vocab.cpp). Anything else fails as before.
Patched in a child process so that the patch and the converter's sys.path never reach the caller.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

QWEN35_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
                r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
"""Qwen3.5's pre-tokenizer split (== healthai.model.embedded.PRETOKENIZE_REGEX, checked by a test)."""

FALLBACK_NOTE = "pre-tokenizer hash unknown, tokenizer.json splits exactly like Qwen3.5: tokenizer.ggml.pre = qwen35"
"""Printed when the fallback answers (tests look for it: it must never appear for the real tokenizer)."""

log = logging.getLogger("healthai.gguf_convert")


def is_qwen35_pretokenizer(tokenizer_json: Path) -> bool:
    """True only for Sequence[Split(QWEN35_REGEX, Isolated, not inverted), ByteLevel(use_regex=False)]."""
    try:
        pre = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    except (OSError, json.JSONDecodeError, AttributeError):
        return False
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if len(steps) != 2:
        return False
    split, byte_level = steps
    return (split.get("type") == "Split" and (split.get("pattern") or {}).get("Regex") == QWEN35_REGEX
            and split.get("behavior") == "Isolated" and not split.get("invert")
            and byte_level.get("type") == "ByteLevel" and byte_level.get("use_regex") is False)


def patch_pre_tokenizer(text_model_class) -> None:
    """Wrap TextModel.get_vocab_base_pre: the original first, the qwen35 answer only as described above."""
    original = text_model_class.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if is_qwen35_pretokenizer(Path(self.dir_model) / "tokenizer.json"):
                print(f"[gguf_convert] {FALLBACK_NOTE}", file=sys.stderr, flush=True)
                return "qwen35"
            raise

    text_model_class.get_vocab_base_pre = get_vocab_base_pre


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    converter_dir = Path(argv.pop(0)).resolve()
    sys.path.insert(0, str(converter_dir))  # convert_hf_to_gguf puts its sibling gguf-py on sys.path itself
    import convert_hf_to_gguf
    from conversion.base import TextModel

    patch_pre_tokenizer(TextModel)
    sys.argv = [str(converter_dir / "convert_hf_to_gguf.py"), *argv]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
