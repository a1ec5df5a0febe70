"""Correlations and their intervals, in one place for the labeling report and the held-out evaluation.

Answers to one instruction share its difficulty, so rows are not independent: every interval here resamples whole
groups (a cluster bootstrap through ``scipy.stats.bootstrap``), which is what keeps the intervals honest.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats


def finite_mask(*arrays: Any) -> np.ndarray:
    """Rows where every array holds a finite number."""
    mask = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        mask &= np.isfinite(np.asarray(a, dtype=float))
    return mask


def finite_mean(values: np.ndarray) -> float:
    """Mean of the finite entries (NaN when there is none): per-question figures undefined for some questions."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def quietly(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with scipy's constant-input warnings off: a NaN is the answer we report for those."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            return fn()


def _paired_statistic(test: Callable[..., Any], x: Any, y: Any) -> float:
    """``test(x, y).statistic`` over rows where both are finite; NaN when undefined (fewer than 3 rows, a constant
    side), where scipy would warn."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    m = finite_mask(x, y)
    x, y = x[m], y[m]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(quietly(lambda: test(x, y).statistic))


def spearman(x: Any, y: Any) -> float:
    """Spearman's rho over rows where both are finite; NaN when undefined."""
    return _paired_statistic(stats.spearmanr, x, y)


def pearson(x: Any, y: Any) -> float:
    """Pearson's r over rows where both are finite; NaN when undefined."""
    return _paired_statistic(stats.pearsonr, x, y)


def correlations(scores: Sequence[float], quality: Sequence[float], kendall: bool = True) -> dict[str, float]:
    """Pearson, Spearman and (optionally) Kendall's tau-b of score vs quality over rows where both are finite."""
    s, q = np.asarray(scores, float), np.asarray(quality, float)
    m = finite_mask(s, q)
    s, q = s[m], q[m]
    out: dict[str, float] = {"n": int(m.sum())}
    if len(s) < 3:
        return out | {"pearson": math.nan, "spearman": math.nan, "kendall": math.nan}
    out["pearson"] = float(quietly(lambda: stats.pearsonr(s, q).statistic))
    out["spearman"] = float(quietly(lambda: stats.spearmanr(s, q).statistic))
    if kendall:
        out["kendall"] = float(quietly(lambda: stats.kendalltau(s, q).statistic))
    return out


def group_index(groups: Sequence[Any]) -> tuple[list[Any], list[np.ndarray]]:
    """The distinct groups in order of first appearance, and the row indices of each."""
    index: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    names = list(index)
    return names, [np.array(index[g]) for g in names]


def per_group_correlations(
    scores: Any, quality: Any, groups: Sequence[Any], min_size: int = 3
) -> dict[Any, tuple[float, float]]:
    """(Pearson, Spearman) inside each group with at least ``min_size`` finite rows."""
    s, q = np.asarray(scores, float), np.asarray(quality, float)
    out: dict[Any, tuple[float, float]] = {}
    for g, rows in zip(*group_index(groups), strict=True):
        rows = rows[finite_mask(s[rows], q[rows])]
        if len(rows) < min_size:
            continue
        out[g] = (pearson(s[rows], q[rows]), spearman(s[rows], q[rows]))
    return out


def mean_within_group_spearman(scores: Any, quality: Any, groups: Sequence[Any]) -> float:
    """Mean Spearman among the answers to the same instruction (what best-of-n, GRPO advantages and DPO pairs need);
    groups where it is undefined are left out."""
    values = [sp for _, sp in per_group_correlations(scores, quality, groups).values() if math.isfinite(sp)]
    return float(np.mean(values)) if values else math.nan


def cluster_bootstrap(
    statistic: Callable[[np.ndarray], Any],
    n_groups: int,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of a vector statistic by resampling group indices with ``scipy.stats.bootstrap``.

    ``statistic`` maps an array of group indices (with repeats) to a vector; a resample where an entry is undefined
    (NaN) is left out of that entry's percentiles, so one degenerate resample cannot blank an interval. Entries
    defined in fewer than 10 resamples get NaN bounds.
    """
    probe = np.atleast_1d(np.asarray(statistic(np.arange(n_groups)), dtype=float))
    nan = np.full(len(probe), math.nan)
    if n_groups < 2 or n_resamples <= 0:
        return nan, nan.copy()
    draws: list[np.ndarray] = []

    def collect(idx: np.ndarray) -> float:
        draws.append(np.atleast_1d(np.asarray(statistic(np.asarray(idx, dtype=int)), dtype=float)))
        return 0.0

    # scipy draws the resamples (its RNG, its resampling scheme); the NaN-aware percentiles are taken here because
    # scipy's own percentile step turns a single undefined resample into a NaN interval.
    quietly(
        lambda: stats.bootstrap(
            (np.arange(n_groups),),
            collect,
            vectorized=False,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    )
    values = np.vstack(draws[-n_resamples:])
    alpha = (1 - confidence_level) / 2
    low, high = nan.copy(), nan.copy()
    for j in range(values.shape[1]):
        col = values[:, j][np.isfinite(values[:, j])]
        if len(col) >= 10:
            low[j], high[j] = np.quantile(col, [alpha, 1 - alpha])
    return low, high
