"""Every metric of one scorer on one held-out set, with cluster-bootstrap intervals for the headline figures.

What is particular to a set comes from the set object: which models are adversarial (:func:`honest_mask`), the
reference answers and the verdict threshold against them, the leaderboard, and the subsets reported together.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..eval_sets import PairwiseSet, PointwiseSet
from ..stats import finite_mask, group_index, pearson, spearman
from .metrics import (
    COVERAGES,
    agreement_with_reference,
    bootstrap_ci,
    correlations,
    curve_summary,
    gaming_check,
    per_model_means,
    preference_accuracy,
    ranking_agreement,
    selective_curve,
    within_group_correlations,
)


def honest_mask(ds: PointwiseSet) -> np.ndarray:
    """Rows whose external quality label can be trusted: all, except the answers of the set's adversarial models.

    On AlpacaEval, ``NullModel`` and ``gpt4_gamed`` were built to fool the GPT-4 annotator, so their GPT-4 labels are
    the gamed ones (NullModel's constant junk wins 77% of the time). Correlating a judge with those labels would
    reward it for being fooled the same way; the gaming check reports those entries instead.
    """
    if not ds.adversarial:
        return np.ones(len(ds), dtype=bool)
    return np.array([m not in ds.adversarial for m in ds.models], dtype=bool)


def _quality_metrics(ds: PointwiseSet, scores: np.ndarray, reference_scores: np.ndarray | None, rows: np.ndarray,
                     tiebreak: np.ndarray) -> dict[str, Any]:
    """Correlation, within-question correlation, selective curve and agreement with the annotator on ``rows``."""
    q, s = ds.quality[rows], scores[rows]
    valid = finite_mask(s, q)
    out: dict[str, Any] = {"n_rows": int(rows.sum()), "n_scored": int(valid.sum()),
                           "n_unscored": int((~valid).sum())}
    out["correlation"] = correlations(s, q)
    out["within_question"] = within_group_correlations(s, q, [g for g, k in zip(ds.groups, rows, strict=False) if k])
    curve = selective_curve(s, q, COVERAGES, tiebreak[rows])
    out["selective"] = {"coverages": list(COVERAGES), "curve": curve.tolist(), **curve_summary(curve)}
    # Oracle and random on the same rows the scorer scored (a reference-reading baseline may skip some).
    oracle = (curve_summary(selective_curve(q[valid], q[valid], COVERAGES, tiebreak[rows][valid]))["auc"]
              if valid.any() else math.nan)
    chance = float(np.mean(q[valid])) if valid.any() else math.nan
    out["selective"].update({"oracle_auc": oracle, "random_auc": chance})
    out["selective"]["share_of_oracle_gain"] = (
        (out["selective"]["auc"] - chance) / (oracle - chance) if valid.any() and oracle > chance else math.nan)
    if reference_scores is not None:
        out["vs_reference"] = agreement_with_reference(s, reference_scores[rows], q, ds.reference_win_threshold)
    return out


def evaluate_pointwise(
    ds: PointwiseSet,
    scores: np.ndarray,
    reference_scores: dict[str, float] | None,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Every pointwise metric of one scorer on one set, with cluster-bootstrap intervals for the headline ones.

    Quality metrics (correlation, selective following, agreement with the annotator) use :func:`honest_mask`; when
    a set has adversarial models the same figures over all rows are kept under ``all_rows``. Model ranking and the
    gaming check always use every model. ``reference_scores`` are the scorer's scores of each group's reference.
    """
    scores = np.asarray(scores, dtype=float)
    q = ds.quality
    tiebreak = np.random.default_rng(seed).random(len(q))
    reference_per_row = None
    if reference_scores is not None and ds.group_references is not None:
        reference_per_row = np.array([reference_scores.get(g, math.nan) for g in ds.groups], dtype=float)
    honest = honest_mask(ds)
    out = _quality_metrics(ds, scores, reference_per_row, honest, tiebreak)
    out["rows"] = "honest models only (adversarial entries left out)" if not honest.all() else "all"
    if not honest.all():
        every = _quality_metrics(ds, scores, reference_per_row, np.ones(len(q), dtype=bool), tiebreak)
        out["all_rows"] = {k: every[k] for k in ("n_scored", "correlation", "selective", "vs_reference")
                           if k in every}
    has_models = all(m is not None for m in ds.models)
    if has_models:
        means = per_model_means(scores, ds.models)
        target = ds.leaderboard or per_model_means(q, ds.models)
        ranking: dict[str, Any] = {
            "target": "leaderboard win rate" if ds.leaderboard else f"mean {ds.quality_name}", "per_model_mean": means}
        ranking["all"] = ranking_agreement(means, target)
        if ds.adversarial:
            ranking["honest"] = ranking_agreement(means, target, exclude=ds.adversarial)
            ranking["gaming"] = gaming_check(means, ds.adversarial)
        if reference_per_row is not None:
            wins = np.where(scores == reference_per_row, 0.5, (scores > reference_per_row).astype(float))
            wins[~finite_mask(scores, reference_per_row)] = math.nan
            win_rates = per_model_means(wins, ds.models)
            ranking["win_rate_vs_reference"] = win_rates
            ranking["win_rate_vs_reference_honest"] = ranking_agreement(win_rates, target, exclude=ds.adversarial)
        out["ranking"] = ranking
    out["ci"] = _pointwise_intervals(ds, scores, reference_per_row, honest, tiebreak, n_resamples,
                                     confidence_level, seed, has_models)
    return out


def _pointwise_intervals(ds: PointwiseSet, scores: np.ndarray, reference_per_row: np.ndarray | None,
                         honest: np.ndarray, tiebreak: np.ndarray, n_resamples: int, confidence_level: float,
                         seed: int, has_models: bool) -> dict[str, list[float]]:
    """Intervals for Pearson, Spearman, selective AUC, agreement with the annotator and the honest model ranking."""
    q = ds.quality
    _, group_rows = group_index(ds.groups)
    keys = ["pearson", "spearman", "auc"]
    if reference_per_row is not None:
        keys.append("vs_reference_accuracy")
    rank_models = has_models and ds.leaderboard is not None
    if rank_models:
        keys.append("ranking_spearman_honest")
        names = sorted(set(ds.models))
        model_code = np.array([names.index(m) for m in ds.models])
        honest_models = np.array([n not in ds.adversarial and n in ds.leaderboard for n in names])
        board = np.array([ds.leaderboard.get(n, math.nan) for n in names])
    finite = finite_mask(scores, q)
    threshold = ds.reference_win_threshold

    def statistic(groups: np.ndarray) -> np.ndarray:
        rows = np.concatenate([group_rows[g] for g in groups])
        rows = rows[finite[rows]]
        keep = rows[honest[rows]]
        s, y = scores[keep], q[keep]
        if len(s) < 3:
            return np.full(len(keys), math.nan)
        auc = curve_summary(selective_curve(s, y, COVERAGES, tiebreak[keep]))["auc"]
        values = [pearson(s, y), spearman(s, y), auc]
        if reference_per_row is not None:
            decided = y != threshold
            values.append(preference_accuracy(s[decided], reference_per_row[keep][decided],
                                              y[decided] > threshold)["accuracy"])
        if rank_models:
            sums = np.bincount(model_code[rows], weights=scores[rows], minlength=len(names))
            counts = np.bincount(model_code[rows], minlength=len(names))
            means = sums / np.maximum(counts, 1)
            values.append(spearman(means[honest_models], board[honest_models]))
        return np.array(values, dtype=float)

    if (finite & honest).sum() < 3:
        return {}
    low, high = bootstrap_ci(statistic, len(group_rows), n_resamples, confidence_level, seed)
    return {k: [float(lo), float(hi)] for k, lo, hi in zip(keys, low, high, strict=False)}


def evaluate_pairwise(ds: PairwiseSet, score_a: np.ndarray, score_b: np.ndarray, *, n_resamples: int = 1000,
                      confidence_level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Accuracy of J(a) > J(b) against the human label on non-tie pairs, per subset, per group of subsets the set
    reports together (``ds.subset_totals``) and overall, with an interval for the overall accuracy."""
    labels = np.array(ds.labels)
    subsets = np.array(ds.subsets)
    decided = labels != "tie"
    a_wins = labels == "A"
    out: dict[str, Any] = {"n_pairs": len(labels), "n_ties_excluded": int((~decided).sum()),
                           "n_unscored": int((~finite_mask(score_a, score_b) & decided).sum())}

    def accuracy(mask: np.ndarray) -> dict[str, float]:
        return preference_accuracy(score_a[mask], score_b[mask], a_wins[mask])

    per_subset = {name: accuracy(decided & (subsets == name)) for name in sorted(set(ds.subsets))}
    for total_name, members in ds.subset_totals.items():
        together = decided & np.isin(subsets, members)
        if together.any():
            per_subset[total_name] = accuracy(together)
    per_subset["all"] = accuracy(decided)
    out["accuracy"] = per_subset
    scored = np.flatnonzero(decided & finite_mask(score_a, score_b))
    if len(scored) >= 2:
        def statistic(sample: np.ndarray) -> np.ndarray:
            rows = scored[sample]
            return np.array([preference_accuracy(score_a[rows], score_b[rows], a_wins[rows])["accuracy"]])

        low, high = bootstrap_ci(statistic, len(scored), n_resamples, confidence_level, seed)
        out["ci"] = {"accuracy_all": [float(low[0]), float(high[0])]}
    return out
