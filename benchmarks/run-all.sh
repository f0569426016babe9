#!/bin/bash
# `make bench`: rerun every benchmark in order (cheap first), then regenerate benchmarks/README.md's
# table. `make bench-quick` (HEALTHAI_BENCH_QUICK=1): reduced sizes, results in results/quick/
# (git-ignored), a smoke check of a few minutes. Each line says which benchmark, n of N, how long.
set -euo pipefail
cd "$(dirname "$0")"
export HEALTHAI_BENCH_QUICK="${HEALTHAI_BENCH_QUICK:-0}"
quick=$([ "$HEALTHAI_BENCH_QUICK" != 0 ] && echo 1 || echo 0)
py=../.venv/bin/python
# name | full-size arguments | quick arguments ("skip": full runs only)
plan=(
  "merge_near_dups.py||"
  "triage_detector.py||"
  "clinical_benchmark.py||--repeat 1"
  "curation_benchmark.py||--records 5000"
  "inference_benchmark.py||--prompts 4 --max-new-tokens 16 --stream-repeats 1"
  "rewrite_benchmark.py||--n 4 --max-new-tokens 16 --repeat 1"
  "finetune_benchmark.py||--n 16 --steps 2 --batch 4 --max-length 384"
  "hpo_benchmark.py||--n-trials 2"
  "urgent_levers.py||skip"
)
total=${#plan[@]}; i=0; t_all=$SECONDS
for entry in "${plan[@]}"; do
  i=$((i + 1))
  IFS='|' read -r script full quick_args <<<"$entry"
  args=$full; [ "$quick" = 1 ] && args=$quick_args
  if [ "$args" = skip ]; then echo "[bench $i/$total] $script: skipped in quick mode"; continue; fi
  echo "[bench $i/$total] $script $args"
  t0=$SECONDS
  # shellcheck disable=SC2086
  $py "$script" $args > "${TMPDIR:-/tmp}/bench-${script%.py}.log" 2>&1 \
    || { echo "[bench] $script FAILED; its log: ${TMPDIR:-/tmp}/bench-${script%.py}.log" >&2; tail -20 "${TMPDIR:-/tmp}/bench-${script%.py}.log" >&2; exit 1; }
  echo "[bench $i/$total] $script done in $((SECONDS - t0)) s"
done
if [ "$quick" = 0 ]; then $py table.py; fi
echo "[bench] all $total benchmarks in $((SECONDS - t_all)) s$([ "$quick" = 1 ] && echo ' (quick: results in benchmarks/results/quick/, table unchanged)')"
