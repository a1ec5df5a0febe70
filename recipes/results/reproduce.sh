#!/usr/bin/env bash
# Reproduces the README's Results: label the AlpacaEval train split + Self-Instruct seed tasks with the offline
# policy, train two MiniLM judges (with and without the self-distillation term), and evaluate both beside the
# baselines on the held-out sets. Never touches the test split for anything but evaluation.
#   bash recipes/results/reproduce.sh            (from the repository root, after scripts/setup.sh)
# Sizes are environment variables so a quick run is one line: N_ALPACA=20 N_SEED=10 EVAL_N=20 bash ...
# The evaluation defaults to EVERY row of every held-out set (EVAL_N unset); EVAL_N / PAIRS_N slice it for a smoke run.
# Resumable: labeling keeps finished shards and evaluation keeps its score cache, so a killed run is re-run as is.
set -euo pipefail
cd "$(dirname "$0")/../.."
. "${SELFJ_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-outputs/results}"
POLICY="${POLICY:-gemma-3-270m}"  # the default policy; POLICY=smollm2-135m-instruct for the chat one, or any model
case "$POLICY" in smollm2-135m-instruct) RECIPE=smollm2-135m-instruct ;; *) RECIPE=gemma-3-270m ;; esac  # whose label recipes
N_ALPACA="${N_ALPACA:-64}"; N_SEED="${N_SEED:-32}"; EVAL_N="${EVAL_N:-}"; PAIRS_N="${PAIRS_N:-}"

selfj-trl label --config recipes/$RECIPE/label/config_alpaca_train.yaml --policy "$POLICY" \
    --max_instructions "$N_ALPACA" --output_dir "$OUT/labeled_alpaca"
selfj-trl label --config recipes/$RECIPE/label/config_seed_tasks.yaml --policy "$POLICY" \
    --max_instructions "$N_SEED" --output_dir "$OUT/labeled_seed"
python - "$OUT" <<'PY'
import sys
from datasets import concatenate_datasets, load_from_disk
out = sys.argv[1]
alpaca, seed = load_from_disk(f"{out}/labeled_alpaca"), load_from_disk(f"{out}/labeled_seed")
offset = max(alpaca["instruction_id"]) + 1  # keep instruction ids (the pairwise grouping) distinct across sources
parts = [alpaca, seed.map(lambda r: {"instruction_id": r["instruction_id"] + offset})]
concatenate_datasets(parts).save_to_disk(f"{out}/labeled")
PY
for DW in 2.0 0.0; do
  selfj-trl train --config recipes/all-minilm-l6-v2/train/config_judge.yaml --dataset_name "$OUT/labeled" \
      --distill_weight "$DW" --output_dir "$OUT/judge_minilm_distill$DW"
done
# Each judge twice: its student view (what TRL feeds a reward model) and its teacher view (PATH:teacher, the
# reference shown: the label's ceiling for this judge), beside the baselines, on the full held-out sets.
# The human pairs carry no reference, so only the student views are scored there.
STUDENTS=("$OUT/judge_minilm_distill2.0" "$OUT/judge_minilm_distill0.0")
selfj-trl evaluate --judges "${STUDENTS[@]}" "${STUDENTS[@]/%/:teacher}" --baselines length random cosine \
    --eval_sets alpaca_eval mtbench prometheus ${EVAL_N:+--max_instructions "$EVAL_N"} \
    --output_dir "$OUT/eval" --batch_size 32
selfj-trl evaluate --judges "${STUDENTS[@]}" --baselines length random --eval_sets human_pairwise \
    ${PAIRS_N:+--max_instructions "$PAIRS_N"} --output_dir "$OUT/eval_pairwise" --batch_size 32
echo "reports: $OUT/eval/report.md $OUT/eval_pairwise/report.md"
