#!/usr/bin/env python
"""Publish a Self-J judge folder (and, optionally, its labeled dataset folder) to the Hugging Face Hub.

    python push_to_hub.py --judge_dir outputs/judge --judge_repo me/selfj-judge \
        --dataset_dir outputs/labeled/alpaca_train --dataset_repo me/selfj-labels [--private] [--revision dev] [--dry_run]

The same command as ``selfj-trl push`` (:mod:`selfj_trl.push`): a fixable mistake is one line and exit code 2, a
failed upload one line and exit code 1; local folders are never changed.
"""

from __future__ import annotations

import sys

from selfj_trl.cli import run_command


if __name__ == "__main__":
    sys.exit(run_command("push", sys.argv[1:], prog="push_to_hub.py"))
