#!/bin/bash -l
#SBATCH --job-name=healthai-evaluate
#SBATCH --account=f2026aivlab00021bscaifg
#SBATCH --partition=normal-a100-40
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus=1
#SBATCH --cpus-per-task=32
#SBATCH --time=01:00:00
#SBATCH --output=logs/%x-%j.out
# Evaluate the base and the fine-tuned model side by side on the held-out test split (the last job
# of the pipeline chain). Usage: sbatch run-evaluate.sh [--force] [--set inference.KEY=VALUE ...]
# Writes $PROJECT_DIR/inference/report.md, report.json, report.png, answers.jsonl.
_d="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
while [ "$_d" != / ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
source "${HEALTHAI_REPO:-$_d}/slurm/common.sh"
healthai_banner
python "$HEALTHAI_REPO/inference/inference.py" --evaluate "$@"
