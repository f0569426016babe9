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
# Inside a salloc shell the python runs as a job step through `srun`, where the GPU is visible
# (healthai_exec_step in slurm/common.sh); HEALTHAI_NO_SRUN=1 turns that off.
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

# A terminal for the chat (line editing, answers token by token): --pty with --interactive.
pty=0; [[ " $* " == *" --interactive "* ]] && pty=1
healthai_exec_step run-inference "$pty" python "$HEALTHAI_REPO/inference/inference.py" --mode "$mode" "$@"
