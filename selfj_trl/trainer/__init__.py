"""Stage 2: train a Self-J judge with :class:`SelfJRewardTrainer`, a thin subclass of TRL's ``RewardTrainer``.

Every labeled row is seen twice by the same model, in ONE forward pass per step:

* the **student view** (instruction + response): byte-for-byte what TRL's online trainers feed a reward model, so
  the published judge scores exactly what GRPO / RLOO / online DPO will hand it;
* the **teacher view** (the same, plus the gold reference in a system / preamble turn).

Where things live: ``config`` (:class:`SelfJRewardConfig`, :class:`SelfJScriptArguments`), ``views`` (validation,
tokenized views, pairs, the collator), ``reward_trainer`` (the loss and the trainer), ``publish`` (``config.selfj``,
merging LoRA, the card) and ``script`` (:func:`train_judge`, ``main``).
"""

from .config import JUDGE_FORMATS, LOSS_TYPES, SelfJConfig, SelfJRewardConfig, SelfJScriptArguments
from .publish import SELFJ_JSON
from .reward_trainer import SelfJRewardTrainer, distill_weight_at, selfj_loss_terms
from .script import main, make_parser, train_judge
from .views import SelfJDataCollator, build_pairs, validate_labeled_dataset


__all__ = [
    "JUDGE_FORMATS",
    "LOSS_TYPES",
    "SELFJ_JSON",
    "SelfJConfig",
    "SelfJDataCollator",
    "SelfJRewardConfig",
    "SelfJRewardTrainer",
    "SelfJScriptArguments",
    "build_pairs",
    "distill_weight_at",
    "main",
    "make_parser",
    "selfj_loss_terms",
    "train_judge",
    "validate_labeled_dataset",
]
