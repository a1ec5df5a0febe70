"""Metrics: small pure functions on arrays, each tested against a hand-computed example.

Correlation with an external quality, agreement with a verdict against a reference, model ranking and the gaming
check, selective instruction-following curves (by rank, and with a threshold calibrated on other rows), the
best-of-k pick, within-question correlation and pairwise accuracy. Statistics come
from :mod:`selfj_trl.stats` (scipy underneath); rows with a NaN on either side are left out everywhere.

The judge-agreement figures (correlation, within-question correlation, pairwise accuracy, the selective curve) are
published as an ``evaluate`` metric module shipped in the package (:data:`JUDGE_AGREEMENT`), which calls the
functions here; the harness computes its point estimates through it (:func:`judge_agreement`), so what a user gets
from ``evaluate.load(JUDGE_AGREEMENT, ...)`` is what ``selfj-trl evaluate`` reports.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats
from scipy.integrate import trapezoid

from ..stats import correlations, finite_mask, group_index, per_group_correlations, quietly
from ..thresholds import calibrate_threshold


#: Coverage levels of the selective instruction-following curve (fraction of answers kept).
COVERAGES = tuple(round(c / 100, 2) for c in range(10, 101, 10))
#: Target coverages of the calibrated threshold (chosen on a calibration split, applied to the evaluated rows).
TARGET_COVERAGES = (0.5, 0.8)
#: The ``evaluate`` metric module of the judge-agreement figures (package data): ``evaluate.load(JUDGE_AGREEMENT,
#: "correlation" | "within_group" | "pairwise" | "selective")`` loads it from the installed package, offline.
JUDGE_AGREEMENT = str(Path(__file__).resolve().parents[1] / "metrics" / "judge_agreement")

__all__ = [
    "COVERAGES",
    "JUDGE_AGREEMENT",
    "TARGET_COVERAGES",
    "agreement_with_reference",
    "calibrated_selection",
    "correlations",
    "curve_summary",
    "gaming_check",
    "group_picks",
    "judge_agreement",
    "per_model_means",
    "preference_accuracy",
    "ranking_agreement",
    "selective_curve",
    "within_group_correlations",
]


@functools.cache
def load_judge_agreement(config_name: str) -> Any:
    """The judge-agreement ``evaluate`` module in one configuration, loaded once per process (kept in memory: no
    cache files for the harness's many small computations)."""
    import evaluate

    return evaluate.load(JUDGE_AGREEMENT, config_name, keep_in_memory=True)


def judge_agreement(config_name: str, **inputs: Any) -> dict[str, Any]:
    """``evaluate.load(JUDGE_AGREEMENT, config_name).compute(**inputs)``: one judge-agreement figure."""
    return load_judge_agreement(config_name).compute(**inputs)


def preference_accuracy(
    score_first: Sequence[float], score_second: Sequence[float], first_wins: Sequence[bool]
) -> dict[str, float]:
    """Share of pairs where ``score_first > score_second`` matches the label; exact score ties count one half.

    Half credit for ties is what a coin flip would earn, so a constant scorer lands at 0.5, not 0 or 1.
    """
    a, b = np.asarray(score_first, float), np.asarray(score_second, float)
    y = np.asarray(first_wins, bool)
    m = finite_mask(a, b)
    a, b, y = a[m], b[m], y[m]
    if len(a) == 0:
        return {"accuracy": math.nan, "n": 0, "ties": 0}
    credit = np.where(a == b, 0.5, ((a > b) == y).astype(float))
    return {"accuracy": float(np.mean(credit)), "n": int(len(a)), "ties": int(np.sum(a == b))}


def agreement_with_reference(response_scores, reference_scores, quality, threshold: float = 0.5) -> dict[str, float]:
    """Does J(x, y) > J(x, reference) match the annotator's verdict (quality > ``threshold``, e.g. GPT-4's win
    probability > 0.5)? Verdicts exactly at the threshold are left out.

    Also the Pearson and Spearman correlation of the margin J(x, y) - J(x, reference) with the quality.
    """
    s, r, q = (np.asarray(v, float) for v in (response_scores, reference_scores, quality))
    decided = q != threshold
    out = preference_accuracy(s[decided], r[decided], q[decided] > threshold)
    margin = correlations(s - r, q, kendall=False)
    out["margin_pearson"] = margin["pearson"]
    out["margin_spearman"] = margin["spearman"]
    out["gpt4_ties_excluded"] = int((~decided).sum())
    # The majority answer for scale: strong references beat most responses, so "the reference always wins" is
    # already right most of the time.
    out["always_reference_accuracy"] = float(np.mean(q[decided] < threshold)) if decided.any() else math.nan
    return out


def per_model_means(scores: Sequence[float], models: Sequence[str]) -> dict[str, float]:
    """Mean finite score per model."""
    s = np.asarray(scores, float)
    out = {}
    for name in sorted(set(models)):
        values = s[[m == name for m in models]]
        values = values[np.isfinite(values)]
        out[name] = float(values.mean()) if len(values) else math.nan
    return out


def ranking_agreement(
    model_scores: dict[str, float], target: dict[str, float], exclude: Sequence[str] = ()
) -> dict[str, Any]:
    """Spearman and Kendall between per-model scores and a target (e.g. the leaderboard), on models in both."""
    names = [
        m
        for m in model_scores
        if m in target and m not in exclude and math.isfinite(model_scores[m]) and math.isfinite(target[m])
    ]
    x = np.array([model_scores[m] for m in names])
    y = np.array([target[m] for m in names])
    if len(names) < 3:
        return {"spearman": math.nan, "kendall": math.nan, "n_models": len(names)}
    return {
        "spearman": float(quietly(lambda: scipy_stats.spearmanr(x, y).statistic)),
        "kendall": float(quietly(lambda: scipy_stats.kendalltau(x, y).statistic)),
        "n_models": len(names),
    }


def gaming_check(model_scores: dict[str, float], adversarial: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Where each adversarial entry ranks (1 = best) and whether it beats the median honest model.

    A judge whose mean score for a constant or annotator-gaming answer beats the median honest model is being
    gamed: a policy trained against it would learn to produce that answer.
    """
    honest = {m: s for m, s in model_scores.items() if m not in adversarial and math.isfinite(s)}
    median_honest = float(np.median(list(honest.values()))) if honest else math.nan
    ordered = sorted((m for m in model_scores if math.isfinite(model_scores[m])), key=lambda m: -model_scores[m])
    out = {}
    for name in adversarial:
        if name not in model_scores or not math.isfinite(model_scores[name]):
            continue
        score = model_scores[name]
        out[name] = {
            "rank": ordered.index(name) + 1,
            "of": len(ordered),
            "beats_honest": int(sum(score > s for s in honest.values())),
            "n_honest": len(honest),
            "score": score,
            "median_honest_score": median_honest,
            "gamed": bool(score > median_honest),
        }
    return out


def selective_curve(
    scores: Sequence[float],
    quality: Sequence[float],
    coverages: Sequence[float] = COVERAGES,
    tiebreak: np.ndarray | None = None,
) -> np.ndarray:
    """Mean quality of the top ``c`` fraction of rows by score, for each coverage ``c`` (rows with NaN dropped).

    Score ties are broken by ``tiebreak`` (a fixed random key) so a constant scorer behaves like a random order.
    """
    s, q = np.asarray(scores, float), np.asarray(quality, float)
    m = finite_mask(s, q)
    if tiebreak is None:
        tiebreak = np.random.default_rng(0).random(len(s))
    s, q, t = s[m], q[m], np.asarray(tiebreak)[m]
    if len(s) == 0:
        return np.full(len(coverages), math.nan)
    order = np.lexsort((t, -s))
    kept_mean = np.cumsum(q[order]) / np.arange(1, len(q) + 1)
    kept = np.array([max(1, math.ceil(round(c * len(q), 9))) for c in coverages])
    return kept_mean[kept - 1]


def curve_summary(curve: Sequence[float], coverages: Sequence[float] = COVERAGES) -> dict[str, float]:
    """Area under the coverage-quality curve (normalised by the coverage span: a mean kept quality), and the
    quality at 50% and 80% coverage."""
    c, y = np.asarray(coverages, float), np.asarray(curve, float)
    span = c[-1] - c[0]
    out = {"auc": float(trapezoid(y, c) / span) if span > 0 else float(y[0])}
    for target in (0.5, 0.8):
        hit = np.isclose(c, target)
        out[f"quality_at_{int(target * 100)}"] = float(y[hit][0]) if hit.any() else float(np.interp(target, c, y))
    return out


def group_picks(scores: Sequence[float], quality: Sequence[float], groups: Sequence[Any]) -> dict[str, np.ndarray]:
    """Best-of-k per group (question): the quality of the scorer's top answer, beside a random pick and the oracle.

    Returns arrays aligned with the groups in order of first appearance: ``pick`` (quality of the top-scored
    answer; answers tied at the top score share the pick, so their mean quality counts: a constant scorer is a
    random pick, not a lucky one), ``random`` (the mean quality: a random pick's expected value), ``oracle`` (the
    best quality) and ``k`` (finite answers compared). Groups with fewer than 2 scored answers are NaN: there is
    nothing to pick among.
    """
    s, q = np.asarray(scores, float), np.asarray(quality, float)
    names, rows_of = group_index(groups)
    out = {key: np.full(len(names), math.nan) for key in ("pick", "random", "oracle")}
    out["k"] = np.zeros(len(names), dtype=int)
    for g, rows in enumerate(rows_of):
        rows = rows[finite_mask(s[rows], q[rows])]
        out["k"][g] = len(rows)
        if len(rows) < 2:
            continue
        top = s[rows] == s[rows].max()
        out["pick"][g] = q[rows][top].mean()
        out["random"][g] = q[rows].mean()
        out["oracle"][g] = q[rows].max()
    return out


def calibrated_selection(
    calibration_scores: Sequence[float],
    scores: Sequence[float],
    quality: Sequence[float],
    target_coverages: Sequence[float] = TARGET_COVERAGES,
) -> list[dict[str, float]]:
    """Selective following as deployed: a threshold chosen at each target coverage on *other* rows' scores
    (``calibration_scores``, e.g. a train split's answers; their quality is never read), then applied here.

    Per target: the threshold, the coverage it achieves on these rows (answer when score >= threshold), the mean
    quality of the answered rows, and the mean quality of every row (what answering everything gives). Achieved
    coverage far from the target says the scorer's scores shift between the two slices.
    """
    c = np.asarray(calibration_scores, float)
    c = c[np.isfinite(c)]
    s, q = np.asarray(scores, float), np.asarray(quality, float)
    m = finite_mask(s, q)
    s, q = s[m], q[m]
    out = []
    for target in target_coverages:
        row: dict[str, float] = {"target_coverage": float(target), "n_calibration": int(len(c)), "n": int(len(s))}
        if len(c) == 0 or len(s) == 0:
            out.append(
                row
                | {
                    "threshold": math.nan,
                    "coverage": math.nan,
                    "kept_quality": math.nan,
                    "all_quality": float(q.mean()) if len(q) else math.nan,
                    "n_kept": 0,
                }
            )
            continue
        threshold = calibrate_threshold(c.tolist(), target_coverage=float(target))
        kept = s >= threshold
        row.update(
            {
                "threshold": float(threshold),
                "coverage": float(kept.mean()),
                "n_kept": int(kept.sum()),
                "kept_quality": float(q[kept].mean()) if kept.any() else math.nan,
                "all_quality": float(q.mean()),
            }
        )
        out.append(row)
    return out


def within_group_correlations(
    scores, quality, groups: Sequence[str], per_group: dict[Any, tuple[float, float]] | None = None
) -> dict[str, Any]:
    """Mean Pearson and Spearman inside each group (question), over groups where both vary.

    Pooled correlation rewards a judge for telling easy questions from hard ones; within-question correlation
    asks the harder thing: given one question, does it order the answers as the grader does? ``per_group`` takes
    :func:`selfj_trl.stats.per_group_correlations` of the same rows when the caller has it already (one pass per
    question is the slow part on a full set).
    """
    if per_group is None:
        per_group = per_group_correlations(scores, quality, groups)
    pearsons = np.array([p for p, _ in per_group.values()], dtype=float)
    spearmans = np.array([s for _, s in per_group.values()], dtype=float)
    defined = np.isfinite(pearsons)
    n_groups = len(group_index(groups)[0])
    return {
        "pearson": float(pearsons[defined].mean()) if defined.any() else math.nan,
        "spearman": float(np.nanmean(spearmans[defined])) if defined.any() else math.nan,
        "n_groups": int(defined.sum()),
        "n_groups_skipped": n_groups - int(defined.sum()),
    }
