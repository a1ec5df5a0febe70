"""A judge minus a baseline, both figures taken from the same resampled instructions.

Whether a judge beats response length is a question about a difference. Two scorers graded on the same
instructions share most of their sampling error, so their separate intervals overlap long before the interval of
their difference reaches zero; resampling whole instructions once and reading both scorers' figures from each
resample is what answers it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..eval_sets import PairwiseSet, PointwiseSet
from ..stats import cluster_bootstrap, finite_mask, finite_mean, group_index, per_group_correlations, spearman
from .metrics import preference_accuracy
from .set_metrics import best_of_k, honest_mask


#: The baseline every judge is compared with when it is evaluated beside it: the bar of the held-out sets.
COMPARED_WITH = "length"


def _figure(point: float, low: float, high: float) -> dict[str, Any]:
    return {"difference": float(point), "ci": [float(low), float(high)]}


def paired_pointwise(
    ds: PointwiseSet,
    scores: np.ndarray,
    other: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """``scores`` minus ``other`` on the honest rows: pooled Spearman, mean within-question Spearman and the best-of-k
    pick, each with a cluster-bootstrap interval over instructions. Rows or questions either scorer leaves unscored
    (a teacher view where a set has no reference) are left out for both, so both figures describe the same answers."""
    q = ds.quality
    honest = honest_mask(ds)
    names, group_rows = group_index(ds.groups)
    both = finite_mask(scores, other, q) & honest
    honest_groups = [g for g, k in zip(ds.groups, honest, strict=True) if k]

    def per_group(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        within = per_group_correlations(s[honest], q[honest], honest_groups)
        picks = (best_of_k(ds, s) or {}).get("per_group", {})
        return (
            np.array([within.get(g, (math.nan, math.nan))[1] for g in names], dtype=float),
            np.array([picks.get(g, (math.nan,))[0] for g in names], dtype=float),
        )

    (within_a, pick_a), (within_b, pick_b) = per_group(scores), per_group(other)

    def statistic(groups: np.ndarray) -> np.ndarray:
        rows = np.concatenate([group_rows[g] for g in groups])
        rows = rows[both[rows]]
        pooled = spearman(scores[rows], q[rows]) - spearman(other[rows], q[rows]) if len(rows) >= 3 else math.nan
        return np.array(
            [pooled, finite_mean(within_a[groups] - within_b[groups]), finite_mean(pick_a[groups] - pick_b[groups])]
        )

    point = statistic(np.arange(len(names)))
    low, high = cluster_bootstrap(statistic, len(names), n_resamples, confidence_level, seed)
    out = {key: _figure(point[i], low[i], high[i]) for i, key in enumerate(("spearman", "within_spearman", "pick"))}
    if not math.isfinite(point[2]):
        del out["pick"]
    return out


def paired_pairwise(
    ds: PairwiseSet,
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy of scorer ``a`` minus that of scorer ``b`` (each a pair of score arrays for answers A and B) on the
    non-tie pairs both scored, over all pairs and over each group of subsets the set reports together, resampling
    pairs."""
    labels, subsets = np.array(ds.labels), np.array(ds.subsets)
    a_wins = labels == "A"
    usable = (labels != "tie") & finite_mask(*a, *b)
    groups = {
        "all": usable,
        **{name: usable & np.isin(subsets, members) for name, members in ds.subset_totals.items()},
    }
    out: dict[str, Any] = {}
    for name, mask in groups.items():
        rows = np.flatnonzero(mask)
        if len(rows) < 2:
            continue

        def statistic(sample: np.ndarray, rows: np.ndarray = rows) -> np.ndarray:
            r = rows[sample]
            return np.array(
                [
                    preference_accuracy(a[0][r], a[1][r], a_wins[r])["accuracy"]
                    - preference_accuracy(b[0][r], b[1][r], a_wins[r])["accuracy"]
                ]
            )

        point = statistic(np.arange(len(rows)))[0]
        low, high = cluster_bootstrap(statistic, len(rows), n_resamples, confidence_level, seed)
        out[name] = _figure(point, low[0], high[0])
    return out
