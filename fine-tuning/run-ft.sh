#!/bin/bash -l
#SBATCH --job-name=healthai-ft
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
#SBATCH --signal=B:USR1@60
# Final LoRA fine-tuning. Usage: sbatch run-ft.sh [--merge] [--set finetune.KEY=VALUE ...]
# Hyperparameters: hpo/best_params.yaml when present (printed), else the finetune section; --set wins.
# 60 s before the time limit Slurm sends USR1 to this shell; healthai_run_requeueable passes it to
# Python, which saves a checkpoint (weights, optimizer, scheduler, RNG, step) and exits; the job is
# requeued and resumes from ft/checkpoints. Logs append to the same file (--open-mode=append).
#
# torchrun forwards USR1 to every rank (--signals-to-handle); the ranks agree on the stop step.
# Several GPUs on one node (data parallel): sbatch --gpus=4 run-ft.sh with HEALTHAI_NPROC=4, which
# runs `torchrun --nproc_per_node 4` (accelerate launch --multi_gpu works as well).
# Several nodes: sbatch --nodes=2 --ntasks-per-node=1 --gpus-per-node=4 run-ft.sh with HEALTHAI_NPROC=4;
# then each node runs one torchrun through srun, rendezvous on the first host of the allocation:
#   head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
#   srun torchrun --signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 --shutdown-timeout 50 --nnodes "$SLURM_NNODES" --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint "$head:29500" ...
_d="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
while [ "$_d" != / ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
source "${HEALTHAI_REPO:-$_d}/slurm/common.sh"
healthai_banner
echo "restart ${SLURM_RESTART_COUNT:-0} of job ${SLURM_JOB_ID:-none}"
entry="$HEALTHAI_REPO/fine-tuning/simple-fine-tuning.py"
nproc="${HEALTHAI_NPROC:-1}"
if [ "${SLURM_NNODES:-1}" -gt 1 ]; then
  head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
  healthai_run_requeueable srun --kill-on-bad-exit=1 torchrun --signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 --shutdown-timeout 50 --nnodes "$SLURM_NNODES" --nproc_per_node "$nproc" \
    --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$head:29500" "$entry" "$@"
elif [ "$nproc" -gt 1 ]; then
  healthai_run_requeueable torchrun --signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 --shutdown-timeout 50 --standalone --nproc_per_node "$nproc" "$entry" "$@"
else
  healthai_run_requeueable python "$entry" "$@"
fi
