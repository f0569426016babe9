#!/bin/bash
# The slides' command, from the fine-tuning folder, inside `bash gpu.sh`:
#   bash run-inference.sh 'base'     # the four workshop prompts, base model
#   bash run-inference.sh 'ft'       # the same with the fine-tuned LoRA adapter
# One implementation: this runs inference/run-inference.sh (every option documented there).
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../inference/run-inference.sh" "$@"
