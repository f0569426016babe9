"""The export stage: the base and the fine-tuned model as GGUF files for llama.cpp, with a model card.

    run_export_stage(cfg)     # inference/export_model.py, sbatch run-export.sh -> $PROJECT_DIR/export/

Per variant (export.variants: base, ft): ft is the adapter merged into the base first (a LoRA GGUF
on a mismatched base is silently ignored by llama.cpp, a merged file cannot be), saved as a plain
transformers folder (ft-merged/); then llama.cpp's own converter writes {variant}-f16.gguf (and the
other export.convert_types), llama.cpp's quantize makes export.quant_types from the f16 file, and the
workshop prompts are answered greedily by transformers and by every GGUF (agreement.json, README.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from healthai.errors import ModelError
from healthai.model import gguf, gguf_sizes
from healthai.model.gguf import OUTPUT_SUBDIR, gguf_path, recorded_output  # noqa: F401  (re-exported)
from healthai.model.inference import (
    adapter_path,
    base_path,
    check_adapter,
    check_base,
    merge_adapter,
)


def stage_inputs(cfg) -> list[Path]:
    base = base_path(cfg)
    check_base(base)
    inputs = [base / "config.json", *sorted(base.glob("*.safetensors"))]
    inputs += [p for p in (base / "tokenizer.json", base / "tokenizer_config.json", base / "chat_template.jinja")
               if p.is_file()]
    if "ft" in cfg.export.variants:
        adapter = adapter_path(cfg)
        check_adapter(adapter)
        inputs += sorted(p for p in adapter.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors"))
    return inputs


LLAMA_MIN_HEAD_DIM = 32
"""llama.cpp's qwen35 rope asserts head_dim >= sum of its rope sections (11 + 11 + 10) and aborts the process."""


def check_convertible(base: Path) -> None:
    """Fail before converting what llama.cpp would load and then abort on (a C assert, no Python error)."""
    import json

    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    text = config.get("text_config") or config
    head_dim = text.get("head_dim") or text.get("hidden_size", 0) // max(1, text.get("num_attention_heads", 1))
    if head_dim < LLAMA_MIN_HEAD_DIM:
        raise ModelError(f"head_dim {head_dim} is below llama.cpp's minimum for qwen35 ({LLAMA_MIN_HEAD_DIM}: its "
                         "rope sections 11+11+10); build the model with embedded.head_dim >= 32",
                         file=str(base / "config.json"))


def variant_folder(cfg, variant: str, out_dir: Path) -> Path:
    """The transformers folder to convert: the base itself, or base + adapter merged into ft-merged/."""
    if variant == "base":
        return base_path(cfg)
    merged = out_dir / "ft-merged"
    try:
        merge_adapter(cfg, merged, force=True)
    except RuntimeError as exc:  # peft: "size mismatch for ...": an adapter trained on another base
        first = str(exc).strip().splitlines()[0][:200]
        raise ModelError(f"the adapter does not fit models.base ({first}); was it trained on another base?",
                         file=str(adapter_path(cfg))) from None
    return merged


def hf_greedy(model_dir: Path, cfg, questions: list[str], max_new_tokens: int) -> tuple[list[str], list[list[int]], float]:
    """Rendered prompts and transformers' greedy new tokens (fp32 on CPU unless the site says otherwise)."""
    import torch

    from healthai.model.folder import load_model_and_tokenizer
    from healthai.model.generation import pad_token_id, render_prompt, stop_token_ids

    model, tokenizer = load_model_and_tokenizer(model_dir, cfg)
    model.eval()
    texts = [render_prompt(tokenizer, q, cfg) for q in questions]
    tokens, n, t0 = [], 0, time.perf_counter()
    for text in texts:
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=stop_token_ids(tokenizer), pad_token_id=pad_token_id(tokenizer),
                                 temperature=None, top_p=None, top_k=None)
        tokens.append(out[0, enc["input_ids"].shape[1]:].tolist())
        n += len(tokens[-1])
    seconds = time.perf_counter() - t0
    del model
    return texts, tokens, n / seconds if seconds else 0.0


def agreement(cfg, model_dir: Path, files: dict[str, Path], questions: list[str], max_new_tokens: int) -> dict:
    """Greedy tokens of every GGUF against transformers on `questions`, the answers, and both speeds
    (the stage: the workshop prompts; benchmarks/export_benchmark.py: those + test-split questions)."""
    from transformers import AutoTokenizer

    from healthai.model.evaluation import starts_with_prefix
    from healthai.model.generation import clean_answer

    texts, ref, hf_tps = hf_greedy(model_dir, cfg, questions, max_new_tokens)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    decode = lambda ids: clean_answer(tokenizer.decode(ids, skip_special_tokens=True))
    prefix = cfg.filter.urgent_prefix
    result = {"prompts": questions, "max_new_tokens": max_new_tokens, "transformers_tokens_per_s": round(hf_tps, 1),
              "transformers": [decode(r) for r in ref], "gguf": {}}
    for qtype, path in files.items():
        llm = gguf.load_llama(path, n_ctx=max(1024, cfg.export.n_ctx // 4), threads=cfg.export.n_threads)
        rows, n, t0 = [], 0, time.perf_counter()
        for text, want in zip(texts, ref):
            got = gguf.greedy_tokens(llm, text, max_new_tokens)
            n += len(got)
            first_diff = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                              None if len(got) == len(want) else min(len(got), len(want)))
            answer = decode(got)
            rows.append({"same_tokens": got == want, "first_diff": first_diff, "tokens": len(got),
                         "same_urgent_decision": starts_with_prefix(answer, prefix)
                         == starts_with_prefix(decode(want), prefix), "answer": answer})
        seconds = time.perf_counter() - t0
        llm.close()
        k = len(rows) or 1
        result["gguf"][qtype] = {
            "token_agreement": round(sum(r["same_tokens"] for r in rows) / k, 3),
            "urgent_decision_agreement": round(sum(r["same_urgent_decision"] for r in rows) / k, 3),
            "tokens_per_s": round(n / seconds, 1) if seconds else None, "prompts": rows}
    return result


def run_export_stage(cfg, force: bool = False) -> dict | None:
    """The stage (see the module docstring); returns its manifest."""
    from healthai.pipeline.io import write_json
    from healthai.pipeline.stage import StageRun

    ec = cfg.export
    converter = cfg.resolve(ec.converter)
    inputs = stage_inputs(cfg)
    check_convertible(base_path(cfg))
    with StageRun("export", cfg, inputs=inputs, config_sections=["export", "models", "inference"], force=force,
                  output_subdir=OUTPUT_SUBDIR) as run:
        if run.up_to_date:
            return run.previous
        out = run.out_dir
        logs = out / "logs"
        logs.mkdir(exist_ok=True, mode=0o770)
        files: dict[str, dict[str, Path]] = {}
        timings: dict[str, float] = {}
        agree: dict[str, dict] = {}
        for variant in ec.variants:
            t0 = time.perf_counter()
            folder = variant_folder(cfg, variant, out)
            if variant == "ft":
                timings["ft-merge"] = round(time.perf_counter() - t0, 1)
                for f in sorted(folder.iterdir()):
                    run.add_output(f)
            files[variant] = {}
            for qtype in ["f16"] + [t for t in ec.convert_types if t != "f16"]:
                path = out / f"{variant}-{qtype}.gguf"
                secs = gguf.convert(converter, folder, path, qtype, logs / f"{variant}-{qtype}.convert.log",
                                    ec.n_threads)
                files[variant][qtype] = path
                timings[path.name] = round(secs, 1)
                print(f"[export] {path.name}: {path.stat().st_size / 1e6:,.1f} MB in {secs:.1f} s", flush=True)
            for qtype in ec.quant_types:
                path = out / f"{variant}-{qtype}.gguf"
                secs = gguf.quantize(files[variant]["f16"], path, qtype, ec.n_threads)
                files[variant][qtype] = path
                timings[path.name] = round(secs, 1)
                print(f"[export] {path.name}: {path.stat().st_size / 1e6:,.1f} MB in {secs:.1f} s "
                      f"(quantized from {variant}-f16.gguf)", flush=True)
            if ec.agreement_prompts:
                agree[variant] = agreement(cfg, folder, files[variant],
                                           list(cfg.inference.prompts)[:ec.agreement_prompts],
                                           ec.agreement_max_new_tokens)
                for qtype, a in agree[variant]["gguf"].items():
                    print(f"[export] {variant}-{qtype}: greedy tokens equal to transformers on "
                          f"{a['token_agreement']:.0%} of {len(a['prompts'])} prompts, urgent decision "
                          f"{a['urgent_decision_agreement']:.0%}, {a['tokens_per_s']} tokens/s", flush=True)
        sizes = {p.name: p.stat().st_size for v in files.values() for p in v.values()}
        write_json(out / "agreement.json", agree)
        (out / "README.md").write_text(model_card(cfg, sizes, agree, timings), encoding="utf-8")
        for path in [*(p for v in files.values() for p in v.values()), out / "agreement.json", out / "README.md",
                     *sorted(logs.iterdir())]:
            os.chmod(path, 0o660)
            run.add_output(path)
        n_files = sum(len(v) for v in files.values())
        run.conserve(n_in=n_files, kept=n_files, rejected=0)
        run.stats.update(sizes=sizes, seconds=timings,
                         agreement={f"{v}-{t}": a["token_agreement"] for v, r in agree.items()
                                    for t, a in r["gguf"].items()})
        print(f"[export] {n_files} GGUF files in {out}; chat with: cd inference && bash run-chat.sh ft")
    return run.previous


def model_card(cfg, sizes: dict[str, int], agree: dict, timings: dict) -> str:
    ec = cfg.export
    lines = ["# Health-assistant GGUF files (llama.cpp)", "",
             f"- base: `{base_path(cfg)}`",
             f"- LoRA adapter (merged into the ft files): `{adapter_path(cfg)}`" if "ft" in ec.variants else "",
             f"- training data: `{cfg.project_path() / '3.merge'}` (see ft/manifest.json for the exact files)",
             (f"- written: {time.strftime('%Y-%m-%d %H:%M')}, llama.cpp converter and quantize of llama-cpp-python "
              "0.3.36 (third_party/llama_cpp_convert/SOURCE.md)"),
             "- prompt: the system prompt of `filter.assistant_system`, the embedded chat template, thinking off",
             "", ("| file | size (MB) | greedy tokens = transformers | urgent-prefix decision = transformers | "
                  "tokens/s | made in (s) |"), "|---|---|---|---|---|---|"]
    for name, size in sizes.items():
        variant, qtype = name[:-len(".gguf")].split("-", 1)
        a = agree.get(variant, {}).get("gguf", {}).get(qtype)
        cells = (f"{a['token_agreement']:.0%} of {len(a['prompts'])}", f"{a['urgent_decision_agreement']:.0%}",
                 str(a["tokens_per_s"])) if a else ("not measured",) * 3
        lines.append(f"| {name} | {size / 1e6:,.1f} | {' | '.join(cells)} | {timings.get(name, '')} |")
    for variant, a in agree.items():
        lines.append(f"\n{variant}: transformers {a['transformers_tokens_per_s']} tokens/s on the same prompts "
                     f"({a['max_new_tokens']} new tokens at most).")
    known = tuple(t for t in (*ec.convert_types, *ec.quant_types) if t in gguf_sizes.BITS_PER_WEIGHT)
    lines += ["", ("Estimated from the config (inference/gguf_sizes.py; llama.cpp's bits per weight, tied "
                   "embeddings counted once):"), "",
              gguf_sizes.markdown(gguf_sizes.estimate(base_path(cfg), ec.n_ctx, known),
                                  gguf_sizes.text_params(base_path(cfg)), ec.n_ctx), "",
              ("Chat: `cd inference && bash run-chat.sh ft` · serve: `bash run-chat.sh ft --serve` · any llama.cpp "
               "build: `llama-cli -m ft-Q4_K_M.gguf -cnv` (inference/README.md).")]
    return "\n".join(ln for ln in lines if ln is not None) + "\n"
