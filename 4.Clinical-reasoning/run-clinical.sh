#!/bin/bash -l
#SBATCH --job-name=healthai-clinical
#SBATCH --account=f2026aivlab00021bscaifg
#SBATCH --partition=normal-a100-40
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --time=00:15:00
#SBATCH --output=logs/%x-%j.out
# Stage 4: pharmacological tables -> clinical-reasoning Q&A. Usage: sbatch run-clinical.sh [--set clinical.KEY=VALUE ...]
# CPU only (under a minute): SBATCH_PARTITION=normal-x86 SBATCH_ACCOUNT=<project>x moves it to a CPU partition.
_d="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
while [ "$_d" != / ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
source "${HEALTHAI_REPO:-$_d}/slurm/common.sh"
healthai_banner
python "$HEALTHAI_REPO/4.Clinical-reasoning/build_clinical_dataset.py" "$@"
