"""llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) over an exported GGUF, on loopback.

    proc = start_server(gguf_file, cfg, port, log_file)   # its own process group
    wait_ready(proc, url, deadline_s)                     # GET /v1/models answers 200
    chat_request(url, messages, max_tokens)               # greedy, like the terminal chat
    stop_server(proc)

Greedy requests send "repeat_penalty": 1.0: the server's request default is 1.1 (llama.cpp's
create_chat_completion and transformers' generate use 1.0), and "temperature": 0 alone gives
other text than the chat.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from healthai.errors import InputError, StageError
from healthai.model.gguf import cpu_threads


def check_port_free(host: str, port: int) -> None:
    """One line naming the port when something already listens there (the server's own error is a
    uvicorn traceback-ish log and exit code 3)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the server binds (uvicorn sets SO_REUSEADDR): a port whose last connections are in
        # TIME_WAIT after a server stopped is free; only a listening socket makes bind fail
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(f"port {port} on {host} is already in use (another server?); choose another "
                                 f"with --port N") from None
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror})") from None


def server_command(path: Path, cfg, port: int) -> list[str]:
    ec = cfg.export
    n = str(cpu_threads(ec.n_threads))
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", ec.host, "--port", str(port),
            "--chat_format", "chat_template.default", "--n_ctx", str(ec.n_ctx), "--n_threads", n,
            "--n_threads_batch", n, "--chat_template_kwargs", json.dumps({"enable_thinking": False})]


def start_server(path: Path, cfg, port: int, log_file: Path | None = None) -> subprocess.Popen:
    """The server in its own process group (stop_server ends it and anything it started)."""
    check_port_free(cfg.export.host, port)
    out = open(log_file, "w", encoding="utf-8") if log_file else subprocess.DEVNULL  # noqa: SIM115 (child owns it)
    try:
        return subprocess.Popen(server_command(path, cfg, port), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        if log_file:
            out.close()


def wait_ready(proc: subprocess.Popen, url: str, deadline_s: float, log_file: Path | None = None) -> float:
    """Poll GET {url}/v1/models until it answers 200; seconds it took. Raises when the server exits
    first (with its last log line) or the deadline passes."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        if proc.poll() is not None:
            tail = ""
            if log_file and log_file.is_file():
                lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
                tail = f": {lines[-1][-200:]}" if lines else ""
            raise StageError(f"the llama.cpp server exited with code {proc.returncode} before it was ready{tail}",
                             file=str(log_file) if log_file else None)
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except (TimeoutError, urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)  # poll interval, not a guess at readiness
    raise StageError(f"the llama.cpp server did not answer GET {url}/v1/models within {deadline_s:.0f} s "
                     "(export.server_ready_s)")


def chat_request(url: str, messages: list[dict], max_tokens: int, timeout: float = 300) -> dict:
    """POST /v1/chat/completions, greedy (temperature 0, repeat_penalty 1.0, as the terminal chat)."""
    body = {"messages": messages, "temperature": 0, "repeat_penalty": 1.0, "max_tokens": max_tokens}
    req = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def stop_server(proc: subprocess.Popen, grace_s: float = 20) -> int:
    """SIGTERM to the server's process group, SIGKILL after `grace_s`; its exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode
