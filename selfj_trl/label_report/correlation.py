"""Correlations of a score with GPT-4's quality, with cluster-bootstrap intervals over instructions, and every label
of the family made from one self-evaluation (fixed weights, and the fitted weights cross-fitted over instructions)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import stats
from ..labels import can_fit_combination, combine_labels, fit_combination


def correlation_summary(
    values: list[float],
    quality: list[float],
    clusters: list[Any],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    honest: list[bool] | None = None,
) -> dict[str, Any]:
    """Spearman and Pearson of ``values`` with ``quality``, with 95% percentile-bootstrap intervals.

    The bootstrap resamples whole clusters (instructions) through :func:`selfj_trl.stats.cluster_bootstrap`: the
    responses to one instruction share its difficulty, so resampling rows would make the intervals too narrow.
    Resamples where a correlation is undefined (constant scores, e.g. an argmax readout that rarely moves) are left
    out of the percentiles and counted in ``bootstrap_undefined``. Also reported: the mean within-instruction Spearman
    (what best-of-n needs) and the Spearman without the adversarial models (``honest``).
    """
    x = np.asarray(values, dtype=float)
    y = np.asarray(quality, dtype=float)
    keep = np.isfinite(x)
    cl = np.asarray([str(c) for c in clusters])
    x, y, cl = x[keep], y[keep], cl[keep]
    honest_mask = np.asarray(honest, dtype=bool)[keep] if honest is not None else None
    sp, pe = stats.spearman(x, y), stats.pearson(x, y)
    out: dict[str, Any] = {
        "n": int(keep.sum()),
        "spearman": sp,
        "pearson": pe,
        "spearman_ci": [math.nan, math.nan],
        "pearson_ci": [math.nan, math.nan],
    }
    _, members = stats.group_index(list(cl))
    if n_bootstrap > 0 and len(members) >= 2 and math.isfinite(sp):
        draws: list[float] = []

        def both(groups: np.ndarray) -> list[float]:
            rows = np.concatenate([members[g] for g in groups])
            pair = [stats.spearman(x[rows], y[rows]), stats.pearson(x[rows], y[rows])]
            draws.append(pair[0])
            return pair

        low, high = stats.cluster_bootstrap(both, len(members), n_resamples=n_bootstrap, seed=seed)
        out["bootstrap_undefined"] = int(np.sum(~np.isfinite(draws[-n_bootstrap:])))
        out["spearman_ci"] = [float(low[0]), float(high[0])]
        out["pearson_ci"] = [float(low[1]), float(high[1])]
    out["within_instruction_spearman"] = stats.mean_within_group_spearman(x, y, list(cl))
    if honest_mask is not None and honest_mask.sum() >= 3:
        out["spearman_honest"] = stats.spearman(x[honest_mask], y[honest_mask])
    out["mean"] = float(np.mean(x)) if len(x) else math.nan
    out["std"] = float(np.std(x)) if len(x) else math.nan
    return out


def combined_labels(
    self_eval: list[float],
    cosine: list[float],
    quality: list[float],
    folds: list[int],
    *,
    cosine_weights: list[float],
    n_folds: int,
    fit_mask: list[bool] | None = None,
) -> tuple[dict[str, list[float]], tuple[float, float, float] | None]:
    """Every label of the family for one self-evaluation: ``weighted_mean``/``rank_mean`` at each cosine weight, and
    ``fitted`` cross-fitted (each fold's weights come from the other folds' instructions). Rows with a NaN
    self-evaluation stay NaN. Also returns the weights fitted on all rows (to pass as ``weights=`` when labeling).

    ``fit_mask`` limits which rows the weights are fitted on (the report leaves out the models built to game GPT-4:
    fitted to them, the weights learn that text unlike the reference is good, i.e. to reward gibberish); every row is
    still labeled and scored. When a fold cannot be fitted (too few rows or constant quality, tiny slices), there is
    no fitted label at all."""
    s = np.asarray(self_eval, dtype=float)
    ok = np.flatnonzero(np.isfinite(s))
    fit_ok = [int(i) for i in ok if fit_mask is None or fit_mask[int(i)]]
    out: dict[str, list[float]] = {}

    def spread(idx: np.ndarray, values: list[float]) -> list[float]:
        full = [math.nan] * len(s)
        for i, v in zip(idx, values, strict=True):
            full[int(i)] = float(v)
        return full

    s_ok, c_ok = [float(s[i]) for i in ok], [float(cosine[i]) for i in ok]
    for combination in ("weighted_mean", "rank_mean"):
        for w in cosine_weights:
            out[f"{combination}/w={w:g}"] = spread(
                ok, combine_labels(s_ok, c_ok, cosine_weight=w, combination=combination)
            )
    fold = np.asarray(folds)
    train_sets = {k: [i for i in fit_ok if fold[i] != k] for k in range(n_folds)}
    test_sets = {k: [int(i) for i in ok if fold[i] == k] for k in range(n_folds)}
    fittable = can_fit_combination([quality[i] for i in fit_ok]) and all(
        can_fit_combination([quality[i] for i in train_sets[k]]) for k in range(n_folds) if test_sets[k]
    )
    fitted = [math.nan] * len(s)
    full_weights = None
    if fittable:
        for k in range(n_folds):
            train, test = train_sets[k], test_sets[k]
            if not test:
                continue
            weights = fit_combination([s[i] for i in train], [cosine[i] for i in train], [quality[i] for i in train])
            for i, v in zip(
                test,
                combine_labels(
                    [float(s[i]) for i in test],
                    [float(cosine[i]) for i in test],
                    combination="fitted",
                    weights=weights,
                ),
                strict=True,
            ):
                fitted[i] = float(v)
        full_weights = fit_combination(
            [s[i] for i in fit_ok], [cosine[i] for i in fit_ok], [quality[i] for i in fit_ok]
        )
    out["fitted/cross-fitted"] = fitted
    return out, full_weights
