#!/bin/bash
# Answer the workshop's test prompts with the base or the fine-tuned model. Not an sbatch script:
# run it with bash inside an interactive allocation (the workshop's way) or on a laptop.
#
#   bash gpu.sh                              # Deucalion: salloc -A f2026aivlab00021bscaifg --gpus=1 -t 00:10:00 -p normal-a100-40
#   bash run-inference.sh base               # the four workshop prompts, base model
#   bash run-inference.sh ft                 # the same with the fine-tuned LoRA adapter on top
#   bash run-inference.sh ft --interactive   # type questions, answers stream as they are generated
#   bash run-inference.sh ft --prompt "I have a sore throat."   # any inference.py option after MODE
#
# Inside a salloc shell this script runs on the submit side, outside any job step, where the GPU
# is not visible (no CUDA_VISIBLE_DEVICES): the python then runs as a job step through `srun`.
# In a batch job (already a step with the GPU) or without Slurm it runs directly.
# HEALTHAI_NO_SRUN=1 turns the srun step off.
usage() {
  echo "usage: bash run-inference.sh MODE [inference.py options]   (MODE: base | ft)"
  echo "  base  the base model (models.base)"
  echo "  ft    the base model + the fine-tuned LoRA adapter (models.adapter; made by: cd fine-tuning && sbatch run-ft.sh)"
  echo "  e.g.  bash run-inference.sh ft --interactive"
}
mode="${1:-}"
case "$mode" in
  base|ft) shift ;;
  -h|--help) usage; exit 0 ;;
  "") echo "error: MODE is missing" >&2; usage >&2; exit 2 ;;
  *) echo "error: unknown MODE '$mode'" >&2; usage >&2; exit 2 ;;
esac

_d="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
while [ "$_d" != / ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
source "${HEALTHAI_REPO:-$_d}/slurm/common.sh"

cmd=(python "$HEALTHAI_REPO/inference/inference.py" --mode "$mode" "$@")
if [ -n "${SLURM_JOB_ID:-}" ] && [ -z "${SLURM_STEP_ID:-}" ] && [ "${ENVIRONMENT:-}" != BATCH ] \
   && [ "${HEALTHAI_NO_SRUN:-0}" != 1 ] && command -v srun >/dev/null; then
  step=(--ntasks=1 --nodes=1)
  # A terminal for the chat: line editing, and answers appear token by token.
  if [[ " $* " == *" --interactive "* ]] && [ -t 0 ] && [ -t 1 ]; then step+=(--pty); fi
  echo "[run-inference] inside allocation ${SLURM_JOB_ID}: running as a job step (srun ${step[*]})" >&2
  exec srun "${step[@]}" "${cmd[@]}"
fi
exec "${cmd[@]}"
