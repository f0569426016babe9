"""What every stage entry script shares: common options, logging, the error boundary.

    def main(argv=None) -> int:
        parser = stage_parser(__doc__)
        args = parser.parse_args(argv)
        return run_cli("curation", args, lambda cfg: curate(cfg, force=args.force))

Exit codes: 0 success (also "already up to date"), 1 stage failure, 2 usage/config error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable

from healthai.config import PipelineConfig, load_config
from healthai.errors import ConfigError, HealthAIError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def stage_parser(doc: str | None, prog: str | None = None) -> argparse.ArgumentParser:
    """The options every stage takes: --config --site --project-dir --set --force -v."""
    parser = _Parser(prog=prog, description=(doc or "").strip().splitlines()[0] if doc else None,
                     epilog=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="pipeline config (default: configs/pipeline.yaml)")
    parser.add_argument("--site", default=None, help="site profile: local | deucalion (default: $HEALTHAI_SITE or local)")
    parser.add_argument("--project-dir", default=None, help="project directory for outputs (default: $HEALTHAI_PROJECT_DIR)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (repeatable), e.g. --set filter.min_words=30")
    parser.add_argument("--force", action="store_true", help="redo the stage even if its outputs are current")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s [%(name)s] %(levelname)s %(message)s", datefmt="%H:%M:%S", force=True)
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load_from_args(args: argparse.Namespace) -> PipelineConfig:
    if args.project_dir:
        os.environ["HEALTHAI_PROJECT_DIR"] = os.path.abspath(args.project_dir)
    return load_config(args.config, site=args.site, overrides=args.overrides)


def banner(stage: str, cfg: PipelineConfig, **info: object) -> None:
    print(f"=== healthai · {stage} · site {cfg.site.name} · project {cfg.project_path()}")
    for key, value in info.items():
        print(f"    {key}: {value}")
    sys.stdout.flush()


def run_cli(stage: str, args: argparse.Namespace, body: Callable[[PipelineConfig], object]) -> int:
    """Load config, run `body(cfg)`, turn the package's errors into one line and an exit code."""
    os.umask(0o007)  # health data: nothing we create is readable by other users
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    setup_logging(getattr(args, "verbose", False))
    try:
        cfg = load_from_args(args)
        result = body(cfg)
    except ConfigError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    except HealthAIError as exc:
        print(f"error: [{stage}] {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"error: [{stage}] interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0
