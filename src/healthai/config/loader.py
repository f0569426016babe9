"""Typed config loading: YAML -> dataclasses, with one-line errors that name key and file.

Order of precedence (last wins): dataclass defaults (the workshop's values) <
`configs/pipeline.yaml` < the site profile `configs/sites/<site>.yaml` < `--set` overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from healthai.errors import ConfigError


def field(default: Any = dataclasses.MISSING, *, min: float | None = None, max: float | None = None,
          default_factory: Any = dataclasses.MISSING, choices: tuple | None = None) -> Any:
    """A dataclass field with optional numeric bounds / allowed values checked at load time."""
    meta = {"min": min, "max": max, "choices": choices}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: _copy(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _suggest(key: str, valid: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)"
    return f" (valid keys: {', '.join(sorted(valid))})"


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against type `tp` and convert where lossless (int -> float)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, source)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {value!r}", file=source)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"'{key}' must be one of {list(get_args(tp))}, got {value!r}", file=source)
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {type(value).__name__}", file=source)
        return build(tp, value, key, source)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}' must be a list, got {value!r}", file=source)
        (item_tp,) = get_args(tp)[:1] or (Any,)
        return [_convert(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {value!r}", file=source)
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {_convert(k, key_tp, key, source): _convert(v, val_tp, f"{key}.{k}", source)
                for k, v in value.items()}
    if tp is float:
        if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value.strip()):
            return float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string; nobody means a string there
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{key}' must be a number, got {value!r}", file=source)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer, got {value!r}", file=source)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{key}' must be true or false, got {value!r}", file=source)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{key}' must be a string, got {value!r}", file=source)
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in a section class


def _check_bounds(f: dataclasses.Field, value: Any, key: str, source: str) -> None:
    meta = f.metadata or {}
    values = value if isinstance(value, list) else [value]
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
        if lo is not None and v < lo:
            raise ConfigError(f"'{key}' must be >= {lo}, got {v!r}", file=source)
        if hi is not None and v > hi:
            raise ConfigError(f"'{key}' must be <= {hi}, got {v!r}", file=source)
        if choices is not None and v not in choices:
            raise ConfigError(f"'{key}' must be one of {list(choices)}, got {v!r}", file=source)


def build(cls: type, data: dict, prefix: str = "", source: str = "<defaults>") -> Any:
    """Build dataclass `cls` from `data`, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(f"unknown key '{full}'{_suggest(str(key), list(fields), prefix)}", file=source)
        converted = _convert(value, hints[key], full, source)
        _check_bounds(fields[key], converted, full, source)
        kwargs[key] = converted
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:  # cross-field rules raise ValueError with the key in the text
            raise ConfigError(f"'{prefix}': {exc}" if prefix else str(exc), file=source) from None
    return obj


def deep_merge(base: dict, override: dict) -> dict:
    """Merge mappings recursively; lists and scalars in `override` replace those in `base`."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path) -> dict:
    """Read a YAML mapping; syntax errors become one line with file and line."""
    if not path.is_file():
        raise ConfigError("config file not found", file=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {problem}", file=str(path), line=line) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections", file=str(path))
    return data


def parse_override(text: str) -> dict:
    """`section.key=value` -> nested dict; the value is parsed as YAML (numbers, lists, bools)."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got '{text}'")
    dotted, raw = text.split("=", 1)
    parts = [p for p in dotted.strip().split(".") if p]
    if len(parts) < 2:
        raise ConfigError(f"--set expects section.key=value, got '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain dict (for manifests and `config.yaml` next to outputs)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
