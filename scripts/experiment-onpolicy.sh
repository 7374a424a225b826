#!/usr/bin/env bash
# The README's on-policy experiment: with synthetic data and no teacher,
# reverse KL to the truth (smoothed by 0.01) trained off-policy (on the data's
# windows) and on-policy (on half of each batch's windows the model first
# samples a continuation of the first 64 tokens, which the truth then
# scores), same token budget; every evaluation also measures the reverse KL
# to the truth on the model's own samples (run.sample_kl_windows).
#
#   bash scripts/experiment-onpolicy.sh [OUT_DIR]     (default runs/onpolicy)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/onpolicy}
go run ./cmd/coordinator compare --run.dir "$out" --steps 200 --run.eval_every 20 \
  --loss.direction reverse --loss.label_smoothing 0.01 --run.sample_kl_windows 32 \
  --case "off-policy:loss.on_policy=0" \
  --case "on-policy:loss.on_policy=0.5;loss.on_policy_prefix=64"
echo "== table: $out/compare.csv; plot: $out/compare_sample_kl.png"
