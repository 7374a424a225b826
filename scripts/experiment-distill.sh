#!/usr/bin/env bash
# The README's distillation experiment: the main job's model (tiny, trained
# 300 steps on the default synthetic language) is the teacher; a student
# with half its width (model.n_embd 64) trains on the same token budget
# three ways: hard labels, forward KD at T=2 with T^2, and reverse KD. The
# table and the plot of held-out exact KL to the truth come from
# `coordinator compare` (compare.csv, compare_kl.png).
#
#   bash scripts/experiment-distill.sh [OUT_DIR]     (default runs/distill)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/distill}
bin=$(mktemp -d)/coordinator
go build -o "$bin" ./cmd/coordinator
teacher_dir=$out/teacher
if [ ! -f "$teacher_dir/summary.json" ]; then
  echo "== the teacher: the main job (coordinator sim, defaults) in $teacher_dir"
  "$bin" sim --run.dir "$teacher_dir"
fi
teacher=$(ls -d "$teacher_dir"/checkpoints/step-* | sort | tail -1)
echo "== the students (model.n_embd 64), teacher $teacher"
"$bin" compare --run.dir "$out/students" --model.n_embd 64 --run.eval_every 15 \
  --case "hard:loss.target=hard" \
  --case "forward-KD-T2:loss.teacher=$teacher;loss.temperature=2;loss.scale_t2=true" \
  --case "reverse-KD:loss.teacher=$teacher;loss.direction=reverse"
echo "== table: $out/students/compare.csv; plot: $out/students/compare_kl.png"
