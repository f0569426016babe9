"""Write `configs/pipeline.yaml` from the section dataclasses, each key with its docstring as comment.

    python -m healthai.config.dump > configs/pipeline.yaml

The dataclasses are the single source of the defaults (the workshop's values); this keeps
the YAML and the code from drifting apart (a test checks the file is current).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from functools import lru_cache

import yaml

HEADER = """\
# Health AI assistant pipeline — every threshold, phrase list, keyword table, ratio, prompt,
# search space and model path of all stages. Defaults are the workshop's values.
# Override per machine in configs/sites/<site>.yaml, per run with --set section.key=value.
# Paths: {repo} is the checkout, {project_dir} the project directory, {user} your login.
# Generated from src/healthai/config/*.py by `python -m healthai.config.dump`; edit the
# dataclasses (defaults and docstrings) and regenerate, or edit values here by hand.
"""


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal right below a field), as litgpt writes them."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _scalar(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    if text.endswith("\n..."):
        text = text[:-4].strip()
    return text.removesuffix("...").strip()


def _emit(obj, indent: int, out: list[str]) -> None:
    pad = " " * indent
    docs = field_docs(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        doc = docs.get(f.name, "")
        for line in textwrap.wrap(doc, 96 - indent) or []:
            out.append(f"{pad}# {line}")
        if dataclasses.is_dataclass(value):
            out.append(f"{pad}{f.name}:")
            _emit(value, indent + 2, out)
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            out.append(f"{pad}{f.name}:")
            for i, item in enumerate(value):
                sub: list[str] = []
                _emit(item, indent + 4, sub)
                if i > 0:  # the field comments once, on the first item
                    sub = [line for line in sub if not line.lstrip().startswith("#")]
                j = next(k for k, line in enumerate(sub) if not line.lstrip().startswith("#"))
                out.extend(sub[:j])
                out.append(f"{pad}  - {sub[j].lstrip()}")
                out.extend(sub[j + 1:])
        elif isinstance(value, dict) and value and all(dataclasses.is_dataclass(v) for v in value.values()):
            # a mapping of small records (e.g. hpo.space): one flow-style line per key, in field
            # order, leaving out the fields still at their default
            out.append(f"{pad}{f.name}:")
            for key, item in value.items():
                defaults = type(item)()
                record = {g.name: getattr(item, g.name) for g in dataclasses.fields(item)
                          if g.name == "type" or getattr(item, g.name) != getattr(defaults, g.name)}
                text = yaml.safe_dump(record, default_flow_style=True, sort_keys=False, width=10_000).strip()
                out.append(f"{pad}  {key}: {text}")
        elif isinstance(value, str) and (len(value) > 80 or "\n" in value):
            out.append(f"{pad}{f.name}: >-" if "\n" not in value else f"{pad}{f.name}: |-")
            wrapped = textwrap.wrap(value, 96 - indent - 2, break_long_words=False, break_on_hyphens=False) \
                if "\n" not in value else value.splitlines()
            out.extend(f"{pad}  {line}" for line in wrapped)
        elif isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
            out.append(f"{pad}{f.name}:")
            out.extend(f"{pad}  - {_scalar(v)}" for v in value)
        elif isinstance(value, list) and len(_scalar(value)) > 90:
            out.append(f"{pad}{f.name}:")
            out.extend(f"{pad}  - {_scalar(v)}" for v in value)
        else:
            out.append(f"{pad}{f.name}: {_scalar(value)}")


def render() -> str:
    from healthai.config import PipelineConfig

    cfg = PipelineConfig()
    out = [HEADER.rstrip("\n")]
    docs = field_docs(PipelineConfig)
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        out.append("")
        title = (inspect.getdoc(type(section)) or "").splitlines()[0]
        out.append(f"# --- {f.name}: {title or docs.get(f.name, '')}")
        out.append(f"{f.name}:")
        _emit(section, 2, out)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
