"""The label family: how the self-evaluation (0-9) and the cosine ([-1, 1]) become one 0-9 label.

``weighted_mean`` is the Self-J method; ``rank_mean`` and ``fitted`` are the variants the label-quality report
measures beside it. The labeler and the report both make their labels here, so they can never disagree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import SelfJInputError


#: The label scale is 0..LABEL_MAX (the ten digits a judging prompt asks for).
LABEL_MAX = 9.0
COMBINATIONS = ("weighted_mean", "rank_mean", "fitted")


def rank01(values: list[float]) -> list[float]:
    """Each value's average rank, scaled to [0, 1] (0.5 for a single value)."""
    from scipy.stats import rankdata

    if len(values) < 2:
        return [0.5] * len(values)
    ranks = rankdata(values, method="average")
    return [(r - 1) / (len(values) - 1) for r in ranks]


def combine_labels(
    self_eval: list[float],
    cosine: list[float],
    *,
    cosine_weight: float = 0.5,
    combination: str = "weighted_mean",
    weights: tuple[float, float, float] | None = None,
) -> list[float]:
    """The Self-J label on the 0-9 scale from the self-evaluation (0-9) and the cosine ([-1, 1]).

    * ``weighted_mean`` (default): 9 * ((1 - w) * s / 9 + w * max(cos, 0)).
    * ``rank_mean``: the same mean over each signal's rank in [0, 1]; immune to the two signals' different spreads.
    * ``fitted``: ``intercept + a * s/9 + b * max(cos, 0)`` with ``weights=(intercept, a, b)`` fitted on a labelled dev
      slice (see :func:`fit_combination`), clipped to [0, 9].
    """
    if len(self_eval) != len(cosine):
        raise SelfJInputError("self_eval and cosine must have the same length.")
    for v in [*self_eval, *cosine]:
        if not math.isfinite(v):
            raise SelfJInputError("a self-evaluation or cosine value is NaN/inf; re-run labeling on those rows.")
    w = cosine_weight
    s01 = [s / LABEL_MAX for s in self_eval]
    c01 = [max(c, 0.0) for c in cosine]
    if combination == "weighted_mean":
        return [LABEL_MAX * ((1 - w) * s + w * c) for s, c in zip(s01, c01, strict=True)]
    if combination == "rank_mean":
        return [LABEL_MAX * ((1 - w) * s + w * c) for s, c in zip(rank01(s01), rank01(c01), strict=True)]
    if combination == "fitted":
        if weights is None:
            raise SelfJInputError("combination=fitted needs weights fitted on a dev slice (--fit_dataset).")
        b0, b1, b2 = weights
        return [min(max(LABEL_MAX * (b0 + b1 * s + b2 * c), 0.0), LABEL_MAX) for s, c in zip(s01, c01, strict=True)]
    raise SelfJInputError(f"unknown combination {combination!r}; use one of {COMBINATIONS}.")


def can_fit_combination(quality: list[float]) -> bool:
    """Whether :func:`fit_combination` can fit on these quality values (at least 3 rows, not all equal)."""
    q = np.asarray(quality, dtype=float)
    return len(q) >= 3 and bool(np.ptp(q) > 0)


def fit_combination(self_eval: list[float], cosine: list[float], quality: list[float]) -> tuple[float, float, float]:
    """Least-squares weights (intercept, self-eval, cosine) predicting a dev slice's quality scaled to [0, 1]."""
    if not can_fit_combination(quality):
        raise SelfJInputError("fitting the label combination needs at least 3 dev rows with varying quality.")
    q = np.asarray(quality, dtype=float)
    q01 = (q - q.min()) / np.ptp(q)
    x = np.column_stack([np.ones(len(q)), np.asarray(self_eval) / LABEL_MAX, np.maximum(np.asarray(cosine), 0.0)])
    coef, *_ = np.linalg.lstsq(x, q01, rcond=None)
    return float(coef[0]), float(coef[1]), float(coef[2])


def label_formula(config: Any, weights: tuple[float, float, float] | None = None) -> str:
    """The label's formula as the dataset card prints it (``config``: anything with ``combination`` and
    ``cosine_weight``, e.g. a LabelingConfig)."""
    w = config.cosine_weight
    if config.combination == "weighted_mean":
        return f"label = 9 * ({1 - w:g} * self_eval_score / 9 + {w:g} * max(cosine_similarity, 0))"
    if config.combination == "rank_mean":
        return (
            f"label = 9 * ({1 - w:g} * rank01(self_eval_score) + {w:g} * rank01(max(cosine_similarity, 0))), "
            "rank01 = rank over the whole dataset scaled to [0, 1]"
        )
    if weights is not None:
        b0, b1, b2 = weights
        return (
            f"label = clip(9 * ({b0:+.4f} {b1:+.4f} * self_eval_score / 9 {b2:+.4f} * max(cosine_similarity, 0)), "
            "0, 9), weights fitted on a labelled dev slice"
        )
    return (
        "label = clip(9 * (b0 + b1 * self_eval_score / 9 + b2 * max(cosine_similarity, 0)), 0, 9), "
        "weights fitted on a dev slice"
    )
