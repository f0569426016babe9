#!/bin/bash
# Open an interactive GPU allocation, as in the workshop:
#   salloc -A f2026aivlab00021bscaifg --gpus=1 -t 00:10:00 -p normal-a100-40
# then, in the shell it opens:  bash run-inference.sh base ; bash run-inference.sh ft ; exit
#
# Override with Slurm's own variables, e.g. SALLOC_PARTITION=dev-a100-40 bash gpu.sh:
#   SALLOC_ACCOUNT (f2026aivlab00021bscaifg), SALLOC_PARTITION (normal-a100-40),
#   SALLOC_TIMELIMIT (00:10:00), SALLOC_GPUS (1).
# Extra arguments go to salloc, a command after them runs in the allocation instead of a shell:
#   bash gpu.sh --cpus-per-task=32
#   bash gpu.sh bash run-inference.sh ft
set -euo pipefail
command -v salloc >/dev/null || {
  echo "error: salloc not found: run this on a Deucalion login node, or start the local cluster (bash slurm/local-cluster.sh start); without Slurm run 'bash run-inference.sh base' directly" >&2
  exit 2
}
exec salloc -A "${SALLOC_ACCOUNT:-f2026aivlab00021bscaifg}" --gpus="${SALLOC_GPUS:-1}" \
  -t "${SALLOC_TIMELIMIT:-00:10:00}" -p "${SALLOC_PARTITION:-normal-a100-40}" "$@"
