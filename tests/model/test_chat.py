"""The llama.cpp chat typed in a real terminal (tmux) and the OpenAI-compatible server over loopback.

The terminal: bash run-chat.sh in a detached tmux session on its own socket; the test types with
send-keys and reads the screen with capture-pane, as a person would. The server: the chat's
greedy answers must come back from /v1/chat/completions. Every tmux server and llama.cpp server
a test starts is ended in a finally, also when the test fails.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import EXPORT, TINY
from waiting import wait_for

from healthai.config import REPO_DIR
from healthai.errors import InputError
from healthai.model import chat, serve

pytestmark = pytest.mark.slow
RUN_CHAT = REPO_DIR / "inference" / "run-chat.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_sets(cfg) -> list[str]:
    """The fixture's config as --set arguments for run-chat.sh / chat.py."""
    out = []
    for item in [f"models.base={cfg.models.base}", f"models.adapter={cfg.models.adapter}", *TINY, *EXPORT]:
        out += ["--set", item]
    return out


class Terminal:
    """One command in a detached tmux session (its own socket); the screen through capture-pane."""

    def __init__(self, command: list[str], env: dict):
        self.socket = f"healthai-chat-{uuid.uuid4().hex[:8]}"
        self.env = env
        line = " ".join(_quote(a) for a in command) + '; echo "__EXIT__ rc=$?"; sleep 600'
        self._tmux("new-session", "-d", "-s", "chat", "-x", "160", "-y", "50", line)

    def _tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, env=self.env,
                             timeout=30, check=False)
        assert out.returncode == 0, f"tmux {args[0]}: {out.stderr.strip()}"
        return out.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-t", "chat", "-S", "-1000")

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "chat", "-l", text)
        self._tmux("send-keys", "-t", "chat", "Enter")

    def key(self, key: str) -> None:
        self._tmux("send-keys", "-t", "chat", key)

    def wait(self, pattern: str, what: str, count: int = 1, deadline_s: float = 300) -> str:
        regex = re.compile(pattern)
        wait_for(lambda: len(regex.findall(self.screen())) >= count, what, deadline_s=deadline_s, interval_s=0.2)
        return self.screen()

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, env=self.env, timeout=30,
                       check=False)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def terminal_env(project: Path) -> dict:
    env = {**os.environ, "HEALTHAI_PROJECT_DIR": str(project), "TERM": "xterm", "HEALTHAI_NO_SRUN": "1",
           "OMP_NUM_THREADS": "2"}
    env.pop("TMUX", None)
    return env


def test_chat_in_a_terminal_reset_quit_and_ctrl_d(tiny_export):
    cfg, project = tiny_export
    expected = chat.open_llama(cfg, "ft")
    system = {"role": "system", "content": cfg.filter.assistant_system}
    q1, q2 = cfg.inference.prompts[0], "Sore throat?"
    first, _ = expected.reply([system, {"role": "user", "content": q1}], lambda s: None)
    expected.llm.close()
    term = Terminal(["bash", str(RUN_CHAT), "ft", *cli_sets(cfg)], terminal_env(project))
    try:
        term.wait(r"/reset forgets the conversation", "the chat's greeting")
        term.type(q1)
        screen = term.wait(r"\(\d+ tokens in [\d.]+ s\)", "the first answer")
        shown = " ".join(chat.printable(first).split())
        assert shown and shown in " ".join(screen.split())                   # streamed == the greedy answer
        term.type(q2)
        term.wait(r"\(\d+ tokens in [\d.]+ s\)", "the second answer (with the first turn as history)", count=2)
        term.type("/reset")
        term.wait(r"\[conversation cleared\]", "/reset's confirmation")
        term.type("/nonsense")
        term.wait(r"\[unknown command /nonsense\]", "the unknown-command hint")
        term.key("C-d")
        screen = term.wait(r"__EXIT__ rc=\d+", "the chat to end on Ctrl-D")
        assert "bye (2 answers)" in screen and "__EXIT__ rc=0" in screen
    finally:
        term.close()
    term = Terminal(["bash", str(RUN_CHAT), "base", "--backend", "transformers", *cli_sets(cfg)],
                    terminal_env(project))
    try:
        term.wait(r"\[base · transformers\]", "the transformers chat's greeting")
        term.type(q2)
        term.wait(r"\(\d+ tokens in [\d.]+ s\)", "the transformers answer")
        term.type("/quit")
        screen = term.wait(r"__EXIT__ rc=\d+", "the chat to end on /quit")
        assert "bye (1 answers)" in screen and "__EXIT__ rc=0" in screen
    finally:
        term.close()


def test_missing_gguf_names_the_export_command_in_the_terminal(tiny_export, tmp_path):
    cfg, _ = tiny_export
    empty = tmp_path / "empty-project"
    empty.mkdir()
    term = Terminal(["bash", str(RUN_CHAT), "ft", *cli_sets(cfg)], terminal_env(empty))
    try:
        screen = term.wait(r"__EXIT__ rc=\d+", "the chat to stop on the missing file")
    finally:
        term.close()
    errors = [ln for ln in screen.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, screen
    assert str(empty / "export" / "ft-f16.gguf") in errors[0] and "sbatch run-export.sh" in errors[0]
    assert "__EXIT__ rc=1" in screen and "Traceback" not in screen


def test_server_answers_equal_the_chats_greedy_answers(tiny_export, tmp_path):
    cfg, project = tiny_export
    path = project / "export" / "ft-f16.gguf"
    backend = chat.open_llama(cfg, "ft")
    system = {"role": "system", "content": cfg.filter.assistant_system}
    questions = list(cfg.inference.prompts)
    expected = [backend.reply([system, {"role": "user", "content": q}], lambda s: None)[0] for q in questions]
    backend.llm.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = serve.start_server(path, cfg, port, log)
    try:
        serve.wait_ready(proc, url, 120, log)
        with pytest.raises(InputError, match=f"port {port} .* already in use"):   # a second server, same port
            serve.start_server(path, cfg, port)
        for q, want in zip(questions, expected):
            resp = serve.chat_request(url, [system, {"role": "user", "content": q}], cfg.export.max_tokens, timeout=120)
            assert resp["choices"][0]["message"]["content"].strip() == want
    finally:
        assert serve.stop_server(proc) is not None
    assert proc.poll() is not None


def test_run_chat_serve_prints_the_url_and_stops_on_ctrl_c(tiny_export):
    cfg, project = tiny_export
    port = free_port()
    env = terminal_env(project)
    proc = subprocess.Popen([sys.executable, str(REPO_DIR / "inference" / "chat.py"), "ft", "--serve", "--port",
                             str(port), *cli_sets(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    seen: list[str] = []

    def ready() -> bool:
        while select.select([proc.stdout], [], [], 0)[0]:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
        return any("ready in" in ln and f"http://127.0.0.1:{port}/v1" in ln for ln in seen)

    try:
        wait_for(ready, f"the server's ready line with its URL (port {port})", deadline_s=180, proc=proc)
        resp = serve.chat_request(f"http://127.0.0.1:{port}", [{"role": "user", "content": "Sore throat?"}], 8)
        assert resp["choices"][0]["message"]["content"]
        os.killpg(proc.pid, signal.SIGINT)                       # Ctrl-C
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # nothing of the server is left: its process group is gone and the port is free again (a
    # connection of the request may stay in TIME_WAIT: free for a bind with SO_REUSEADDR, as servers do)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)
    serve.check_port_free("127.0.0.1", port)
    # and a port that is taken: one line naming it, exit 1
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        out = subprocess.run([sys.executable, str(REPO_DIR / "inference" / "chat.py"), "ft", "--serve", "--port",
                              str(port), *cli_sets(cfg)], capture_output=True, text=True, env=env, timeout=120,
                             check=False)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and f"port {port}" in out.stderr, out.stderr
    assert json.dumps({"enable_thinking": False}) in " ".join(serve.server_command(Path("x"), cfg, port))
