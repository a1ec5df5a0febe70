"""Best-of-n evaluation of a policy with a Self-J judge: how much does picking the judge's favourite of n help?

Samples n answers per prompt, scores them all, and reports the mean judge score of one sample (``first_score``, the
"before") against the best of n (the "after"); the full table (all answers and scores) is saved with
``save_to_disk`` plus JSONL, ready for ``build_dpo_pairs``. Under ``accelerate launch`` the prompts are split across
processes. By hand:

    accelerate launch recipes/best_of_n/best_of_n.py --config recipes/best_of_n/best_of_n.yaml
    python recipes/best_of_n/best_of_n.py --config recipes/best_of_n/best_of_n.yaml --policy gemma-3-270m

Same options as ``selfj-trl best-of-n`` (``selfj_trl.best_of_n.BestOfNConfig``).
"""

from __future__ import annotations

import sys

from selfj_trl.best_of_n import main
from selfj_trl.cli import run_main


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="best_of_n"))
