#!/bin/bash
# Download the cluster models on a Deucalion LOGIN node (GPU nodes have no internet):
#   HEALTHAI_SITE=deucalion bash slurm/download-models.sh [Qwen/Qwen3.5-9B Qwen/Qwen3.5-2B]
# Files go to the folders named by the site profile (models.base, models.rewriter), then each
# folder is checked the way every stage checks it before loading (config, safetensors, tokenizer, template).
set -euo pipefail
HEALTHAI_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HEALTHAI_REPO
source "$HEALTHAI_REPO/slurm/common.sh"
unset HF_HUB_OFFLINE TRANSFORMERS_OFFLINE   # this one step is allowed to download
repos=("${@:-Qwen/Qwen3.5-9B Qwen/Qwen3.5-2B}")
read -ra repos <<< "${repos[*]}"
read -r base rewriter < <(python - <<'PY'
from healthai.config import load_config
cfg = load_config()
print(cfg.resolve(cfg.models.base), cfg.resolve(cfg.models.rewriter or cfg.models.base))
PY
)
targets=("$base" "$rewriter")
for i in "${!repos[@]}"; do
  dest="${targets[$i]:-$(dirname "$base")/$(basename "${repos[$i]}")}"
  echo "[download] ${repos[$i]} -> $dest (safetensors, config, tokenizer, chat template only)"
  mkdir -p "$dest"
  hf download "${repos[$i]}" --local-dir "$dest" \
    --include "*.safetensors" "*.json" "*.jinja" "merges.txt" "vocab.json" "*.model" "LICENSE" "README.md"
  export HF_HUB_OFFLINE=1
  python -m healthai.model.folder check "$dest"
  unset HF_HUB_OFFLINE
done
