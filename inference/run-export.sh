#!/bin/bash -l
#SBATCH --job-name=healthai-export
#SBATCH --account=f2026aivlab00021bscaifg
#SBATCH --partition=normal-a100-40
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=16
#SBATCH --time=02:00:00
#SBATCH --output=logs/%x-%j.out
# The base and the fine-tuned model as GGUF files for llama.cpp (Deucalion's "AI: Llama.cpp" app, a
# laptop): merge the adapter, convert (f16, q8_0), quantize (Q4_K_M), compare with transformers.
# Memory follows the 16 CPUs (as in the other stages; the 9B merge holds its 18 GB of bf16 weights).
# No GPU needed: on Deucalion a CPU partition does it (SBATCH_PARTITION=normal-x86 SBATCH_ACCOUNT=<project>x).
# Usage: sbatch run-export.sh [--force] [--set export.KEY=VALUE ...]   -> $PROJECT_DIR/export/
_d="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
while [ "$_d" != / ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
source "${HEALTHAI_REPO:-$_d}/slurm/common.sh"
healthai_banner
python "$HEALTHAI_REPO/inference/export_model.py" "$@"
