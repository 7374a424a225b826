#!/usr/bin/env bash
# The README's GPT-2-tokenizer run: the repository's own docs (README.md and
# docs/*.md, concatenated) as text, tokenized with GPT-2's BPE (vocabulary
# 50257), a tiny model trained on them in simulation mode, its held-out bits
# per byte, and a sample.
#
#   bash scripts/experiment-gpt2.sh [OUT_DIR] [STEPS]   (default runs/gpt2-docs 60)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpt2-docs}
steps=${2:-60}
bin=$(mktemp -d)/coordinator
go build -o "$bin" ./cmd/coordinator
mkdir -p "$out"
cat README.md docs/*.md > "$out/corpus.txt"
"$bin" sim --run.dir "$out/run" --data.source "text:$out/corpus.txt" --data.tokenizer gpt2 \
  --data.val_fraction 0.1 --loss.target hard --train.steps "$steps" --run.eval_every 20
ckpt=$(ls -d "$out"/run/checkpoints/step-* | sort | tail -1)
"$bin" sample --checkpoint "$ckpt" --prompt "The coordinator" --tokens 60 --seed 1
