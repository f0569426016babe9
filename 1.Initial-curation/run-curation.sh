#!/bin/bash -l
#SBATCH --job-name=healthai-curation
#SBATCH --account=f2026aivlab00021bscaifg
#SBATCH --partition=normal-a100-40
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=32
#SBATCH --time=01:00:00
#SBATCH --output=logs/%x-%j.out
# Stage 1: curate raw patient-doctor Q&A. Usage: sbatch run-curation.sh [--set curation.KEY=VALUE ...]
# CPU only: SBATCH_PARTITION=normal-x86 SBATCH_ACCOUNT=<project>x moves it to a CPU partition.
_d="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
while [ "$_d" != / ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
source "${HEALTHAI_REPO:-$_d}/slurm/common.sh"
healthai_banner
python "$HEALTHAI_REPO/1.Initial-curation/curate_dataset.py" "$@"
