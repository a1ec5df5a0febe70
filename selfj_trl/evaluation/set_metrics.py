"""Every metric of one scorer on one held-out set, with cluster-bootstrap intervals for the headline figures.

What is particular to a set comes from the set object: which models are adversarial (:func:`honest_mask`), which
answers compete in the best-of-k pick (:func:`pick_mask`), the split that calibrates selective-following thresholds,
the reference answers and the verdict threshold against them, the leaderboard, and the subsets reported together.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..eval_sets import PairwiseSet, PointwiseSet
from ..stats import cluster_bootstrap, finite_mask, finite_mean, group_index, pearson, per_group_correlations, spearman
from .metrics import (
    COVERAGES,
    TARGET_COVERAGES,
    agreement_with_reference,
    calibrated_selection,
    curve_summary,
    gaming_check,
    group_picks,
    judge_agreement,
    per_model_means,
    preference_accuracy,
    ranking_agreement,
    selective_curve,
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


def pick_mask(ds: PointwiseSet) -> np.ndarray:
    """Rows that compete in the best-of-k pick: honest rows, restricted to ``ds.pick_models`` when the set names them
    (AlpacaEval: the 15 honest models, so the pick is a best-of-15)."""
    mask = honest_mask(ds)
    if ds.pick_models is not None:
        mask &= np.array([m in ds.pick_models for m in ds.models], dtype=bool)
    return mask


def _by_group(values: dict[Any, float], names: list[Any]) -> np.ndarray:
    """Per-group values (keyed by group) as an array aligned with ``names``; NaN for a group without one."""
    return np.array([values.get(g, math.nan) for g in names], dtype=float)


def best_of_k(ds: PointwiseSet, scores: np.ndarray) -> dict[str, Any] | None:
    """The best-of-k pick on the set's pick rows: mean quality of the scorer's top answer per group, beside the
    random pick and the oracle on the same groups; None when no group has two scored candidates.

    Also returns ``per_group`` (group -> (pick, random, oracle)) for the intervals; the caller drops it from the
    reported figures.
    """
    rows = pick_mask(ds)
    groups = [g for g, k in zip(ds.groups, rows, strict=False) if k]
    picks = group_picks(scores[rows], ds.quality[rows], groups)
    names = group_index(groups)[0]
    defined = np.isfinite(picks["pick"])
    if not defined.any():
        return None
    pick, chance, oracle = (float(picks[key][defined].mean()) for key in ("pick", "random", "oracle"))
    k = picks["k"][defined]
    return {
        "candidates": "models " + ", ".join(ds.pick_models) if ds.pick_models is not None else "honest rows",
        "k_min": int(k.min()),
        "k_max": int(k.max()),
        "n_groups": int(defined.sum()),
        "n_groups_skipped": int((~defined).sum()),
        "pick": pick,
        "random": chance,
        "oracle": oracle,
        "gain_over_random": pick - chance,
        "share_of_oracle_gain": (pick - chance) / (oracle - chance) if oracle > chance else math.nan,
        "per_group": {
            g: (float(picks["pick"][i]), float(picks["random"][i]), float(picks["oracle"][i]))
            for i, g in enumerate(names)
            if defined[i]
        },
    }


def pick_reference(
    ds: PointwiseSet, n_resamples: int = 1000, confidence_level: float = 0.95, seed: int = 0
) -> dict[str, Any] | None:
    """The set's own best-of-k figures, which need no scorer: a random pick (the mean quality of the candidates)
    and the oracle (the best), over groups with at least two candidates, with intervals over groups."""
    rows = pick_mask(ds)
    groups = [g for g, k in zip(ds.groups, rows, strict=False) if k]
    picks = group_picks(ds.quality[rows], ds.quality[rows], groups)
    defined = np.isfinite(picks["random"])
    if not defined.any():
        return None
    chance, oracle = picks["random"][defined], picks["oracle"][defined]
    k = picks["k"][defined]
    out: dict[str, Any] = {
        "random": float(chance.mean()),
        "oracle": float(oracle.mean()),
        "k_min": int(k.min()),
        "k_max": int(k.max()),
        "n_groups": int(defined.sum()),
    }
    low, high = cluster_bootstrap(
        lambda g: np.array([chance[g].mean(), oracle[g].mean()]), len(chance), n_resamples, confidence_level, seed
    )
    out["ci"] = {"random": [float(low[0]), float(high[0])], "oracle": [float(low[1]), float(high[1])]}
    return out


def _quality_metrics(
    ds: PointwiseSet,
    scores: np.ndarray,
    reference_scores: np.ndarray | None,
    rows: np.ndarray,
    tiebreak: np.ndarray,
    per_group: dict[Any, tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """Correlation, within-question correlation, selective curve and agreement with the annotator on ``rows``."""
    q, s = ds.quality[rows], scores[rows]
    valid = finite_mask(s, q)
    out: dict[str, Any] = {"n_rows": int(rows.sum()), "n_scored": int(valid.sum()), "n_unscored": int((~valid).sum())}
    # The scorer's agreement figures through the shipped `evaluate` module (metrics.judge_agreement).
    out["correlation"] = judge_agreement("correlation", predictions=s, references=q)
    out["within_question"] = judge_agreement(
        "within_group",
        predictions=s,
        references=q,
        groups=[str(g) for g, k in zip(ds.groups, rows, strict=False) if k],
        per_group=per_group,
    )
    # The length lean: how much the scores follow the word count inside a question (length's own figure is +1);
    # a reward that leans on it can be bought by writing more.
    words = np.array([len(r.split()) for r, k in zip(ds.responses, rows, strict=False) if k], dtype=float)
    out["length_lean"] = judge_agreement(
        "within_group",
        predictions=s,
        references=words,
        groups=[str(g) for g, k in zip(ds.groups, rows, strict=False) if k],
    )["spearman"]
    out["selective"] = judge_agreement(
        "selective", predictions=s, references=q, coverages=COVERAGES, tiebreak=tiebreak[rows]
    )
    # Oracle and random on the same rows the scorer scored (a reference-reading baseline may skip some).
    oracle = (
        curve_summary(selective_curve(q[valid], q[valid], COVERAGES, tiebreak[rows][valid]))["auc"]
        if valid.any()
        else math.nan
    )
    chance = float(np.mean(q[valid])) if valid.any() else math.nan
    out["selective"].update({"oracle_auc": oracle, "random_auc": chance})
    out["selective"]["share_of_oracle_gain"] = (
        (out["selective"]["auc"] - chance) / (oracle - chance) if valid.any() and oracle > chance else math.nan
    )
    if reference_scores is not None:
        out["vs_reference"] = agreement_with_reference(s, reference_scores[rows], q, ds.reference_win_threshold)
    return out


def evaluate_pointwise(
    ds: PointwiseSet,
    scores: np.ndarray,
    reference_scores: dict[str, float] | None,
    *,
    calibration_scores: np.ndarray | None = None,
    target_coverages: tuple[float, ...] = TARGET_COVERAGES,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Every pointwise metric of one scorer on one set, with cluster-bootstrap intervals for the headline ones.

    Quality metrics (correlation, within-question correlation, the best-of-k pick, selective following, agreement
    with the annotator) use :func:`honest_mask`; when a set has adversarial models the same figures over all rows
    are kept under ``all_rows``. Model ranking and the gaming check always use every model. ``reference_scores``
    are the scorer's scores of each group's reference; ``calibration_scores`` its scores of the set's calibration
    split (honest rows), which choose the selective-following thresholds applied here (``calibrated``).
    """
    scores = np.asarray(scores, dtype=float)
    q = ds.quality
    tiebreak = np.random.default_rng(seed).random(len(q))
    reference_per_row = None
    if reference_scores is not None and ds.group_references is not None:
        reference_per_row = np.array([reference_scores.get(g, math.nan) for g in ds.groups], dtype=float)
    honest = honest_mask(ds)
    within = per_group_correlations(
        scores[honest], q[honest], [g for g, k in zip(ds.groups, honest, strict=False) if k]
    )
    out = _quality_metrics(ds, scores, reference_per_row, honest, tiebreak, within)
    out["rows"] = "honest models only (adversarial entries left out)" if not honest.all() else "all"
    picks = best_of_k(ds, scores)
    per_group_pick = picks.pop("per_group") if picks is not None else {}
    out["best_of_k"] = picks
    out["calibrated"] = None
    if calibration_scores is not None:
        out["calibrated"] = calibrated_selection(calibration_scores, scores[honest], q[honest], target_coverages)
    if not honest.all():
        every = _quality_metrics(ds, scores, reference_per_row, np.ones(len(q), dtype=bool), tiebreak)
        out["all_rows"] = {k: every[k] for k in ("n_scored", "correlation", "selective", "vs_reference") if k in every}
    has_models = all(m is not None for m in ds.models)
    if has_models:
        means = per_model_means(scores, ds.models)
        target = ds.leaderboard or per_model_means(q, ds.models)
        ranking: dict[str, Any] = {
            "target": "leaderboard win rate" if ds.leaderboard else f"mean {ds.quality_name}",
            "per_model_mean": means,
        }
        ranking["all"] = ranking_agreement(means, target)
        if ds.adversarial:
            ranking["honest"] = ranking_agreement(means, target, exclude=ds.adversarial)
            ranking["gaming"] = gaming_check(means, ds.adversarial)
        for board_name, board in ds.other_leaderboards.items():
            ranking[f"honest_vs_{board_name}"] = ranking_agreement(means, board, exclude=ds.adversarial)
        if reference_per_row is not None:
            wins = np.where(scores == reference_per_row, 0.5, (scores > reference_per_row).astype(float))
            wins[~finite_mask(scores, reference_per_row)] = math.nan
            win_rates = per_model_means(wins, ds.models)
            ranking["win_rate_vs_reference"] = win_rates
            ranking["win_rate_vs_reference_honest"] = ranking_agreement(win_rates, target, exclude=ds.adversarial)
        out["ranking"] = ranking
    thresholds = {
        f"calibrated_kept_quality@{round(100 * c['target_coverage'])}": c["threshold"]
        for c in out["calibrated"] or []
        if math.isfinite(c["threshold"])
    }
    out["ci"] = _pointwise_intervals(
        ds,
        scores,
        reference_per_row,
        honest,
        tiebreak,
        n_resamples,
        confidence_level,
        seed,
        has_models,
        within,
        per_group_pick,
        thresholds,
    )
    return out


def _pointwise_intervals(
    ds: PointwiseSet,
    scores: np.ndarray,
    reference_per_row: np.ndarray | None,
    honest: np.ndarray,
    tiebreak: np.ndarray,
    n_resamples: int,
    confidence_level: float,
    seed: int,
    has_models: bool,
    per_group_within: dict[Any, tuple[float, float]],
    per_group_pick: dict[Any, tuple[float, float, float]],
    thresholds: dict[str, float],
) -> dict[str, list[float]]:
    """Intervals for Pearson, Spearman, selective AUC, within-question Spearman, the best-of-k pick and its gain
    over a random pick, the calibrated thresholds' kept quality, agreement with the annotator and the honest model
    ranking. Every one resamples the same whole instructions."""
    q = ds.quality
    group_names, group_rows = group_index(ds.groups)
    keys = ["pearson", "spearman", "auc", "within_spearman"]
    within = _by_group({g: sp for g, (_, sp) in per_group_within.items()}, group_names)
    pick = _by_group({g: v[0] for g, v in per_group_pick.items()}, group_names)
    pick_gain = _by_group({g: v[0] - v[1] for g, v in per_group_pick.items()}, group_names)
    if per_group_pick:
        keys += ["pick", "pick_gain_over_random"]
    # Thresholds stay fixed (chosen on the calibration split); only the evaluated instructions are resampled.
    kept_sum, kept_n = np.zeros((len(thresholds), len(group_rows))), np.zeros((len(thresholds), len(group_rows)))
    valid = finite_mask(scores, q) & honest
    for g, rows in enumerate(group_rows):
        rows = rows[valid[rows]]
        for t, threshold in enumerate(thresholds.values()):
            kept = rows[scores[rows] >= threshold]
            kept_sum[t, g], kept_n[t, g] = q[kept].sum(), len(kept)
    keys += list(thresholds)
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
        values = [pearson(s, y), spearman(s, y), auc, finite_mean(within[groups])]
        if per_group_pick:
            values += [finite_mean(pick[groups]), finite_mean(pick_gain[groups])]
        n_kept = kept_n[:, groups].sum(axis=1)
        values += [
            float(k / n) if n else math.nan for k, n in zip(kept_sum[:, groups].sum(axis=1), n_kept, strict=True)
        ]
        if reference_per_row is not None:
            decided = y != threshold
            values.append(
                preference_accuracy(s[decided], reference_per_row[keep][decided], y[decided] > threshold)["accuracy"]
            )
        if rank_models:
            sums = np.bincount(model_code[rows], weights=scores[rows], minlength=len(names))
            counts = np.bincount(model_code[rows], minlength=len(names))
            means = sums / np.maximum(counts, 1)
            values.append(spearman(means[honest_models], board[honest_models]))
        return np.array(values, dtype=float)

    if (finite & honest).sum() < 3:
        return {}
    low, high = cluster_bootstrap(statistic, len(group_rows), n_resamples, confidence_level, seed)
    return {k: [float(lo), float(hi)] for k, lo, hi in zip(keys, low, high, strict=False)}


def evaluate_pairwise(
    ds: PairwiseSet,
    score_a: np.ndarray,
    score_b: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy of J(a) > J(b) against the human label on non-tie pairs, per subset, per group of subsets the set
    reports together (``ds.subset_totals``) and overall, with an interval for the overall accuracy."""
    labels = np.array(ds.labels)
    subsets = np.array(ds.subsets)
    decided = labels != "tie"
    a_wins = labels == "A"
    out: dict[str, Any] = {
        "n_pairs": len(labels),
        "n_ties_excluded": int((~decided).sum()),
        "n_unscored": int((~finite_mask(score_a, score_b) & decided).sum()),
    }

    def accuracy(mask: np.ndarray) -> dict[str, float]:
        return judge_agreement(
            "pairwise", predictions=score_a[mask], predictions_b=score_b[mask], references=a_wins[mask]
        )

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

        low, high = cluster_bootstrap(statistic, len(scored), n_resamples, confidence_level, seed)
        out["ci"] = {"accuracy_all": [float(low[0]), float(high[0])]}
    return out
