#!/bin/bash -l
#SBATCH --job-name=healthai-build-model
#SBATCH --account=f2026aivlab00021bscaifg
#SBATCH --partition=normal-a100-40
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --time=00:30:00
#SBATCH --output=logs/%x-%j.out
# Build the embedded tiny Qwen3.5-architecture base model (local/CI only; Deucalion uses Qwen3.5-9B).
# Usage: sbatch run-build-model.sh [--set embedded.KEY=VALUE ...] [--force]
_d="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
while [ "$_d" != / ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
source "${HEALTHAI_REPO:-$_d}/slurm/common.sh"
healthai_banner
python "$HEALTHAI_REPO/fine-tuning/build-embedded-model.py" "$@"
