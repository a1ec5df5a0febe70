"""The label remade from its parts on train folds, for ``distill_cv.py --baselines_only``: the weighted mean at other
cosine weights, a second labeling run's self-evaluation beside the first's, and which of these each fold would
choose. Nothing here reads a grade: the folds' GPT-4 grades score what is made here, in distill_cv.py."""

from __future__ import annotations

import math

import numpy as np
from datasets import Dataset

from selfj_trl.labels import combine_labels


#: With a second labeling run: its self-evaluation and the standardised mean of both runs'.
SECOND_VIEWS = ("second_self_eval", "both_self_eval")
#: Self-evaluation view -> the name prefix of the labels remade from it (``label_w0.25``, ``label_both_w0.25``).
REMADE_FROM = {"self_eval": "label", "both_self_eval": "label_both"}


def remade_label(self_eval: np.ndarray, cosine: np.ndarray, weight: float) -> np.ndarray:
    """The weighted-mean label at ``weight`` from its two parts (NaN where either part is missing). A row's label
    depends on that row alone, so no fold leaks into another."""
    known = np.isfinite(self_eval) & np.isfinite(cosine)
    out = np.full(len(self_eval), math.nan)
    out[known] = combine_labels(list(self_eval[known]), list(cosine[known]), cosine_weight=weight)
    return out


def remade_labels(scores: dict[str, np.ndarray], weights: list[float]) -> dict[str, np.ndarray]:
    """Every label remade at every weight from the self-evaluation views ``scores`` holds."""
    return {
        f"{prefix}_w{w:g}": remade_label(scores[view], scores["cosine"], w)
        for view, prefix in REMADE_FROM.items()
        if view in scores
        for w in weights
    }


def with_second_self_eval(labeled: Dataset, second: Dataset) -> Dataset:
    """The rows both runs labeled, with the second run's self-evaluation and the mean of the two, each standardised
    over these rows and put back on the first's scale (so the cosine weight means what it meant): two signals on
    different scales would otherwise weigh by their spreads."""
    theirs = {(r["instruction"], r["response"]): r["self_eval_score"] for r in second}
    both = labeled.filter(lambda r: (r["instruction"], r["response"]) in theirs, keep_in_memory=True)
    if len(both) < 2:
        return both.select(range(0))
    first = np.array(both["self_eval_score"], dtype=float)
    other = np.array([theirs[r["instruction"], r["response"]] for r in both], dtype=float)

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / (x.std() or 1.0)

    mean = first.mean() + first.std() * (z(first) + z(other)) / 2
    return both.add_column("second_self_eval", list(other)).add_column("both_self_eval", list(mean))


def label_mixes(folds: list[dict]) -> list[str]:
    """The remade labels the folds hold, by family and then weight."""
    names = [v for v in (folds[0] if folds else {}) if v.startswith(tuple(REMADE_FROM.values())) and "_w" in v]
    return sorted(names, key=lambda v: (v.rsplit("_w", 1)[0], float(v.rsplit("_w", 1)[1])))


def mix_choice(folds: list[dict]) -> list[str]:
    """The remade label each fold would choose (mean of Spearman and within-instruction Spearman, the labeling
    report's criterion) and what it scores on the other folds: each choice is judged on rows it never saw."""
    mixes = label_mixes(folds)
    if not mixes or len(folds) < 2:
        return []

    def criterion(fold: dict, mix: str) -> float:
        return (fold[mix]["spearman"] + fold[mix]["within"]) / 2

    lines = ["", "Label chosen on one fold, scored on the others (mean of Spearman and within):", ""]
    for k, fold in enumerate(folds):
        best = max(mixes, key=lambda mix: criterion(fold, mix))
        others = [criterion(f, best) for j, f in enumerate(folds) if j != k]
        lines.append(
            f"- fold {k} chooses {best}: {criterion(fold, best):+.3f} there, {np.mean(others):+.3f} elsewhere"
        )
    return lines
