"""GGUF files: convert a model folder, quantize, check a file before llama.cpp loads it, greedy tokens.

    convert(converter_dir, model_dir, out, "f16", log_file)    # llama.cpp's converter, in a child process
    quantize(f16_file, out, "Q4_K_M", threads)                 # llama.cpp's quantize (the llama_cpp package)
    check_gguf(path, recorded)                                 # magic, size and sha256 before loading
    llm = load_llama(path, n_ctx, n_threads)                   # llama_cpp.Llama, errors in one line

llama.cpp explains a bad file only in its C log ("Failed to load model from file"), and loads a file
whose tensor bytes were flipped without a word: hence the checks here, against the sha256 the
export stage recorded in its manifest.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

from healthai.errors import ModelError

MAGIC = b"GGUF"

EXPORT_COMMAND = "cd inference && sbatch run-export.sh"
"""The command that makes the GGUF files (named in the missing-file error)."""

OUTPUT_SUBDIR = "export"
"""The export stage's folder under $PROJECT_DIR."""


def gguf_path(cfg, variant: str, qtype: str | None = None) -> Path:
    """$PROJECT_DIR/export/{variant}-{type}.gguf (type: export.chat_type unless given)."""
    return cfg.project_path() / OUTPUT_SUBDIR / f"{variant}-{qtype or cfg.export.chat_type}.gguf"


def recorded_output(cfg, path: Path) -> dict | None:
    """The export manifest's entry (bytes, sha256) for `path`, or None when the export did not write it."""
    import json

    manifest = cfg.project_path() / OUTPUT_SUBDIR / "manifest.json"
    if not manifest.is_file():
        return None
    for out in json.loads(manifest.read_text(encoding="utf-8")).get("outputs", []):
        if Path(out["path"]).resolve() == path.resolve():
            return out
    return None


def cpu_threads(configured: int = 0) -> int:
    """`configured`, or the CPUs this process may use (a Slurm allocation's, not the node's)."""
    if configured:
        return configured
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def convert(converter_dir: Path, model_dir: Path, out: Path, outtype: str, log_file: Path,
            threads: int = 0) -> float:
    """Run llama.cpp's convert_hf_to_gguf.py (with --no-mtp) in a child process; written to a temp
    name and renamed when complete. Returns seconds. A failure raises ModelError with the
    converter's last error line and the log file.

    --no-mtp: a transformers-saved Qwen3.5 has no mtp.* tensors although its config says
    mtp_num_hidden_layers 1; without the flag the converter writes an extra block that llama.cpp
    then fails to load (or, for the embedded model, asserts)."""
    if not (converter_dir / "convert_hf_to_gguf.py").is_file():
        raise ModelError("llama.cpp's converter is not here (export.converter)", file=str(converter_dir))
    tmp = out.with_name(f".{out.name}.tmp.{os.getpid()}")
    cmd = [sys.executable, "-m", "healthai.model.gguf_convert", str(converter_dir), str(model_dir),
           "--outfile", str(tmp), "--outtype", outtype, "--no-mtp"]
    env = {**os.environ, "OMP_NUM_THREADS": str(cpu_threads(threads))}
    t0 = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ModelError(f"llama.cpp's converter failed ({last_error_line(log_file)}); full log: {log_file}",
                         file=str(model_dir))
    os.replace(tmp, out)
    return time.perf_counter() - t0


def last_error_line(log_file: Path) -> str:
    lines = [ln.strip() for ln in log_file.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln:
            return ln[-300:]
    return lines[-1][-300:] if lines else "no output"


def quantize(src: Path, out: Path, name: str, threads: int = 0) -> float:
    """llama.cpp's quantize through the llama_cpp package (no llama-quantize binary needed); returns seconds.

    Tensors whose rows are not a multiple of 256 (the embedded model's hidden 128) fall back to
    q5_0/q8_0 tensor by tensor: llama.cpp warns in its C log and the file is only a bit smaller."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}", None)
    if ftype is None:
        raise ModelError(f"llama.cpp has no quantization type {name}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = cpu_threads(threads)
    tmp = out.with_name(f".{out.name}.tmp.{os.getpid()}")
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ModelError(f"llama.cpp's quantize to {name} returned {rc} (its log is above)", file=str(src))
    os.replace(tmp, out)
    return time.perf_counter() - t0


def check_gguf(path: Path, recorded: dict | None = None, hint: str = EXPORT_COMMAND) -> None:
    """Raise ModelError (one line naming the file) unless `path` is a GGUF file that matches what the
    export recorded (`recorded` = its manifest entry: bytes and sha256)."""
    from healthai.pipeline.io import sha256_file

    if not path.is_file():
        raise ModelError(f"no GGUF file here yet; make it with `{hint}`", file=str(path))
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != MAGIC:
        what = "an empty file" if not head else f"it starts with {head!r}"
        raise ModelError(f"not a GGUF file ({what}, expected b'GGUF'); export it again with `{hint}`",
                         file=str(path))
    if recorded:
        size = path.stat().st_size
        if size != recorded["bytes"]:
            raise ModelError(f"{size:,} bytes but the export wrote {recorded['bytes']:,} (truncated or replaced?); "
                             f"export it again with `{hint} --force`", file=str(path))
        if sha256_file(path) != recorded["sha256"]:
            raise ModelError(f"sha256 differs from the export's manifest (corrupted or changed since); "
                             f"export it again with `{hint} --force`", file=str(path))


def load_llama(path: Path, n_ctx: int, threads: int = 0, recorded: dict | None = None, vocab_only: bool = False,
               hint: str = EXPORT_COMMAND):
    """llama_cpp.Llama over a checked file, its chat template rendered with thinking off (as in training)."""
    import llama_cpp

    check_gguf(path, recorded, hint)
    n = cpu_threads(threads)
    try:
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n, n_threads_batch=n,
                              vocab_only=vocab_only, verbose=False, chat_format="chat_template.default")
    except ValueError as exc:  # llama.cpp's reason is only in its C log
        raise ModelError(f"llama.cpp cannot load this file ({exc}); export it again with "
                         f"`{EXPORT_COMMAND} --force`", file=str(path)) from None
    if not vocab_only:
        thinking_off(llm)
    return llm


def thinking_off(llm) -> None:
    """What the server's --chat_template_kwargs does: the template gets enable_thinking=False
    (Llama.create_chat_completion has no passthrough for template arguments)."""
    handler = llm._chat_handlers.get("chat_template.default")
    if handler is None:
        raise ModelError("the GGUF carries no chat template (tokenizer.chat_template)", file=llm.model_path)
    llm.chat_handler = lambda *a, **k: handler(*a, **{"enable_thinking": False, **k})


def nfc(text: str) -> str:
    """tokenizer.json normalises to NFC and llama.cpp does not: normalise before llama.cpp sees text."""
    return unicodedata.normalize("NFC", text)


def greedy_tokens(llm, prompt_text: str, max_new_tokens: int) -> list[int]:
    """Greedy continuation of a rendered prompt (special tokens parsed), up to an end-of-generation token
    (included, as transformers' generate keeps it)."""
    import llama_cpp

    ids = llm.tokenize(nfc(prompt_text).encode("utf-8"), add_bos=False, special=True)
    llm.reset()
    out: list[int] = []
    for tok in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(tok)
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok) or len(out) >= max_new_tokens:
            break
    return out


def same_vocabulary(llm, tokenizer, text: str = "Seek emergency care immediately. Hope this helps!") -> bool:
    """A GGUF of another base loads fine in llama.cpp: compare its vocabulary size and tokens with `tokenizer`."""
    ids = llm.tokenize(nfc(text).encode("utf-8"), add_bos=False, special=False)
    return ids == tokenizer(text, add_special_tokens=False)["input_ids"] and llm.n_vocab() >= len(tokenizer)


def gguf_metadata(path: Path) -> dict:
    """The GGUF's key/value metadata (vocabulary only loaded: fast)."""
    llm = load_llama(path, n_ctx=256, vocab_only=True)
    try:
        return dict(llm.metadata)
    finally:
        llm.close()
