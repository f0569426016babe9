"""The stage contract: lock, skip-if-current, atomic outputs, conservation check, manifest last.

    with StageRun("curation", cfg, inputs=[...], config_sections=["curation"], force=force) as run:
        if run.up_to_date:
            return run.previous          # the manifest of the run that is still current
        out = run.writer("curated.jsonl")
        rejected = run.writer("rejected.jsonl")
        ...
        run.conserve(n_in=..., kept=out.lines, rejected=rejected.lines)
        run.stats.update(...)
    # on a clean exit: every writer renamed onto its final name, then manifest.json written

An exception inside the block aborts every writer (temp files removed): no partial
output ever carries a final name, and no manifest claims it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from healthai import __version__
from healthai.config import REPO_DIR, PipelineConfig
from healthai.errors import InputError, StageError
from healthai.pipeline.io import AtomicWriter, BadLine, count_lines, ensure_dir, sha256_file, write_json

MANIFEST = "manifest.json"
LOCK = ".lock"


def code_version() -> str:
    """Package version plus the git commit when the code runs from a checkout."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def describe_file(path: Path) -> dict:
    info = {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}
    if path.suffix in (".jsonl", ".csv", ".tsv", ".txt", ".md"):
        info["lines"] = count_lines(path)
    return info


def fingerprint(inputs: list[dict], config: dict, version: str) -> str:
    """What decides whether a rerun is a no-op: input hashes, the stage's config, the code."""
    blob = json.dumps({"inputs": [(i["path"], i["sha256"]) for i in inputs], "config": config,
                       "code": version}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _holder_alive(holder: dict) -> bool:
    """Is the process (or Slurm job) that wrote a lock file still running?"""
    job = holder.get("slurm_job_id")
    if job:
        try:
            out = subprocess.run(["squeue", "-h", "-j", str(job), "-o", "%T"], capture_output=True,
                                 text=True, timeout=10)
            # an array's first task shares the array's id: squeue then lists every task, one line each
            states = set(out.stdout.split())
            if out.returncode == 0:
                return bool(states & {"RUNNING", "PENDING", "CONFIGURING", "COMPLETING", "REQUEUED",
                                      "SUSPENDED", "RESIZING"})
        except (OSError, subprocess.SubprocessError):
            pass
    if holder.get("host") != socket.gethostname():
        return True  # cannot check another host's process: assume alive, the message says how to clear it
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class StageRun:
    """One run of one stage over its output folder (see the module docstring)."""

    def __init__(self, name: str, cfg: PipelineConfig, inputs: list[str | os.PathLike],
                 config_sections: list[str], out_dir: str | os.PathLike | None = None,
                 force: bool = False, output_subdir: str | None = None):
        self.name = name
        self.cfg = cfg
        self.project_dir = cfg.project_path()
        self.out_dir = Path(out_dir) if out_dir else self.project_dir / (output_subdir or name)
        self.inputs = [Path(p) for p in inputs]
        self.config_sections = config_sections
        self.force = force
        self.log = logging.getLogger(f"healthai.{name}")
        self.writers: dict[str, AtomicWriter] = {}
        self.extra_outputs: list[Path] = []
        self.stats: dict[str, Any] = {}
        self.counts: dict[str, int] | None = None
        self.up_to_date = False
        self.previous: dict | None = None
        self._lock_path = self.out_dir / LOCK
        self._locked = False
        self._t0 = 0.0

    # -- lifecycle -----------------------------------------------------------------
    def __enter__(self) -> "StageRun":
        os.umask(0o007)
        self._t0 = time.time()
        ensure_dir(self.out_dir)
        self._acquire_lock()
        try:
            missing = [str(p) for p in self.inputs if not p.is_file()]
            if missing:
                raise InputError("input file not found", file=missing[0])
            self.input_info = [describe_file(p) for p in self.inputs]
            self.config = {s: self.cfg.section(s) for s in self.config_sections}
            self.version = code_version()
            self.key = fingerprint(self.input_info, self.config, self.version)
            self.previous = self._current_manifest()
            if self.previous is not None and not self.force:
                self.up_to_date = True
                print(f"[{self.name}] up to date: {self.out_dir} (inputs and config unchanged; --force redoes it)")
                return self
            self._clean_stale_temp_files()
            # The old manifest no longer describes what is being written: drop it first.
            (self.out_dir / MANIFEST).unlink(missing_ok=True)
        except BaseException:
            self._release_lock()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None or self.up_to_date:
                for writer in self.writers.values():
                    writer.abort()
                return
            if self.counts is None:
                raise StageError(f"stage '{self.name}' finished without a conservation check (a bug)")
            for writer in self.writers.values():
                writer.commit()
            self._write_manifest()
        finally:
            self._release_lock()

    # -- outputs -------------------------------------------------------------------
    def writer(self, name: str, binary: bool = False) -> AtomicWriter:
        """An atomic writer for `out_dir/name`, committed when the stage succeeds."""
        if name not in self.writers:
            self.writers[name] = AtomicWriter(self.out_dir / name, binary=binary)
        return self.writers[name]

    def add_output(self, path: str | os.PathLike) -> None:
        """Register a file written by other means (a model folder's files, a PNG) for the manifest."""
        self.extra_outputs.append(Path(path))

    def reject_bad_line(self, bad: BadLine, rejected: AtomicWriter) -> None:
        self.log.warning("%s: %s (%s) — quarantined in rejected.jsonl", bad.where(), bad.reason, bad.detail)
        rejected.write_record(bad.rejected())

    def check_bad_fraction(self, file: str, bad: int, total: int, first: BadLine | None) -> None:
        """Fail the stage when more than `project.max_bad_fraction` of a file's lines are bad."""
        limit = self.cfg.project.max_bad_fraction
        if total and bad / total > limit:
            where = f" first: {first.where()}: {first.reason} ({first.detail})" if first else ""
            raise InputError(f"{bad} of {total} lines are malformed, more than max_bad_fraction="
                             f"{limit};{where}", file=file)

    def conserve(self, n_in: int, kept: int, rejected: int, **extra: int) -> None:
        """Check that every input record was kept or rejected (plus any named extra outcome)."""
        total_out = kept + rejected + sum(extra.values())
        if n_in != total_out:
            detail = ", ".join(f"{k}={v}" for k, v in extra.items())
            raise StageError(f"conservation check failed in stage '{self.name}': in={n_in} but kept={kept} + "
                             f"rejected={rejected}{' + ' + detail if detail else ''} = {total_out}")
        self.counts = {"in": n_in, "kept": kept, "rejected": rejected, **extra}

    # -- manifest --------------------------------------------------------------------
    def _current_manifest(self) -> dict | None:
        path = self.out_dir / MANIFEST
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if manifest.get("fingerprint") != self.key:
            return None
        for out in manifest.get("outputs", []):
            p = Path(out["path"])
            if not p.is_file() or p.stat().st_size != out["bytes"] or sha256_file(p) != out["sha256"]:
                return None
        return manifest

    def _write_manifest(self) -> None:
        outputs = [describe_file(w.path) for w in self.writers.values()]
        outputs += [describe_file(p) for p in self.extra_outputs if p.is_file()]
        self._save_resolved_config()
        outputs.append(describe_file(self.out_dir / "config.yaml"))
        manifest = {
            "stage": self.name,
            "fingerprint": self.key,
            "code_version": self.version,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self._t0)),
            "seconds": round(time.time() - self._t0, 3),
            "host": socket.gethostname(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "inputs": self.input_info,
            "outputs": outputs,
            "counts": self.counts,
            "stats": self.stats,
            "config": self.config,
        }
        write_json(self.out_dir / MANIFEST, manifest)
        self.previous = manifest

    def _save_resolved_config(self) -> None:
        import yaml

        text = f"# Resolved config of stage '{self.name}' (site {self.cfg.site.name}), saved with its outputs.\n"
        text += yaml.safe_dump(self.cfg.to_dict(), sort_keys=False, allow_unicode=True, width=100)
        with AtomicWriter(self.out_dir / "config.yaml") as out:
            out.write(text)

    # -- lock ------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self._lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o660)
            except FileExistsError:
                try:
                    current = json.loads(self._lock_path.read_text(encoding="utf-8") or "{}")
                except (OSError, json.JSONDecodeError):
                    current = {}
                if current and _holder_alive(current):
                    who = (f"Slurm job {current['slurm_job_id']}" if current.get("slurm_job_id")
                           else f"pid {current.get('pid')} on {current.get('host')}")
                    raise StageError(f"stage '{self.name}' is already running ({who}, since "
                                     f"{current.get('since')}); wait for it or remove {self._lock_path} "
                                     f"if that job is gone")
                self.log.warning("removing stale lock %s (holder %s is gone)", self._lock_path, current)
                self._lock_path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(holder, fh)
            self._locked = True
            return
        raise StageError(f"could not take the lock {self._lock_path}")

    def _release_lock(self) -> None:
        if self._locked:
            self._lock_path.unlink(missing_ok=True)
            self._locked = False

    def _clean_stale_temp_files(self) -> None:
        for tmp in self.out_dir.rglob("*.tmp.*"):
            self.log.info("removing leftover temp file %s (an earlier run was interrupted)", tmp)
            tmp.unlink(missing_ok=True)
