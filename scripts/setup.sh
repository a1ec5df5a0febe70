#!/usr/bin/env bash
# Set up a virtual environment with everything selfj-trl needs, offline models included.
# torch is installed FIRST and pinned (2.13.0, CPU build): a plain `torch` requirement can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SELFJ_VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[offline,dev]"
echo "[setup] environment ready in $VENV ($(python -c 'import torch, trl, transformers; print(f"torch {torch.__version__}, trl {trl.__version__}, transformers {transformers.__version__}")'))"
