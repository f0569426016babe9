"""Chat with the assistant in the terminal through llama.cpp, or serve it (OpenAI-compatible API).

    bash run-chat.sh ft                          # $PROJECT_DIR/export/ft-Q4_K_M.gguf (made by run-export.sh)
    bash run-chat.sh base                        # the base model's GGUF, to compare
    bash run-chat.sh ft --backend transformers   # base + LoRA adapter, no export needed
    bash run-chat.sh ft --gguf my.gguf           # any GGUF of the same base
    bash run-chat.sh ft --serve [--port 8080]    # llama.cpp's server on 127.0.0.1, until Ctrl-C

In the chat: /reset forgets the conversation, /quit or Ctrl-D ends. Answers stream as they are
generated, greedy, with the pipeline's system prompt and thinking off. The conversation stays in
the context (export.n_ctx); the oldest turns leave when it is full.
"""

from __future__ import annotations

from pathlib import Path

from healthai.pipeline.cli import banner, run_cli, stage_parser


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, prog="chat.py")
    parser.add_argument("mode", choices=("base", "ft"), help="the base model, or the fine-tuned one")
    parser.add_argument("--backend", choices=("llama", "transformers"), default="llama",
                        help="llama: the exported GGUF through llama.cpp (default); transformers: base + adapter")
    parser.add_argument("--gguf", default=None, metavar="FILE", help="this GGUF instead of the exported one")
    parser.add_argument("--type", default=None, metavar="TYPE", help="which exported file (default: export.chat_type)")
    parser.add_argument("--serve", action="store_true", help="start llama.cpp's OpenAI-compatible server instead")
    parser.add_argument("--port", type=int, default=None, help="server port (default: export.port)")
    args = parser.parse_args(argv)
    if args.backend == "transformers" and (args.gguf or args.serve or args.type):
        parser.error("--backend transformers chats with base + adapter: no --gguf, --type or --serve")
    if args.gguf and args.type:
        parser.error("give either --gguf or --type")

    def body(cfg) -> int:
        from healthai.model import chat, gguf

        if args.type:
            cfg.export.chat_type = args.type
        path = Path(args.gguf).resolve() if args.gguf else gguf.gguf_path(cfg, args.mode)
        if args.serve:
            return serve(cfg, args.mode, path, args.port or cfg.export.port, checked=not args.gguf)
        banner(f"chat · {args.mode}", cfg, backend=args.backend,
               model=path if args.backend == "llama" else "models.base" + (" + models.adapter" if args.mode == "ft" else ""))
        backend = (chat.open_llama(cfg, args.mode, Path(args.gguf) if args.gguf else None) if args.backend == "llama"
                   else chat.open_transformers(cfg, args.mode))
        chat.chat_loop(backend, cfg, args.mode)
        return 0

    return run_cli("chat", args, body)


def serve(cfg, mode: str, path: Path, port: int, checked: bool) -> int:
    """Start the server, print its URL, wait until Ctrl-C (or the job ends), then stop it."""
    from healthai.model import gguf
    from healthai.model import serve as server

    gguf.check_gguf(path, gguf.recorded_output(cfg, path) if checked else None)
    log_file = cfg.project_path() / gguf.OUTPUT_SUBDIR / "logs" / f"server-{port}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://{cfg.export.host}:{port}"
    banner(f"serve · {mode}", cfg, model=path, url=url, log=log_file)
    proc = server.start_server(path, cfg, port, log_file)
    try:
        secs = server.wait_ready(proc, url, cfg.export.server_ready_s, log_file)
        print(f"[serve] ready in {secs:.1f} s: {url}/v1  (OpenAI-compatible: /v1/chat/completions, /v1/models)\n"
              f"[serve] e.g. curl {url}/v1/chat/completions -H 'Content-Type: application/json' "
              "-d '{\"messages\": [{\"role\": \"user\", \"content\": \"Sore throat?\"}], \"temperature\": 0, "
              "\"repeat_penalty\": 1.0}'\n[serve] Ctrl-C stops it", flush=True)
        proc.wait()
        print(f"[serve] the server exited with code {proc.returncode} (log: {log_file})")
        return 1
    except KeyboardInterrupt:
        print("\n[serve] stopping", flush=True)
        return 0
    finally:
        server.stop_server(proc)


if __name__ == "__main__":
    raise SystemExit(main())
