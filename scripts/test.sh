#!/usr/bin/env bash
# The README's test command (after set-up): the whole suite, slow real-model tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
. "${SELFJ_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python -m pytest -q -p no:cacheprovider "$@"
