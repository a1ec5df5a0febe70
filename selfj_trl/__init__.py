"""selfj-trl: Self-J judge reward models for TRL (label -> train -> use), published on the Hugging Face Hub.

Stages live in their own modules (``labeling``, ``trainer``, ``judge``, ``rewards``, ``best_of_n``, ``evaluation``,
``serve``, ``hub``); import from them directly. The most used names are re-exported lazily here so
``import selfj_trl`` stays cheap (no torch import until a name is touched).
"""

from __future__ import annotations

import importlib
from typing import Any


__version__ = "0.1.0"

_EXPORTS = {
    "SelfJudge": "selfj_trl.judge",
    "calibrate_threshold": "selfj_trl.judge",
    "judge_reward_funcs": "selfj_trl.rewards",
    "LabelingConfig": "selfj_trl.labeling",
    "label_dataset": "selfj_trl.labeling",
    "SelfJRewardConfig": "selfj_trl.trainer",
    "SelfJConfig": "selfj_trl.trainer",
    "SelfJRewardTrainer": "selfj_trl.trainer",
    "best_of_n": "selfj_trl.best_of_n",
    "build_dpo_pairs": "selfj_trl.best_of_n",
    "evaluate_judges": "selfj_trl.evaluation",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'selfj_trl' has no attribute {name!r}")
