#!/bin/bash
# Submit the whole pipeline as one Slurm job chain (afterok dependencies), in workshop order:
#   curation -> filter -> merge -> base-model -> optuna -> final fine-tuning -> export (GGUF) -> evaluation
#   (base-model builds the embedded stand-in after merge, whose val/test questions it must leave out;
#   it is skipped where models.base is another model, e.g. Qwen3.5-9B on Deucalion)
#   clinical (its own branch)
# Every stage is its folder's own run-*.sh, submitted from that folder as a participant would.
#
#   bash slurm/submit-pipeline.sh                 # submit what is not current, print ids and a follow-up command
#   bash slurm/submit-pipeline.sh --follow        # ... and wait, one line per stage change; exit 1 if a stage fails
#   bash slurm/submit-pipeline.sh --force         # resubmit every stage (each redoes its work)
#   bash slurm/submit-pipeline.sh --only curation,filter
#   bash slurm/submit-pipeline.sh -- --set filter.sample_size=200    # arguments after -- go to every stage
#
# Site: HEALTHAI_SITE=deucalion|local (default local). Accounts/partitions: the literal #SBATCH
# lines, overridden by SBATCH_ACCOUNT / SBATCH_PARTITION as usual.
set -euo pipefail
HEALTHAI_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HEALTHAI_REPO
source "$HEALTHAI_REPO/slurm/common.sh"

follow=0; force=0; only=""; stage_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --follow) follow=1 ;;
    --force) force=1 ;;
    --only) only="$2"; shift ;;
    --) shift; stage_args=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ $force = 1 ] && stage_args+=(--force)

command -v sbatch >/dev/null || { echo "error: sbatch not found: start a cluster (bash slurm/local-cluster.sh start) or run on a login node" >&2; exit 2; }

PROJECT_DIR="$(python -c 'from healthai.config import load_config; print(load_config().project_path())')"
mkdir -p "$PROJECT_DIR/logs"
chmod o-rwx "$PROJECT_DIR" "$PROJECT_DIR/logs"
plan="$(python -m healthai.pipeline plan)"

declare -A job_of=()
submitted=()
while IFS=$'\t' read -r name folder script needs status; do
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  if [ "$status" = unused ]; then
    echo "[pipeline] $name: not used here (models.base is not the embedded model), not submitted"
    continue
  fi
  if [ "$status" = current ] && [ $force = 0 ]; then
    echo "[pipeline] $name: current (manifest matches inputs, config and code), not submitted"
    continue
  fi
  deps=()
  IFS=',' read -ra needed <<< "$needs"
  for n in "${needed[@]}"; do
    if [ -n "${job_of[$n]:-}" ]; then deps+=("${job_of[$n]}"); fi
  done
  dep_arg=()
  if [ ${#deps[@]} -gt 0 ]; then dep_arg=(--dependency="afterok:$(IFS=:; echo "${deps[*]}")" --kill-on-invalid-dep=yes); fi
  job=$(cd "$HEALTHAI_REPO/$folder" && sbatch --parsable "${dep_arg[@]}" \
        -o "$PROJECT_DIR/logs/%x-%j.out" "$script" "${stage_args[@]}")
  job="${job%%;*}"
  job_of[$name]=$job
  submitted+=("$name=$job")
  echo "[pipeline] $name: job $job ($folder/$script${deps:+, after ${deps[*]}})"
done <<< "$plan"

if [ ${#submitted[@]} -eq 0 ]; then
  echo "[pipeline] everything is current; nothing submitted (--force redoes it)"
  exit 0
fi
ids=$(printf '%s\n' "${submitted[@]}" | cut -d= -f2 | paste -sd,)
echo "[pipeline] follow with: squeue -j $ids -o '%.8i %.24j %.10T %.10M %R'   (logs: $PROJECT_DIR/logs/)"
echo "[pipeline] on Deucalion, after the jobs end: sacct -j $ids --format=JobID,JobName%24,State,Elapsed,ExitCode"
if [ $follow = 1 ]; then
  python -m healthai.pipeline follow "${submitted[@]}"
fi
