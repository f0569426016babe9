#!/bin/bash -l
#SBATCH --job-name=healthai-merge
#SBATCH --account=f2026aivlab00021bscaifg
#SBATCH --partition=normal-a100-40
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --time=00:30:00
#SBATCH --output=logs/%x-%j.out
# Stage 3: apply the manual review, top up to 451, leak-free train/val/test split, dataset card.
# Usage: sbatch run-merge.sh [--set merge.KEY=VALUE ...]   (review first, on a login node: python review.py)
# CPU only: SBATCH_PARTITION=normal-x86 SBATCH_ACCOUNT=<project>x moves it to a CPU partition.
_d="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
while [ "$_d" != / ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
source "${HEALTHAI_REPO:-$_d}/slurm/common.sh"
healthai_banner
python "$HEALTHAI_REPO/3.Merge/merge_dataset.py" "$@"
