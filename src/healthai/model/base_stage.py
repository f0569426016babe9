"""The base-model stage: the shipped pretrained base (or a tiny one built here) into $PROJECT_DIR/models/embedded-base.

    build_base_stage(cfg)        # fine-tuning/build-embedded-model.py, sbatch run-build-model.sh
    check_held_out(folder, cfg)  # the shipped base's held_out.json against today's held-out files and splits

With `embedded.shipped` (default models/embedded-base, made by `make base`) the stage checks that the base
never saw a question the demo can hold out, then copies it; with `embedded.shipped: null` (CI, tests) it
builds the tiny base from the curated corpus as before.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from healthai.errors import InputError, ModelError
from healthai.model.base_corpus import corpus_path, read_answers
from healthai.model.embedded import build_embedded_model, train_domain_base
from healthai.model.folder import check_model_folder, count_params

MODEL_CARD = "README.md"


def write_model_card(folder: Path, cfg, corpus: Path, n_answers: int, total_params: int, stats: dict) -> Path:
    ec = cfg.embedded
    text = f"""# Embedded base model (tiny Qwen3.5-architecture stand-in)

**This is not Qwen.** It is a small model with the Qwen3.5 *text architecture* that this
pipeline builds and trains **from scratch, here, on {n_answers} medical answers**
(`{corpus.name}`), so that the whole pipeline (tokenisation, chat template, LoRA on the
Gated-DeltaNet layers, assistant-only loss, generation, evaluation) runs on a laptop or CI
box with no GPU and no download. On Deucalion the base model is Qwen3.5-9B instead.

| | |
|---|---|
| architecture | `Qwen3_5ForCausalLM` ({ec.num_hidden_layers} layers: {', '.join(_layer_summary(ec))}) |
| parameters | {total_params:,} (hidden {ec.hidden_size}, MLP {ec.intermediate_size}, tied embeddings: {ec.tie_word_embeddings}) |
| tokenizer | byte-level BPE, {ec.vocab_size} tokens trained on the same answers, Qwen pre-tokenizer and the 33 Qwen special tokens |
| chat template | the real Qwen3.5 template with `{{% generation %}}` markers, thinking off (`chat_template.jinja`) |
| weights | random init (seed {ec.seed}), then full fine-tune as a plain causal LM on the answers |
| domain training | {stats.get('steps', 0)} steps of {ec.domain_batch_size}x{ec.domain_block_size} tokens ({ec.domain_epochs} epochs over up to {ec.domain_max_tokens:,} tokens), lr {ec.domain_learning_rate}, {stats.get('seconds', 0)} s on {os.cpu_count()} CPU cores |
| loss | {stats.get('first_loss', '-')} -> {stats.get('final_loss', '-')} (cross-entropy per token) |

## What its results show
- That the pipeline's code paths work end to end with the real architecture and template.
- Whether fine-tuning changes the *form* of the answers: the closing sentence, brevity, the
  chat format (the base never saw a chat turn, so it does not stop by itself), and whether the
  urgent prefix is learned (a first-token decision: hard for a model this small).

## What they do not show
- Anything about medical correctness or safety: the model has ~{total_params / 1e6:.1f}M parameters and
  saw a few hundred thousand tokens; its text is fluent-looking domain babble, not advice.
- How Qwen3.5-9B would score: absolute numbers (loss, rates) do not transfer. Never use it to
  answer a real patient.
"""
    path = folder / MODEL_CARD
    path.write_text(text, encoding="utf-8")
    return path


def _layer_summary(ec) -> list[str]:
    full = sum(1 for i in range(ec.num_hidden_layers) if (i + 1) % ec.full_attention_interval == 0)
    return [f"{ec.num_hidden_layers - full} Gated DeltaNet linear attention", f"{full} full attention"]


def check_held_out(folder: Path, cfg) -> dict:
    """The base in `folder` was checked (held_out.json) against every file today's splits and the triage set
    draw their held-out questions from, and today's val/test records come from those files; else ModelError,
    one line naming `make base`."""
    import json

    from healthai.data.readers import source_name
    from healthai.model.base_corpus import held_out_split_paths, held_out_universe
    from healthai.pipeline.io import read_jsonl

    path = folder / "held_out.json"
    if not path.is_file():
        raise ModelError("the base has no held_out.json (which held-out questions it was checked against): "
                         "rebuild it with `make base`", file=str(folder))
    recorded = json.loads(path.read_text(encoding="utf-8"))
    now = held_out_universe(cfg)
    checked = set(recorded.get("files", {}).values())
    unchecked = [name for name, sha in now.files.items() if sha not in checked]
    if unchecked:
        raise ModelError(f"held-out fingerprint {recorded.get('fingerprint', '?')[:12]} recorded, {now.fingerprint[:12]} "
                         f"now: the base was never checked against {unchecked[0]} (a changed curation input or triage "
                         f"set); rebuild it with `make base`", file=str(path))
    sources = {spec.source or source_name(spec.path) for spec in cfg.curation.inputs}
    for split in held_out_split_paths(cfg):
        meta = split.with_name(split.stem + ".meta.jsonl")
        if meta.is_file():
            foreign = sorted({m.get("source") for m in read_jsonl(meta)} - sources)
            if foreign:
                raise ModelError(f"{split.name} holds records of source {foreign[0]}, which the base was never checked "
                                 f"against (held-out fingerprint {recorded.get('fingerprint', '?')[:12]}); rebuild it "
                                 f"with `make base`", file=str(meta))
    return recorded


def use_shipped_base(cfg, force: bool = False) -> dict | None:
    """The stage with a shipped base: check its held-out record, copy it into the project (a StageRun)."""
    import shutil

    from healthai.model.base_corpus import held_out_files, held_out_split_paths
    from healthai.pipeline.stage import StageRun

    shipped = cfg.resolve(cfg.embedded.shipped)
    check_model_folder(shipped)
    files = sorted(p for p in shipped.iterdir() if p.is_file() and not p.name.startswith("."))
    splits = [p for p in held_out_split_paths(cfg) if p.is_file()]
    inputs = files + held_out_files(cfg) + splits + [p.with_name(p.stem + ".meta.jsonl") for p in splits]
    with StageRun("base-model", cfg, inputs=inputs, config_sections=["embedded", "curation"], force=force,
                  output_subdir="models/embedded-base") as run:
        if run.up_to_date:
            return run.previous
        recorded = check_held_out(shipped, cfg)
        for f in files:
            dest = run.out_dir / f.name
            tmp = run.out_dir / f".{f.name}.tmp"
            shutil.copyfile(f, tmp)
            os.replace(tmp, dest)
            run.add_output(dest)
        check_model_folder(run.out_dir)
        import json

        manifest = json.loads((shipped / "pretrain.json").read_text(encoding="utf-8")) \
            if (shipped / "pretrain.json").is_file() else {}
        run.stats.update(shipped=str(shipped), params=manifest.get("params"), tokens=manifest.get("tokens"),
                         held_out_fingerprint=recorded.get("fingerprint"), held_out_questions=recorded.get("questions"))
        run.conserve(n_in=len(files), kept=len(files), rejected=0)
        print(f"[base-model] the shipped base {shipped} ({manifest.get('params', 0):,} params, "
              f"{manifest.get('tokens', 0):,} tokens of pretraining; held-out fingerprint "
              f"{str(recorded.get('fingerprint'))[:12]} checked) -> {run.out_dir}")
    return run.previous


def build_base_stage(cfg, force: bool = False) -> dict | None:
    """The stage: the shipped base (`embedded.shipped`), else tokenizer + tiny model + domain training here."""
    if cfg.embedded.shipped:
        return use_shipped_base(cfg, force)
    import shutil
    import tempfile

    from healthai.pipeline.stage import StageRun

    corpus = corpus_path(cfg)
    inputs = [corpus]
    if cfg.embedded.urgent_style_corpus:  # its questions must not include val/test ones: the splits are inputs
        from healthai.model.base_corpus import held_out_split_paths

        splits = held_out_split_paths(cfg)
        missing = [p for p in splits if not p.is_file()]
        if missing:
            raise InputError("embedded.urgent_style_corpus needs the stage-3 splits to keep their questions out of "
                             "the base: run stage 3 first (cd 3.Merge && sbatch run-merge.sh), or "
                             "--set embedded.urgent_style_corpus=false", file=str(missing[0]))
        inputs += splits
    with StageRun("base-model", cfg, inputs=inputs, config_sections=["embedded"], force=force,
                  output_subdir="models/embedded-base") as run:
        if run.up_to_date:
            return run.previous
        t0 = time.perf_counter()
        if cfg.embedded.urgent_style_corpus:  # the urgent-rule lever chosen on val (base_corpus)
            from healthai.model.base_corpus import urgent_style_texts

            texts = urgent_style_texts(corpus, cfg)
        else:
            texts = read_answers(corpus, cfg.project.max_record_bytes)
        print(f"[base-model] {len(texts)} answers from {corpus}")
        # build in a sibling temp folder, move files in at the end: a crash never leaves half a model
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=run.out_dir))
        try:
            build_embedded_model(tmp, texts, cfg)
            stats = train_domain_base(tmp, texts, cfg)
            from transformers import AutoModelForCausalLM

            total, _ = count_params(AutoModelForCausalLM.from_pretrained(tmp))
            write_model_card(tmp, cfg, corpus, len(texts), total, stats)
            for f in sorted(tmp.iterdir()):
                os.replace(f, run.out_dir / f.name)
                run.add_output(run.out_dir / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        check_model_folder(run.out_dir)
        losses = stats.pop("losses", [])
        run.stats.update(answers=len(texts), params=total, seconds=round(time.perf_counter() - t0, 1),
                         domain=stats, loss_curve=losses[:: max(1, len(losses) // 50)])
        run.conserve(n_in=len(texts), kept=len(texts), rejected=0)
        print(f"[base-model] {total:,} params; domain loss {stats.get('first_loss')} -> {stats.get('final_loss')} "
              f"in {stats.get('seconds')} s; built in {run.stats['seconds']} s -> {run.out_dir}")
    return run.previous
