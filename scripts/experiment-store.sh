#!/usr/bin/env bash
# The README's teacher-store measurement: the distillation experiment's
# teacher (scripts/experiment-distill.sh) dumped as a float16 top-32 store of
# the default synthetic data, then the half-width student trained by forward
# KL (T = 1) from the live teacher and from the store, same budget.
#
#   bash scripts/experiment-store.sh [DISTILL_DIR] [OUT_DIR]
#   (defaults runs/distill, runs/store; run experiment-distill.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
distill=${1:-runs/distill}
out=${2:-runs/store}
teacher=$(ls -d "$distill"/teacher/checkpoints/step-* | sort | tail -1)
bin=$(mktemp -d)/coordinator
go build -o "$bin" ./cmd/coordinator
mkdir -p "$out"
store=$out/teacher-k32.f16
/usr/bin/time -f "teacher-dump: %e s, peak RSS %M KiB" \
  "$bin" teacher-dump --teacher "$teacher" --data synthetic --top-k 32 --dtype float16 --out "$store"
ls -l "$store"
"$bin" compare --run.dir "$out/students" --model.n_embd 64 --steps 300 \
  --case "live-teacher:loss.teacher=$teacher" \
  --case "store-k32-f16:loss.teacher_store=$store"
