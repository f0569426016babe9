#!/bin/bash -l
#SBATCH --job-name=healthai-ft-optuna
#SBATCH --account=f2026aivlab00021bscaifg
#SBATCH --partition=normal-a100-40
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus=1
#SBATCH --cpus-per-task=32
#SBATCH --time=04:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
# Optuna search over LoRA r / alpha / dropout / learning rate. Usage: sbatch run-ft-optuna.sh [--set hpo.KEY=VALUE ...]
# Parallel: sbatch --array=0-3%2 run-ft-optuna.sh  -> 4 workers, 2 at a time, on ONE study (hpo/journal.log);
# each task gets its own sampler seed (hpo.seed + 1000*SLURM_RESTART_COUNT + SLURM_ARRAY_TASK_ID) and the
# study stops at exactly hpo.n_trials completed + pruned trials. Near the time limit the job requeues itself;
# the requeued run marks its unfinished trial FAILED (it does not count) and carries on.
_d="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
while [ "$_d" != / ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
source "${HEALTHAI_REPO:-$_d}/slurm/common.sh"
healthai_banner
echo "array task ${SLURM_ARRAY_TASK_ID:-none} of job ${SLURM_ARRAY_JOB_ID:-none}, restart ${SLURM_RESTART_COUNT:-0}"
healthai_run_requeueable python "$HEALTHAI_REPO/fine-tuning/fine-tuning-optuna.py" "$@"
