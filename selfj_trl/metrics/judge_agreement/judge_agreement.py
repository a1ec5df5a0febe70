"""Judge agreement: how well a judge's scores agree with a grader's (an ``evaluate`` metric module).

Shipped inside the ``selfj-trl`` package and loaded from there, with no Hub access::

    import evaluate
    from selfj_trl.evaluation.metrics import JUDGE_AGREEMENT

    metric = evaluate.load(JUDGE_AGREEMENT, "correlation")
    metric.compute(predictions=[0.2, 0.9, 0.4, 0.7], references=[1.0, 8.0, 3.0, 5.0])

The maths lives in :mod:`selfj_trl.stats` and :mod:`selfj_trl.evaluation.metrics` (the held-out evaluation's own
functions); this module is their public face, so a number computed here is the number ``selfj-trl evaluate``
reports. Rows with a NaN or infinite value on either side are left out everywhere.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from selfj_trl.evaluation.metrics import (
    COVERAGES,
    correlations,
    curve_summary,
    preference_accuracy,
    selective_curve,
    within_group_correlations,
)


_DESCRIPTION = """
Agreement between a judge (reward model) and a grader (GPT-4, humans, a benchmark's quality label), as Self-J
(Ye and Ng, 2024) measures it. Configurations:

- `correlation` (default): Pearson, Spearman and Kendall correlation of scores with the grader's quality.
- `within_group`: mean Pearson and Spearman among the answers to the same instruction (`groups`), over groups
  where both vary: does the judge order one instruction's answers as the grader does?
- `pairwise`: share of pairs where the judge prefers the answer the grader preferred (exact ties earn one half).
- `selective`: selective instruction following: the grader's mean quality of the answers kept when only the top
  fraction by score is answered, at coverages 10%..100%, the area under that curve and the quality at 50% and 80%.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): the judge's score of each answer (`pairwise`: of the first answer, A).
    references (`list` of `float`): the grader's quality of each answer (`pairwise`: 1 when A is preferred, 0 when
        B is).
    predictions_b (`list` of `float`, `pairwise` only): the judge's score of the second answer, B.
    groups (`list` of `str`, `within_group` only): the instruction each answer responds to.
    kendall (`bool`, `correlation`, default True): also compute Kendall's tau-b.
    coverages (`list` of `float`, `selective`): fractions of answers kept (default 0.1, 0.2, ..., 1.0).
    tiebreak (`list` of `float`, `selective`): a fixed random key breaking score ties (default: drawn with seed 0),
        so that a constant judge behaves like a random order.
Returns:
    `correlation`: `pearson`, `spearman`, `kendall`, `n` (rows compared).
    `within_group`: `pearson`, `spearman` (means over groups), `n_groups`, `n_groups_skipped`.
    `pairwise`: `accuracy`, `n` (pairs compared), `ties`.
    `selective`: `coverages`, `curve`, `auc`, `quality_at_50`, `quality_at_80`.
Examples:
    >>> metric = evaluate.load(JUDGE_AGREEMENT, "pairwise")
    >>> metric.compute(predictions=[0.9, 0.1], predictions_b=[0.2, 0.3], references=[1, 1])
    {'accuracy': 0.5, 'n': 2, 'ties': 0}
"""

_CITATION = """
@article{ye2024selfjudge,
  title   = {Self-Judge: Selective Instruction Following with Alignment Self-Evaluation},
  author  = {Ye, Hai and Ng, Hwee Tou},
  journal = {arXiv preprint arXiv:2409.00935},
  year    = {2024}
}
"""

_SCORE = datasets.Value("float64")
FEATURES = {
    "correlation": datasets.Features({"predictions": _SCORE, "references": _SCORE}),
    "within_group": datasets.Features(
        {"predictions": _SCORE, "references": _SCORE, "groups": datasets.Value("string")}
    ),
    "pairwise": datasets.Features(
        {"predictions": _SCORE, "predictions_b": _SCORE, "references": datasets.Value("int64")}
    ),
    "selective": datasets.Features({"predictions": _SCORE, "references": _SCORE}),
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class JudgeAgreement(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        config = self.config_name if self.config_name in FEATURES else "correlation"
        if self.config_name not in (config, "default"):
            raise ValueError(f"unknown configuration {self.config_name!r}: use one of {sorted(FEATURES)}.")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=FEATURES[config],  # handed over as Python lists: the numpy format would cast to float32
            homepage="https://arxiv.org/abs/2409.00935",
            license="apache-2.0",
            reference_urls=["https://arxiv.org/abs/2409.00935"],
        )

    def _compute(
        self,
        predictions,
        references,
        groups=None,
        predictions_b=None,
        kendall: bool = True,
        coverages=COVERAGES,
        tiebreak=None,
        per_group=None,
    ):
        config = self.config_name if self.config_name in FEATURES else "correlation"
        predictions, references = np.asarray(predictions, dtype=float), np.asarray(references, dtype=float)
        if config == "correlation":
            return correlations(predictions, references, kendall=kendall)
        if config == "within_group":
            # ``per_group``: stats.per_group_correlations of these rows, when the caller has it (the slow part).
            return within_group_correlations(predictions, references, list(groups), per_group)
        if config == "pairwise":
            return preference_accuracy(predictions, np.asarray(predictions_b, dtype=float), references.astype(bool))
        curve = selective_curve(predictions, references, coverages, tiebreak)
        return {"coverages": list(coverages), "curve": curve.tolist(), **curve_summary(curve, coverages)}
