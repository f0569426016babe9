#!/bin/bash -l
#SBATCH --job-name=healthai-filter
#SBATCH --account=f2026aivlab00021bscaifg
#SBATCH --partition=normal-a100-40
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus=1
#SBATCH --cpus-per-task=32
#SBATCH --time=02:00:00
#SBATCH --output=logs/%x-%j.out
# Stage 2: filter, stratified sample of 500, rewrite (Qwen3.5-2B on Deucalion), validate.
# Usage: sbatch run-filter.sh [--set filter.KEY=VALUE ...]   (locally the site profile picks the rules backend;
# --set filter.backend=llm uses models.rewriter, else models.base, e.g. the embedded tiny model)
_d="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
while [ "$_d" != / ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
source "${HEALTHAI_REPO:-$_d}/slurm/common.sh"
healthai_banner
python "$HEALTHAI_REPO/2.Filter/filter_dataset.py" "$@"
