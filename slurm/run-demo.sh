#!/bin/bash
# `make demo`: the whole pipeline on the embedded defaults and the bundled real sample data.
# Starts the local Slurm cluster when it is not running and submits the real job chain
# (slurm/submit-pipeline.sh --follow); where Slurm cannot run on this machine it says so and
# runs the same run-*.sh scripts one after another without Slurm. Ends with the report's
# location and the four workshop prompts answered by the base and the fine-tuned model (the export
# stage, after fine-tuning, leaves GGUF files to chat with: inference/run-chat.sh).
set -euo pipefail
HEALTHAI_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HEALTHAI_REPO
source "$HEALTHAI_REPO/slurm/common.sh"
cd "$HEALTHAI_REPO"
start=$SECONDS

mode=slurm
if ! bash slurm/local-cluster.sh status >/dev/null 2>&1; then
  if ! bash slurm/local-cluster.sh start; then
    mode=direct
    echo "[demo] Slurm cannot run on this machine (see the message above): running the stages directly, in order, without Slurm"
  fi
fi

if [ $mode = slurm ]; then
  bash slurm/submit-pipeline.sh --follow -- "$@"
else
  python -m healthai.pipeline plan | while IFS=$'\t' read -r name folder script needs status; do
    echo "[demo] $name: $folder/$script"
    (cd "$folder" && bash "$script" "$@")
  done
fi

python -m healthai.pipeline summary
echo "[demo] whole pipeline took $((SECONDS - start)) s ($mode mode)."
echo "[demo] talk to the fine-tuned assistant through llama.cpp: cd inference && bash run-chat.sh ft   (--serve: an OpenAI-compatible server)"
if [ $mode = slurm ]; then
  echo "[demo] the local Slurm cluster is still running (squeue, salloc work); stop it with: make cluster-stop"
fi
