"""``selfj-trl evaluate``: is a judge any good, on data nobody here wrote, next to the baselines it must beat?

One module per concern:

* :mod:`.scorers`: baselines by name (``length``, ``random``, ``cosine``, ``self_eval_noref:POLICY``) and trained
  judges (a folder or Hub id; ``PATH:teacher`` for the teacher view), resolved into uniquely named
  :class:`ScorerEntry` objects;
* :mod:`.metrics`: pure metric functions on arrays (correlations, agreement with a verdict against a reference,
  model ranking and the gaming check, selective-following curves and thresholds calibrated on other rows, the
  best-of-k pick, within-question correlation, intervals);
* :mod:`.set_metrics`: every metric of one scorer on one held-out set, with cluster-bootstrap intervals;
* :mod:`.compare`: a judge minus the length baseline, both read from the same resampled instructions;
* :mod:`.scoring`: scoring rows through a per-scorer cache in the output folder;
* :mod:`.harness`: :func:`evaluate_judges` and :class:`EvaluationConfig`;
* :mod:`.report` and :mod:`.plots`: ``report.md`` and the figures; :mod:`.command`: the command line.

Held-out sets come from :mod:`selfj_trl.eval_sets`, registered by name.
"""

from .command import main
from .compare import COMPARED_WITH, paired_pairwise, paired_pointwise
from .harness import (
    METRICS_VERSION,
    EvaluationConfig,
    ScoredSet,
    evaluate_judges,
    evaluate_scorer,
    evaluate_set,
    score_and_evaluate,
)
from .metrics import (
    COVERAGES,
    TARGET_COVERAGES,
    agreement_with_reference,
    calibrated_selection,
    correlations,
    curve_summary,
    gaming_check,
    group_picks,
    per_model_means,
    preference_accuracy,
    ranking_agreement,
    selective_curve,
    within_group_correlations,
)
from .plots import write_plots
from .report import render_report, summary
from .scorers import (
    BASELINE_HELP,
    TEACHER_SUFFIX,
    CosineScorer,
    LengthScorer,
    RandomScorer,
    ScorerEntry,
    SelfEvalScorer,
    TeacherView,
    baseline_scorer,
    load_judge,
    resolve_scorers,
    row_hash,
)
from .scoring import SCORE_CACHE_DIR, ScoreCache, ScoringStats, score_rows
from .set_metrics import best_of_k, evaluate_pairwise, evaluate_pointwise, honest_mask, pick_mask, pick_reference


__all__ = [
    "BASELINE_HELP",
    "COMPARED_WITH",
    "COVERAGES",
    "METRICS_VERSION",
    "SCORE_CACHE_DIR",
    "TARGET_COVERAGES",
    "TEACHER_SUFFIX",
    "CosineScorer",
    "EvaluationConfig",
    "LengthScorer",
    "RandomScorer",
    "ScoreCache",
    "ScorerEntry",
    "ScoringStats",
    "ScoredSet",
    "SelfEvalScorer",
    "TeacherView",
    "agreement_with_reference",
    "baseline_scorer",
    "best_of_k",
    "calibrated_selection",
    "correlations",
    "curve_summary",
    "evaluate_judges",
    "evaluate_pairwise",
    "evaluate_pointwise",
    "evaluate_scorer",
    "evaluate_set",
    "gaming_check",
    "group_picks",
    "honest_mask",
    "load_judge",
    "main",
    "paired_pairwise",
    "paired_pointwise",
    "per_model_means",
    "pick_mask",
    "pick_reference",
    "preference_accuracy",
    "ranking_agreement",
    "render_report",
    "resolve_scorers",
    "row_hash",
    "score_and_evaluate",
    "score_rows",
    "selective_curve",
    "summary",
    "write_plots",
    "within_group_correlations",
]
