#!/usr/bin/env bash
# Every benchmark, one after another; each prints its own figures (see bench/README.md for the latest table).
# Run from the repository root after `bash scripts/setup.sh`; the machine should be otherwise idle.
set -euo pipefail
cd "$(dirname "$0")/.."
. "${SELFJ_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "== labeling: one forward pass vs generate-then-read (Gemma 3 270M) =="; python bench/bench_labeling.py --policy gemma-3-270m --n 32
echo "== labeling: time vs instructions x samples (default policy, Gemma 3 270M) =="; python bench/bench_labeling.py --policy gemma-3-270m --scaling
echo "== labeling given answers: rows/hour and achieved FLOP/s vs a matmul peak (Gemma 3 270M) =="; python bench/bench_labeling.py --given --n 34
echo "== trainer step vs stock RewardTrainer =="; python bench/bench_trainer.py
echo "== SelfJudge.score vs per-example loop vs raw forward =="; python bench/bench_scoring.py
echo "== HTTP server under load (loopback) =="; python bench/bench_serve.py
echo "== quickstart: per-stage time and peak memory =="; python bench/bench_quickstart.py --output_dir outputs/bench_quickstart --fresh
