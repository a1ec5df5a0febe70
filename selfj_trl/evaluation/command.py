"""``selfj-trl evaluate`` (also ``python -m selfj_trl.evaluation``): flags or ``--config evaluate.yaml``."""

from __future__ import annotations

from pathlib import Path

from .harness import EvaluationConfig, evaluate_judges
from .report import summary


def main(argv: list[str] | None = None) -> int:
    """``selfj-trl evaluate --judges PATH ... --baselines length random cosine --eval_sets alpaca_eval ...``"""
    from ..flags import parse

    (cfg,) = parse((EvaluationConfig,), argv, prog="selfj-trl evaluate")
    metrics = evaluate_judges(
        cfg.judges,
        cfg.eval_sets,
        cfg.output_dir,
        baselines=cfg.baselines,
        split=cfg.split,
        max_instructions=cfg.max_instructions,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        quality_column=cfg.quality_column,
        data_dir=cfg.data_dir,
        embedder=cfg.embedder,
        dtype=cfg.dtype,
        bootstrap_resamples=cfg.bootstrap_resamples,
        confidence_level=cfg.confidence_level,
        target_coverages=cfg.target_coverages,
    )
    print(summary(metrics))  # noqa: T201 - the command line reports here
    out = Path(cfg.output_dir)
    print(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")  # noqa: T201
    return 0
