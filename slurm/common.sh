#!/bin/bash
# Sourced by every run-*.sh: strict mode, health-data umask, repo + environment + offline HF.
#
# Inside a Slurm job "$0" is Slurm's spool copy of the script, so the repo is found
# from $SLURM_SUBMIT_DIR (the folder sbatch was called in), walking up to the folder
# that holds slurm/common.sh; $HEALTHAI_REPO wins when set.
set -euo pipefail
umask 007   # health data: nothing created by a job is readable by other users

if [ -z "${HEALTHAI_REPO:-}" ]; then
  _d="${SLURM_SUBMIT_DIR:-$PWD}"
  while [ "$_d" != "/" ] && [ ! -f "$_d/slurm/common.sh" ]; do _d="$(dirname "$_d")"; done
  if [ ! -f "$_d/slurm/common.sh" ]; then
    echo "error: cannot find the healthai repository from ${SLURM_SUBMIT_DIR:-$PWD}; run sbatch inside the repo or export HEALTHAI_REPO" >&2
    exit 2
  fi
  HEALTHAI_REPO="$_d"
fi
export HEALTHAI_REPO
export HEALTHAI_SITE="${HEALTHAI_SITE:-local}"
_site_file="$HEALTHAI_REPO/configs/sites/$HEALTHAI_SITE.yaml"
if [ ! -f "$_site_file" ]; then
  echo "error: unknown site '$HEALTHAI_SITE' ($_site_file not found)" >&2
  exit 2
fi

# The site profile's `activate: |` block, as shell lines ({user} expanded).
healthai_site_activate() {
  awk '/^  activate: \|/ {on=1; next} on && /^    / {sub(/^    /, ""); print; next} on {exit}' "$_site_file" \
    | sed "s/{user}/${USER:-$(id -un)}/g"
}
eval "$(healthai_site_activate)"

# Nothing may download a model or data set at run time.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# Keep the local cluster's config visible to slurm commands run from the job (requeue, squeue).
if [ -z "${SLURM_CONF:-}" ] && [ -f /tmp/healthai-slurm/slurm.conf ] && [ ! -f /etc/slurm/slurm.conf ]; then
  export SLURM_CONF=/tmp/healthai-slurm/slurm.conf
fi

# Slurm creates the job's log with the submitter's umask: close it to other users as well.
if [ -n "${SLURM_JOB_ID:-}" ]; then
  _log=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *StdOut=//p' | head -n1 || true)
  if [ -n "$_log" ] && [ -f "$_log" ]; then chmod o-rwx "$_log" 2>/dev/null || true; fi
fi

healthai_banner() {
  echo "[$(date '+%F %T')] ${SLURM_JOB_NAME:-$(basename "$0")} job=${SLURM_JOB_ID:-none} host=$(hostname) site=$HEALTHAI_SITE repo=$HEALTHAI_REPO"
}

# Run a long payload so that a `--signal=B:USR1@N` warning reaches the batch shell's trap
# while the payload runs (bash defers traps until a foreground child exits).
# Usage: healthai_run_requeueable python script.py "$@"
healthai_run_requeueable() {
  "$@" &
  _child=$!
  _on_warning() {
    echo "[$(date '+%T')] time limit near: asking ${_child} to checkpoint, then requeue job ${SLURM_JOB_ID:-?}"
    kill -USR1 "$_child" 2>/dev/null || true
    wait "$_child" || true
    if [ -n "${SLURM_JOB_ID:-}" ]; then scontrol requeue "$SLURM_JOB_ID"; fi
    exit 0
  }
  trap _on_warning USR1
  set +e
  wait "$_child"
  _rc=$?
  # `wait` returns early (>128) when the trap fires; the trap then exits the script.
  while [ $_rc -gt 128 ] && kill -0 "$_child" 2>/dev/null; do wait "$_child"; _rc=$?; done
  set -e
  trap - USR1
  return $_rc
}

# Run a command for an interactive script (run-inference.sh, run-chat.sh): inside a salloc shell
# it runs on the submit side, outside any job step, where the GPU is not visible (no
# CUDA_VISIBLE_DEVICES), so the command becomes a job step through srun (--pty when asked, for a
# terminal). In a batch job (already a step) or without Slurm it runs directly.
# HEALTHAI_NO_SRUN=1 turns the srun step off.   usage: healthai_exec_step NAME PTY(0|1) CMD...
healthai_exec_step() {
  local name=$1 pty=$2; shift 2
  if [ -n "${SLURM_JOB_ID:-}" ] && [ -z "${SLURM_STEP_ID:-}" ] && [ "${ENVIRONMENT:-}" != BATCH ] \
     && [ "${HEALTHAI_NO_SRUN:-0}" != 1 ] && command -v srun >/dev/null; then
    local step=(--ntasks=1 --nodes=1)
    if [ "$pty" = 1 ] && [ -t 0 ] && [ -t 1 ]; then step+=(--pty); fi
    echo "[$name] inside allocation ${SLURM_JOB_ID}: running as a job step (srun ${step[*]})" >&2
    exec srun "${step[@]}" "$@"
  fi
  exec "$@"
}
