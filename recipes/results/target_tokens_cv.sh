#!/bin/bash
# How many reference tokens the likelihood label scores (64 / 128 / 256), and the label in bf16 against fp32:
# `selfj-trl signal` on 32 AlpacaEval TRAIN instructions x 17 models (544 rows, seed 0), then row-by-row comparisons
# with paired cluster-bootstrap intervals. Resumable (a finished run leaves a `done` marker). Run from the repo root.
set -euo pipefail
out=${1:-outputs/cv}
mkdir -p "$out"
config="$out/components.yaml"
printf 'digit_variants: []\nlikelihood_methods: [reference_gain]\n' > "$config"
for spec in "bfloat16 256" "bfloat16 64" "bfloat16 128" "float32 256"; do
  set -- $spec
  dir="$out/${1}_t${2}"
  [ -f "$dir/done" ] && continue
  selfj-trl signal --config "$config" --n_instructions 32 --max_length 512 --max_target_tokens "$2" \
    --dtype "$1" --num_threads 2 --output_dir "$dir" > "$dir.log" 2>&1
  touch "$dir/done"
done
python bench/label_agreement.py "$out/bfloat16_t256" "$out/bfloat16_t128"
python bench/label_agreement.py "$out/bfloat16_t256" "$out/bfloat16_t64"
python bench/label_agreement.py "$out/float32_t256" "$out/bfloat16_t256"
