#!/bin/bash
# The slides' command, from the fine-tuning folder: an interactive GPU allocation of 10 minutes,
#   salloc -A f2026aivlab00021bscaifg --gpus=1 -t 00:10:00 -p normal-a100-40
# then, in the shell it opens (still in fine-tuning/):
#   bash run-inference.sh 'base' ; bash run-inference.sh 'ft' ; exit
# One implementation: this runs inference/gpu.sh (options and SALLOC_* variables there).
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../inference/gpu.sh" "$@"
