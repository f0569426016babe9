#!/bin/bash
# Chat with the assistant through llama.cpp (the GGUF files of run-export.sh), or serve it.
# Not an sbatch script: run it with bash on a laptop, a login node's salloc shell, or after `bash gpu.sh`.
#
#   bash run-chat.sh ft                           # chat with the fine-tuned model (export.chat_type: Q4_K_M)
#   bash run-chat.sh base                         # ... with the base model
#   bash run-chat.sh ft --backend transformers    # base + LoRA adapter through transformers, no export needed
#   bash run-chat.sh ft --type f16                # another exported file
#   bash run-chat.sh ft --serve --port 8080       # OpenAI-compatible server on 127.0.0.1 (SSH tunnel: README)
#
# Inside a salloc shell the python runs as a job step (srun --pty for the chat), as run-inference.sh does.
usage() {
  echo "usage: bash run-chat.sh MODE [chat.py options]   (MODE: base | ft)"
  echo "  needs the GGUF files of: cd inference && sbatch run-export.sh   (or --backend transformers)"
}
mode="${1:-}"
case "$mode" in
  base|ft) shift ;;
  -h|--help) usage; exit 0 ;;
  "") echo "error: MODE is missing" >&2; usage >&2; exit 2 ;;
  *) echo "error: unknown MODE '$mode'" >&2; usage >&2; exit 2 ;;
esac

_d="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
while [ "$_d" != / ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
source "${HEALTHAI_REPO:-$_d}/slurm/common.sh"

healthai_exec_step run-chat 1 python "$HEALTHAI_REPO/inference/chat.py" "$mode" "$@"
