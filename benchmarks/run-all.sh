#!/bin/bash
# `make bench`: rerun every benchmark in order (cheap first), then regenerate benchmarks/README.md's
# table. `make bench-quick` (HEALTHAI_BENCH_QUICK=1): reduced sizes, results in results/quick/
# (git-ignored), a smoke check of a few minutes. Each line says which benchmark, n of N, how long.
set -euo pipefail
cd "$(dirname "$0")"
export HEALTHAI_BENCH_QUICK="${HEALTHAI_BENCH_QUICK:-0}"
quick=$([ "$HEALTHAI_BENCH_QUICK" != 0 ] && echo 1 || echo 0)
py=../.venv/bin/python
# name | needs-demo (trains on make demo's splits) | quick arguments ("skip": full runs only)
plan=(
  "merge_near_dups.py||"
  "triage_detector.py||"
  "clinical_benchmark.py||--repeat 1"
  "curation_benchmark.py||--records 5000"
  "inference_benchmark.py||--prompts 4 --max-new-tokens 16 --stream-repeats 1"
  "rewrite_benchmark.py||--n 4 --max-new-tokens 16 --repeat 1"
  "finetune_benchmark.py||--n 16 --steps 2 --batch 4 --max-length 384"
  "hpo_benchmark.py|needs-demo|--n-trials 2"
  "export_benchmark.py|needs-demo|--quick"
  "urgent_levers.py|needs-demo|skip"
)
# The search and the lever study train on the demo's splits and base (make demo writes them).
project="${HEALTHAI_PROJECT_DIR:-$(cd .. && pwd)/runs}"
have_demo=$([ -f "$project/3.merge/train.jsonl" ] && [ -d "$project/models/embedded-base" ] && echo 1 || echo 0)
total=${#plan[@]}; i=0; t_all=$SECONDS
for entry in "${plan[@]}"; do
  i=$((i + 1))
  IFS='|' read -r script needs quick_args <<<"$entry"
  args=""; [ "$quick" = 1 ] && args=$quick_args
  if [ "$needs" = needs-demo ] && [ "$have_demo" = 0 ]; then
    if [ "$quick" = 1 ]; then echo "[bench $i/$total] $script: skipped (no $project/3.merge splits: run make demo first)"; continue; fi
    echo "[bench] error: $script trains on the demo's splits and base, not found under $project: run make demo first" >&2
    exit 1
  fi
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
