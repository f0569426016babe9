"""The pipeline's configuration: one dataclass per section, loaded from YAML and validated.

    cfg = load_config()                          # configs/pipeline.yaml + site profile
    cfg = load_config(overrides=["filter.min_words=30"], site="deucalion")
    cfg.filter.min_words, cfg.project_path()

Every field's default is the workshop's value; `configs/pipeline.yaml` lists every key
with a comment. The resolved config is saved next to every stage's outputs.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any

from healthai.config.clinical import ClinicalConfig
from healthai.config.curation import CurationConfig
from healthai.config.export import ExportConfig
from healthai.config.filtering import FilterConfig
from healthai.config.hpo import HPOConfig
from healthai.config.inference import InferenceConfig
from healthai.config.loader import build, deep_merge, parse_override, read_yaml, to_dict
from healthai.config.merge import MergeConfig
from healthai.config.modeling import EmbeddedModelConfig, PretrainConfig
from healthai.config.project import ModelsConfig, ProjectConfig, SiteConfig
from healthai.config.training import FinetuneConfig
from healthai.errors import ConfigError

REPO_DIR = Path(__file__).resolve().parents[3]
"""The repository root (src/healthai/config/__init__.py -> three levels up)."""


@dataclass
class PipelineConfig:
    """All sections of configs/pipeline.yaml."""

    project: ProjectConfig = dc_field(default_factory=ProjectConfig)
    site: SiteConfig = dc_field(default_factory=SiteConfig)
    models: ModelsConfig = dc_field(default_factory=ModelsConfig)
    curation: CurationConfig = dc_field(default_factory=CurationConfig)
    filter: FilterConfig = dc_field(default_factory=FilterConfig)
    merge: MergeConfig = dc_field(default_factory=MergeConfig)
    clinical: ClinicalConfig = dc_field(default_factory=ClinicalConfig)
    embedded: EmbeddedModelConfig = dc_field(default_factory=EmbeddedModelConfig)
    pretrain: PretrainConfig = dc_field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = dc_field(default_factory=FinetuneConfig)
    hpo: HPOConfig = dc_field(default_factory=HPOConfig)
    inference: InferenceConfig = dc_field(default_factory=InferenceConfig)
    export: ExportConfig = dc_field(default_factory=ExportConfig)

    def project_path(self) -> Path:
        """The project directory: --project-dir/$HEALTHAI_PROJECT_DIR, project.dir, site, <repo>/runs."""
        raw = os.environ.get("HEALTHAI_PROJECT_DIR") or self.project.dir or self.site.project_dir
        if not raw:
            return REPO_DIR / "runs"
        return Path(expand(raw, repo=REPO_DIR)).expanduser()

    def resolve(self, raw: str | os.PathLike) -> Path:
        """Expand {project_dir}, {repo} and {user} in a configured path; relative paths are under the repo."""
        path = Path(expand(str(raw), repo=REPO_DIR, project_dir=self.project_path())).expanduser()
        return path if path.is_absolute() else REPO_DIR / path

    def section(self, name: str) -> dict:
        return to_dict(getattr(self, name))

    def to_dict(self) -> dict:
        return to_dict(self)


def expand(raw: str, **values: Any) -> str:
    values.setdefault("user", os.environ.get("USER") or getpass.getuser())
    out = raw
    for key, value in values.items():
        out = out.replace("{" + key + "}", str(value))
    return out


def default_config_path() -> Path:
    return REPO_DIR / "configs" / "pipeline.yaml"


def load_config(path: str | os.PathLike | None = None, site: str | None = None,
                overrides: list[str] | None = None) -> PipelineConfig:
    """Load pipeline.yaml, merge the site profile and `--set` overrides, validate everything."""
    config_path = Path(path) if path else default_config_path()
    data = read_yaml(config_path)
    site_name = site or os.environ.get("HEALTHAI_SITE") or "local"
    site_path = config_path.parent / "sites" / f"{site_name}.yaml"
    if not site_path.is_file():
        known = sorted(p.stem for p in (config_path.parent / "sites").glob("*.yaml"))
        raise ConfigError(f"unknown site '{site_name}' (known: {', '.join(known) or 'none'})", file=str(site_path))
    # Validate each layer on its own first, so an error names the file it is in.
    build(PipelineConfig, data, "", str(config_path))
    site_data = read_yaml(site_path)
    build(PipelineConfig, site_data, "", str(site_path))
    merged = deep_merge(data, site_data)
    merged = deep_merge(merged, {"site": {"name": site_name}})
    for text in overrides or []:
        merged = deep_merge(merged, parse_override(text))
    return build(PipelineConfig, merged, "", "--set" if overrides else str(config_path))


__all__ = ["PipelineConfig", "load_config", "REPO_DIR", "ConfigError", "to_dict"]
