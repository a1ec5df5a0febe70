#!/usr/bin/env bash
# Reproduces the README's judge results, start to finish, unattended:
#   1. label AlpacaEval's TRAIN pool (the 17 models' answers to the 317 train instructions, labeled as given
#      responses by the default policy's self-evaluation against the reference plus the MiniLM cosine);
#   2. choose the distillation setting by cross-validation over train instructions (recipes/results/distill_cv.py:
#      GPT-4's train-split grades choose; the labels never read them; no test row is touched);
#   3. train the judges on every label: the recipe's default (the chosen setting: pairwise loss, no distillation)
#      and, beside it, the paper's setting (pointwise loss, distill_weight 2.0);
#   4. beside them, judges on policy-only labels: the policy's own 2 samples for each train instruction, labeled
#      the same way, no given answers (what a loop without an answer pool makes), trained with the recipe and with
#      the paper's setting;
#   5. evaluate all four, student and teacher views, beside length, cosine and random on every row of the
#      held-out sets.
#   bash recipes/results/reproduce_pool.sh       (from the repository root, after scripts/setup.sh)
# N_POOL=<n> / N_POLICY=<n> label the first n train instructions only (given answers / policy samples);
# EVAL_N / PAIRS_N slice the evaluation for a smoke run;
# CV_SETTINGS="<names>" picks the cross-validated settings (recipes/results/distill_cv.py SETTINGS).
# Resumable: labeling keeps finished shards, the cross-validation keeps finished judges and scores, training skips a
# finished judge, evaluation keeps its score cache; a killed run is re-run as is.
set -euo pipefail
cd "$(dirname "$0")/../.."
. "${SELFJ_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-outputs/results}"
N_POOL="${N_POOL:-}"; N_POLICY="${N_POLICY:-}"; EVAL_N="${EVAL_N:-}"; PAIRS_N="${PAIRS_N:-}"
read -r -a CV_SETTINGS <<< "${CV_SETTINGS:-distill0 distill2 pairwise distill2_warmup distill1 distill0.5 distill0_student1 pairwise_student1 pairwise_distill1 pairwise_distill2_warmup pairwise_pdistill1}"
JUDGE_RECIPE=recipes/all-minilm-l6-v2/train/config_judge.yaml
JUDGE_FLAGS=(--max_length 384 --num_train_epochs 2)  # as measured (recipes/all-minilm-l6-v2/README.md)
# The paper's setting: pointwise loss, distillation 2.0, two epochs of 16 rows a step.
PAPER_FLAGS=(--loss_type pointwise --pairs_per_row 0 --distill_weight 2.0 --per_device_train_batch_size 16)

# --num_samples 0: the given answers alone, as the README's figures were measured; drop it for the recipe's mix
# with 2 policy samples per instruction.
selfj-trl label --config recipes/gemma-3-270m/label/config_alpaca_train_pool.yaml --num_samples 0 \
    ${N_POOL:+--max_instructions "$N_POOL"} --output_dir "$OUT/labeled"
python recipes/results/distill_cv.py --labeled "$OUT/labeled" --out "$OUT/distill_cv" \
    --settings "${CV_SETTINGS[@]}" --train_flags "${JUDGE_FLAGS[*]}"
train() {  # train DIR DATA [flags]: skipped when DIR already holds a finished judge
  local dir="$1" data="$2"; shift 2
  [ -f "$dir/selfj_complete.json" ] || selfj-trl train --config "$JUDGE_RECIPE" --dataset_name "$data" \
      --output_dir "$dir" "${JUDGE_FLAGS[@]}" "$@"
}
# The recipe: pairwise, one pair per labeled row, 8 pairs a step (the forwards of two pointwise epochs).
train "$OUT/judge_default" "$OUT/labeled"
# The paper's setting beside it.
train "$OUT/judge_paper" "$OUT/labeled" "${PAPER_FLAGS[@]}"
# Policy-only labels, made as the given answers' are: max_length 512, no reference-free diagnostic column.
selfj-trl label --config recipes/gemma-3-270m/label/config_alpaca_train.yaml --max_length 512 --noref_baseline false \
    ${N_POLICY:+--max_instructions "$N_POLICY"} --output_dir "$OUT/labeled_policy"
train "$OUT/judge_policy_only" "$OUT/labeled_policy"
# ... and the paper's setting on them (its own method: policy samples, pointwise loss, distillation 2.0).
train "$OUT/judge_policy_paper" "$OUT/labeled_policy" "${PAPER_FLAGS[@]}"
# Each judge twice: its student view (what TRL feeds a reward model) and its teacher view (PATH:teacher, the
# reference shown: the label's ceiling for this judge). The human pairs carry no reference: student views only.
JUDGES=("$OUT/judge_default" "$OUT/judge_paper" "$OUT/judge_policy_only" "$OUT/judge_policy_paper")
selfj-trl evaluate --judges "${JUDGES[@]}" "${JUDGES[@]/%/:teacher}" --baselines length random cosine \
    --eval_sets alpaca_eval mtbench prometheus ${EVAL_N:+--max_instructions "$EVAL_N"} \
    --output_dir "$OUT/eval" --batch_size 32
selfj-trl evaluate --judges "${JUDGES[@]}" --baselines length random --eval_sets human_pairwise \
    ${PAIRS_N:+--max_instructions "$PAIRS_N"} --output_dir "$OUT/eval_pairwise" --batch_size 32
echo "reports: $OUT/distill_cv/results.md $OUT/eval/report.md $OUT/eval_pairwise/report.md"
