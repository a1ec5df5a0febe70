"""The label-quality report (``selfj-trl signal``): every label component and every label of the family, measured
against GPT-4 on AlpacaEval's train split, and the ``selfj-trl label`` flags of the best label.

Modules: :mod:`.config` (settings, digit variants), :mod:`.components` (scores per row, cached), :mod:`.correlation`
(correlations with cluster-bootstrap intervals, the label family), :mod:`.report` (the report, Markdown, ``main``).
"""

from .components import compute_components
from .config import DEFAULT_DIGIT_VARIANTS, DigitVariant, LabelReportConfig, parse_digit_variant
from .correlation import combined_labels, correlation_summary
from .report import (
    alpaca_eval_dir,
    label_flags,
    label_report,
    main,
    markdown_report,
    recommended_settings,
    run_label_report,
)


__all__ = [
    "DEFAULT_DIGIT_VARIANTS",
    "DigitVariant",
    "LabelReportConfig",
    "alpaca_eval_dir",
    "combined_labels",
    "compute_components",
    "correlation_summary",
    "label_flags",
    "label_report",
    "main",
    "markdown_report",
    "parse_digit_variant",
    "recommended_settings",
    "run_label_report",
]
