"""Stage 1: Self-J labels without human annotation.

For every instruction with a gold reference, the policy samples responses (:mod:`selfj_trl.generation`), or the
data already holds them (``response_column``: e.g. other models' answers, the responses a judge will be asked to
score), or both; the policy then rates each one against the reference with a registered self-evaluation signal (:mod:`selfj_trl.signals`; the Self-J
``digits`` by default: the expected value of the ten digit tokens after the judging prompt, from one forward pass).
A sentence-embedding model adds the cosine of response and reference, and the two are combined into the label
(:mod:`selfj_trl.labels`). The policy's reference-free digit rating is recorded too: it is the baseline the trained
judge has to beat.

Modules: :mod:`.config` (settings and their defaults), :mod:`.rows` (input layouts), :mod:`.scoring` (one chunk),
:mod:`.shards` (resume), :mod:`.fit` (the fitted combination), :mod:`.pipeline` (end to end, the card, ``main``).
"""

from ..labels import COMBINATIONS, LABEL_MAX, combine_labels, fit_combination, label_formula
from .config import (
    LOW_DIGIT_MASS,
    SELFJ_DEFAULTS,
    LabelingConfig,
    digit_mass,
    measured_quality,
    measured_settings,
    resolve_defaults,
    self_eval_detail,
)
from .fit import fitted_weights, load_fit_rows, score_fit_rows
from .pipeline import card_info, finalize, label_dataset, main, make_parser, save_labeled
from .rows import load_alpaca_train_pool, load_source, prepare_rows
from .scoring import label_chunk, sampling_settings, score_signals


__all__ = [
    "COMBINATIONS",
    "LABEL_MAX",
    "LOW_DIGIT_MASS",
    "SELFJ_DEFAULTS",
    "LabelingConfig",
    "card_info",
    "combine_labels",
    "digit_mass",
    "finalize",
    "fit_combination",
    "fitted_weights",
    "label_chunk",
    "label_dataset",
    "label_formula",
    "load_alpaca_train_pool",
    "load_fit_rows",
    "load_source",
    "main",
    "make_parser",
    "measured_quality",
    "measured_settings",
    "prepare_rows",
    "resolve_defaults",
    "sampling_settings",
    "save_labeled",
    "score_fit_rows",
    "score_signals",
    "self_eval_detail",
]
