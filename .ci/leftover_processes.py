"""List (and end) the processes a CI run started that are still alive after its tests.

    python3 .ci/leftover_processes.py TOKEN [--exclude PID ...] [--grace S]

A process belongs to the run when its environment carries HEALTHAI_CI_RUN=TOKEN: `.ci/run`
exports it, so every process started beneath it inherits it, also one that was orphaned (its
parent SIGKILLed) or that a Slurm job started (sbatch passes the environment). The Slurm
daemons the run started itself are excluded by pid. Run it with the variable unset, so that
it does not find itself. Exit 1 listing the leftovers (after killing them, so that nothing
stays running), 0 when there are none.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone, or not ours to read
        return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left


def _describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = "?"
    return f"pid {pid}: {cmd[:300]}"


def leftovers(token: str, exclude: set[int]) -> list[int]:
    needle = f"HEALTHAI_CI_RUN={token}".encode()
    own = {os.getpid(), os.getppid()}
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return sorted(p for p in pids if p not in exclude | own and _alive(p) and _environ_has(p, needle))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("token")
    parser.add_argument("--exclude", type=int, nargs="*", default=[])
    parser.add_argument("--grace", type=float, default=15.0,
                        help="seconds a process that is ending may take to go (re-checked, not slept)")
    args = parser.parse_args(argv)
    if os.environ.get("HEALTHAI_CI_RUN") == args.token:
        print("leftover_processes: run me with HEALTHAI_CI_RUN unset", file=sys.stderr)
        return 2
    exclude = set(args.exclude)
    end = time.monotonic() + args.grace
    found = leftovers(args.token, exclude)
    while found and time.monotonic() < end:
        time.sleep(0.2)
        found = leftovers(args.token, exclude)
    if not found:
        print("[ci] no process of this run is left")
        return 0
    print(f"[ci] FAILED: {len(found)} process(es) started by this CI run are still alive after the tests:",
          file=sys.stderr)
    for pid in found:
        print(f"[ci]   {_describe(pid)}", file=sys.stderr)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
