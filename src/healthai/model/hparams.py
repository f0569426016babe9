"""Which hyperparameters the trainer takes, and where the final training's values come from.

    hp = resolve_hparams(cfg, {"lora_r": 8})     # the finetune section, overridden (unknown keys: ConfigError)
    hp, path = final_hparams(cfg, cli_keys)      # config < hpo/best_params.yaml < --set finetune.KEY

The Optuna stage writes best_params.yaml; the final fine-tuning reads it here, so neither the
search nor the trainer needs the other to know the file's shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

from healthai.errors import ConfigError

HPARAMS = frozenset({
    "lora_r", "lora_alpha", "lora_dropout", "learning_rate", "epochs", "batch_size",
    "gradient_accumulation_steps", "warmup_ratio", "weight_decay",
    "urgent_oversample", "first_token_weight", "first_token_count",
})
"""The hyperparameters `train_lora(hparams=...)` accepts (each a key of the finetune section)."""


def resolve_hparams(cfg, hparams: dict | None = None) -> dict:
    """The finetune section's values for HPARAMS, overridden by `hparams` (unknown keys: ConfigError)."""
    hparams = dict(hparams or {})
    unknown = sorted(set(hparams) - HPARAMS)
    if unknown:
        raise ConfigError(f"unknown hyperparameter(s) {', '.join(unknown)}; train_lora accepts "
                          f"{', '.join(sorted(HPARAMS))}")
    out = {name: getattr(cfg.finetune, name) for name in sorted(HPARAMS)}
    out.update(hparams)
    for key in ("lora_r", "lora_alpha", "batch_size", "gradient_accumulation_steps", "first_token_count"):
        out[key] = int(out[key])
    return out


BEST_PARAMS = "best_params.yaml"


def accepted_hparams() -> frozenset[str]:
    """The keys `train_lora(hparams=...)` accepts: what a search space or best_params.yaml may name."""
    return HPARAMS


def best_params_path(cfg) -> Path:
    """hpo/best_params.yaml: beside the Optuna journal (`hpo.storage`)."""
    return cfg.resolve(cfg.hpo.storage).parent / BEST_PARAMS


def load_best_params(path: Path, accepted: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
    """Read best_params.yaml -> {name: value}; a damaged file is a one-line ConfigError."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read best parameters: {str(exc).splitlines()[0]}", file=str(path)) from None
    params = doc.get("params") if isinstance(doc, dict) else None
    if not isinstance(params, dict) or not params:
        raise ConfigError("no 'params' mapping in the best-parameters file", file=str(path))
    accepted = accepted if accepted is not None else accepted_hparams()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)} in the best-parameters file", file=str(path))
    return params


def final_hparams(cfg, cli_keys: Iterable[str] = (), path: Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """config < hpo/best_params.yaml (when present) < --set finetune.KEY on the command line.

    Prints which file it used (or that none was found), so a log shows where the values came from.
    """
    path = path or best_params_path(cfg)
    params = {k: getattr(cfg.finetune, k) for k in sorted(HPARAMS)}
    if path.is_file():
        best = load_best_params(path)
        print(f"[finetune] hyperparameters from {path}: {format_params(best)}")
        params.update(best)
    else:
        print(f"[finetune] no {path}: using the finetune section of the config ({format_params(params)})")
        path = None
    for key in cli_keys:
        if key in HPARAMS:
            params[key] = getattr(cfg.finetune, key)
            print(f"[finetune] {key}={params[key]} from the command line")
    return params, path


def cli_finetune_keys(overrides: Iterable[str]) -> list[str]:
    """The finetune keys given with --set (they win over best_params.yaml)."""
    return [o.split("=", 1)[0].split(".", 1)[1] for o in overrides if o.startswith("finetune.") and "=" in o]


def format_params(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
