"""The answer/decline threshold of selective instruction following, calibrated on held-out scored rows.

Pure numbers (no model): pick the threshold on a dev set's judge scores, then let :meth:`SelfJudge.decide` /
:meth:`SelfJudge.follow` answer only when a new pair scores at or above it. Importable as
``selfj_trl.judge.calibrate_threshold`` too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .errors import SelfJInputError


def _finite_floats(values: Any, field_name: str) -> list[float]:
    if values is None or isinstance(values, str) or not hasattr(values, "__iter__"):
        raise SelfJInputError(f"`{field_name}` must be a list of numbers, got {type(values).__name__}.")
    numbers = []
    for i, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SelfJInputError(f"`{field_name}[{i}]` is not a number: {value!r}.") from None
        if not math.isfinite(number):
            raise SelfJInputError(f"`{field_name}[{i}]` is {number}; drop rows without a finite value.")
        numbers.append(number)
    return numbers


def calibrate_threshold(
    scores: Sequence[float],
    qualities: Sequence[float] | None = None,
    *,
    target_coverage: float | None = None,
    target_quality: float | None = None,
) -> float:
    """The answer/decline threshold, chosen on held-out scored data (answer when score >= threshold).

    * ``target_coverage`` (0 < c <= 1): the highest threshold that still answers at least that fraction of rows
      (ties at the threshold are all kept, so coverage can come out a little higher);
    * ``target_quality`` (with ``qualities``, e.g. GPT-4 grades): the lowest threshold whose answered rows have a
      mean quality >= the target, i.e. the most coverage that meets the quality bar.
    """
    if (target_coverage is None) == (target_quality is None):
        raise SelfJInputError("pass exactly one of `target_coverage` or `target_quality`.")
    values = _finite_floats(scores, "scores")
    if not values:
        raise SelfJInputError("`scores` is empty; calibrate on a held-out set of scored rows.")
    ranked = sorted(values, reverse=True)
    if target_coverage is not None:
        if (
            isinstance(target_coverage, bool)
            or not isinstance(target_coverage, (int, float))
            or not (0 < target_coverage <= 1)
        ):
            raise SelfJInputError(f"`target_coverage` must be in (0, 1], got {target_coverage!r}.")
        keep = max(1, math.ceil(target_coverage * len(ranked) - 1e-9))
        return ranked[keep - 1]

    if qualities is None:
        raise SelfJInputError("`target_quality` needs `qualities` (one quality grade per score).")
    quality = _finite_floats(qualities, "qualities")
    if len(quality) != len(values):
        raise SelfJInputError(
            f"`qualities` has {len(quality)} items but `scores` has {len(values)}; pass one per row."
        )
    if isinstance(target_quality, bool) or not isinstance(target_quality, (int, float)) or math.isnan(target_quality):
        raise SelfJInputError(f"`target_quality` must be a number, got {target_quality!r}.")
    pairs = sorted(zip(values, quality, strict=True), key=lambda p: p[0], reverse=True)
    best: float | None = None
    best_mean = -math.inf
    total = 0.0
    for k, (score, row_quality) in enumerate(pairs, start=1):
        total += row_quality
        if k < len(pairs) and pairs[k][0] == score:
            continue  # a threshold keeps every row tied with it: only cut after the last of a tie group
        mean = total / k
        best_mean = max(best_mean, mean)
        if mean >= target_quality:
            best = score  # later cuts are lower thresholds with more coverage
    if best is None:
        raise SelfJInputError(
            f"no threshold reaches mean quality {target_quality}; the best any threshold gives is {best_mean:.4g}. "
            "Lower `target_quality`."
        )
    return best
