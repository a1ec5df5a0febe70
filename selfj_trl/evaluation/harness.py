"""The harness: score every held-out set with every judge and baseline, compute the metrics (reused when scores
and options are unchanged), and write ``metrics.json``, ``report.md`` and the plots."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import mark_complete, open_for_writing
from ..errors import SelfJInputError
from ..eval_sets import BUILTIN_SETS, EvalSet, PairwiseSet, PointwiseSet, load_eval_set
from ..flags import dtype_field
from ..io import atomic_write_text, jsonable
from ..models import DEFAULT_EMBEDDER, dtype_name
from .compare import COMPARED_WITH, paired_pairwise, paired_pointwise
from .metrics import (
    COVERAGES,
    TARGET_COVERAGES,
    curve_summary,
    gaming_check,
    per_model_means,
    ranking_agreement,
    selective_curve,
)
from .plots import write_plots
from .report import REPORT_COMMAND, REPORT_WHAT, render_report, report_files
from .scorers import BASELINE_HELP, LengthScorer, ScorerEntry, resolve_scorers
from .scoring import SCORE_CACHE_DIR, ScoreCache, ScoringStats, score_rows
from .set_metrics import evaluate_pairwise, evaluate_pointwise, honest_mask, pick_reference


#: Bumped whenever a metric's definition changes, so cached metrics from older code are not reused.
#: 5: intervals leave out resamples where a statistic is undefined (selfj_trl.stats.cluster_bootstrap).
#: 6: best-of-k pick, within-question Spearman interval, thresholds calibrated on a separate split.
METRICS_VERSION = 7


@dataclass
class EvaluationConfig:
    """Options of ``selfj-trl evaluate`` (flags or ``--config evaluate.yaml``)."""

    output_dir: str = field(metadata={"help": "Folder for metrics.json, report.md, plots and the score cache."})
    judges: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Judge folders or Hub ids (a judge trained with distill_weight=0 is just another path); add "
            "':teacher' (PATH:teacher) to score the judge's teacher view, with the reference shown, where a set "
            "has references."
        },
    )
    baselines: list[str] = field(
        default_factory=lambda: ["length", "random"], metadata={"help": f"Baselines by name: {BASELINE_HELP}."}
    )
    eval_sets: list[str] = field(
        default_factory=lambda: list(BUILTIN_SETS),
        metadata={
            "help": "alpaca_eval, mtbench, prometheus, human_pairwise (default: all four, every row), any registered set, "
            "or a dataset path / Hub id with instruction, response and a quality column."
        },
    )
    split: str = field(
        default="test",
        metadata={
            "help": "AlpacaEval split: 'test' is held out; 'train' only for in-domain checks (labelled as such)."
        },
    )
    max_instructions: int | None = field(
        default=None,
        metadata={
            "help": "Smoke run: this many instructions (questions, pairs) per set, drawn with --seed (the report says it "
            "is a slice). Default: every row."
        },
    )
    target_coverages: list[float] = field(
        default_factory=lambda: list(TARGET_COVERAGES),
        metadata={
            "help": "Coverages at which a selective-following threshold is calibrated on the set's calibration split "
            "(AlpacaEval: the train split's answers) and then applied to the evaluated rows; an empty list (config "
            "file or Python) skips the calibration split and its scoring."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed for slicing, the random baseline, ties and the bootstrap."})
    batch_size: int = field(default=16, metadata={"help": "Batch size passed to each scorer."})
    quality_column: str | None = field(default=None, metadata={"help": "Quality column of a custom eval set."})
    data_dir: str | None = field(default=None, metadata={"help": "The shared data folder (default ../shared/data)."})
    embedder: str = field(default=DEFAULT_EMBEDDER, metadata={"help": "Sentence-transformers model of `cosine`."})
    dtype: str = dtype_field()
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples (0 turns intervals off)."})
    confidence_level: float = field(default=0.95, metadata={"help": "Confidence level of the intervals."})


@dataclass(frozen=True)
class BootstrapOptions:
    n_resamples: int = 1000
    confidence_level: float = 0.95
    seed: int = 0


def evaluate_judges(
    judges: Sequence[Any],
    eval_sets: Sequence[Any],
    output_dir: str | Path,
    *,
    baselines: Sequence[str] = (),
    split: str = "test",
    max_instructions: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    quality_column: str | None = None,
    data_dir: str | Path | None = None,
    embedder: str = DEFAULT_EMBEDDER,
    dtype: str = "auto",
    bootstrap_resamples: int = 1000,
    confidence_level: float = 0.95,
    plots: bool = True,
    target_coverages: Sequence[float] = TARGET_COVERAGES,
) -> dict[str, Any]:
    """Score every set with every judge and baseline, write ``metrics.json``, ``report.md`` and plots; return metrics.

    ``judges`` may mix judge folders / Hub ids, baseline names and objects with ``.score``; ``baselines`` is a
    convenience for the names. ``eval_sets`` may mix registered set names, loaded sets and tables. Scores are cached
    under ``output_dir/score_cache``; a set's calibration split (AlpacaEval test: the train split) is scored through
    the same cache and only chooses the thresholds at ``target_coverages``.
    """
    started = time.perf_counter()
    specs = list(judges) + [b for b in baselines if b not in judges]
    if not specs:
        raise SelfJInputError("nothing to evaluate: pass --judges PATH and/or --baselines NAME.")
    if not eval_sets:
        raise SelfJInputError("no eval set given: pass --eval_sets alpaca_eval (or another set).")
    if batch_size <= 0:
        raise SelfJInputError(f"batch_size must be positive, got {batch_size}.")
    if not 0 < confidence_level < 1:
        raise SelfJInputError(f"confidence_level must be in (0, 1), got {confidence_level}.")
    target_coverages = tuple(float(c) for c in target_coverages)
    if any(not 0 < c <= 1 for c in target_coverages):
        raise SelfJInputError(f"target_coverages must be in (0, 1], got {list(target_coverages)}.")
    entries = resolve_scorers(specs, embedder=embedder, seed=seed, dtype=dtype)
    sets = [
        load_eval_set(
            s,
            data_dir=data_dir,
            split=split,
            max_instructions=max_instructions,
            seed=seed,
            quality_column=quality_column,
        )
        for s in eval_sets
    ]
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise SelfJInputError(f"an eval set is listed twice: {names}.")
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = ScoreCache(out_dir / SCORE_CACHE_DIR)
    bootstrap = BootstrapOptions(bootstrap_resamples, confidence_level, seed)

    metrics: dict[str, Any] = {
        "config": {
            "split": split,
            "max_instructions": max_instructions,
            "seed": seed,
            "batch_size": batch_size,
            "bootstrap_resamples": bootstrap_resamples,
            "confidence_level": confidence_level,
            "embedder": embedder,
            "dtype": dtype_name(dtype),
            "coverages": list(COVERAGES),
            "target_coverages": list(target_coverages),
        },
        "scorers": {
            e.name: {"kind": e.kind, "cache_id": e.cache_id, "needs_reference": e.needs_reference} for e in entries
        },
        "eval_sets": {},
    }
    for ds in sets:
        metrics["eval_sets"][ds.name] = evaluate_set(
            ds, entries, cache, batch_size, bootstrap, target_coverages=target_coverages
        )
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    open_for_writing(out_dir, REPORT_WHAT, REPORT_COMMAND)  # refused from here until its marker is written
    metrics["plots"] = write_plots(metrics, sets, out_dir) if plots else {}
    atomic_write_text(out_dir / "metrics.json", json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n")
    atomic_write_text(out_dir / "report.md", render_report(metrics))
    mark_complete(out_dir, report_files(metrics), REPORT_WHAT)
    return metrics


def evaluate_set(
    ds: EvalSet,
    entries: list[ScorerEntry],
    cache: ScoreCache,
    batch_size: int,
    bootstrap: BootstrapOptions,
    *,
    target_coverages: Sequence[float] = TARGET_COVERAGES,
) -> dict[str, Any]:
    """One set's part of ``metrics.json``: the set's own reference figures, then every scorer's metrics."""
    result: dict[str, Any] = {"title": ds.title, "kind": ds.kind, "n": len(ds), "notes": list(ds.notes), "scorers": {}}
    if isinstance(ds, PointwiseSet):
        result.update(_pointwise_reference_figures(ds, bootstrap))
    scores: dict[str, Any] = {}
    for entry in entries:
        scored = score_and_evaluate(ds, entry, cache, batch_size, bootstrap, target_coverages=target_coverages)
        result["scorers"][entry.name], scores[entry.name] = scored.metrics, scored.scores
    if isinstance(ds, PairwiseSet):
        length = LengthScorer("chars")
        score_a = np.array(length.score(ds.instructions, ds.responses_a))
        score_b = np.array(length.score(ds.instructions, ds.responses_b))
        result["longer_answer_wins"] = evaluate_pairwise(ds, score_a, score_b, n_resamples=0)["accuracy"]
    result["paired"] = compare_with_baseline(ds, entries, scores, bootstrap)
    return result


def compare_with_baseline(
    ds: EvalSet, entries: list[ScorerEntry], scores: dict[str, Any], bootstrap: BootstrapOptions
) -> dict[str, Any]:
    """Each judge minus the length baseline on the same resampled instructions, when both were evaluated
    (``scores``: each scorer's scores on the set, as :func:`score_and_evaluate` returned them)."""
    baseline = next((e for e in entries if e.name == COMPARED_WITH), None)
    judges = [e for e in entries if e.kind == "judge"]
    if baseline is None or not judges or bootstrap.n_resamples <= 0:
        return {}
    compare = paired_pointwise if isinstance(ds, PointwiseSet) else paired_pairwise
    return {
        "against": baseline.name,
        "judges": {e.name: compare(ds, scores[e.name], scores[baseline.name], **asdict(bootstrap)) for e in judges},
    }


def _pointwise_reference_figures(ds: PointwiseSet, bootstrap: BootstrapOptions) -> dict[str, Any]:
    """The oracle and random orderings and picks, the calibration split, and how the annotator's own per-model means
    rank against the leaderboard."""
    out: dict[str, Any] = {"quality": ds.quality_name, "split": ds.split}
    out["best_of_k"] = pick_reference(ds, bootstrap.n_resamples, bootstrap.confidence_level, bootstrap.seed)
    calibration = ds.calibration
    out["calibration"] = (
        None
        if calibration is None
        else {
            "title": calibration.title,
            "split": calibration.split,
            "n_rows": int(honest_mask(calibration).sum()),
            "n_groups": len(set(calibration.groups)),
            "notes": list(calibration.notes),
        }
    )
    tiebreak = np.random.default_rng(bootstrap.seed).random(len(ds))
    honest = honest_mask(ds)
    q = ds.quality[honest]
    oracle = selective_curve(q, q, COVERAGES, tiebreak[honest])
    out["quality_rows"] = int(honest.sum())
    out["orderings"] = {
        "oracle": {"curve": oracle.tolist(), **curve_summary(oracle)},
        "random (expected)": {
            "curve": [float(q.mean())] * len(COVERAGES),
            **curve_summary(np.full(len(COVERAGES), q.mean())),
        },
    }
    notes = list(ds.notes)
    if not honest.all():
        notes.append(
            f"quality metrics use the {int(honest.sum())} answers of honest models: the adversarial entries' "
            "GPT-4 labels are the gamed ones (see the gaming check); all-row figures follow the table."
        )
    out["notes"] = notes
    if all(m is not None for m in ds.models):
        annotator_means = per_model_means(ds.quality, ds.models)
        out["gpt4_per_model_mean"] = annotator_means
        if ds.leaderboard:
            out["gpt4_rows_vs_leaderboard"] = {
                "all": ranking_agreement(annotator_means, ds.leaderboard),
                "honest": ranking_agreement(annotator_means, ds.leaderboard, exclude=ds.adversarial),
                "leaderboard_gaming": gaming_check(ds.leaderboard, ds.adversarial),
            }
    return out


def metrics_key(
    ds: EvalSet,
    entry: ScorerEntry,
    bootstrap: BootstrapOptions,
    *arrays: Any,
    target_coverages: Sequence[float] = TARGET_COVERAGES,
) -> str:
    """Identity of one scorer's metrics on one set: the set, the scores and every option the metrics read."""
    pointwise = isinstance(ds, PointwiseSet)
    truth = ds.quality.tolist() if pointwise else ds.labels
    digest = hashlib.sha1(
        json.dumps(
            [
                METRICS_VERSION,
                ds.name,
                len(ds),
                entry.needs_reference,
                asdict(bootstrap),
                list(COVERAGES),
                list(target_coverages),
                list(getattr(ds, "pick_models", None) or []),
                truth,
                ds.groups if pointwise else ds.subsets,
                getattr(ds, "models", None),
                getattr(ds, "leaderboard", None),
                list(getattr(ds, "adversarial", ())),
                getattr(ds, "reference_win_threshold", None),
                {k: list(v) for k, v in getattr(ds, "subset_totals", {}).items()},
            ],
            sort_keys=True,
        ).encode()
    )
    for a in arrays:
        encoded = json.dumps(a, sort_keys=True).encode() if isinstance(a, dict) else np.asarray(a, float).tobytes()
        digest.update(encoded)
    return digest.hexdigest()[:20]


def evaluate_scorer(
    ds: EvalSet,
    entry: ScorerEntry,
    cache: ScoreCache,
    batch_size: int,
    bootstrap: BootstrapOptions,
    *,
    target_coverages: Sequence[float] = TARGET_COVERAGES,
) -> dict[str, Any]:
    """Score one set with one scorer and compute its metrics (reused from the cache when scores are unchanged)."""
    return score_and_evaluate(ds, entry, cache, batch_size, bootstrap, target_coverages=target_coverages).metrics


@dataclass
class ScoredSet:
    """One scorer on one set: its metrics, and the scores they came from (a pointwise set's array, or a pairwise
    set's pair of arrays for answers A and B), kept so comparisons between scorers do not score again."""

    metrics: dict[str, Any]
    scores: Any


def score_and_evaluate(
    ds: EvalSet,
    entry: ScorerEntry,
    cache: ScoreCache,
    batch_size: int,
    bootstrap: BootstrapOptions,
    *,
    target_coverages: Sequence[float] = TARGET_COVERAGES,
) -> ScoredSet:
    """:func:`evaluate_scorer`, handing back the scores too."""
    counts, calibration_counts = ScoringStats(), ScoringStats()
    options = asdict(bootstrap)
    if isinstance(ds, PointwiseSet):
        scores = score_rows(
            entry,
            ds.instructions,
            ds.responses,
            ds.references,
            cache,
            batch_size,
            f"{entry.name} on {ds.name}",
            counts,
        )
        reference_scores = None
        if ds.group_references is not None and not entry.needs_reference:
            group_ids = list(ds.group_references)
            instruction_of = dict(zip(ds.groups, ds.instructions, strict=False))
            values = score_rows(
                entry,
                [instruction_of[g] for g in group_ids],
                [ds.group_references[g] for g in group_ids],
                None,
                cache,
                batch_size,
                f"{entry.name} on {ds.name} references",
                counts,
            )
            reference_scores = dict(zip(group_ids, values.tolist(), strict=False))
        calibration_scores = None
        if ds.calibration is not None and target_coverages:  # only its scores are read: they choose thresholds
            calibration = ds.calibration
            rows = honest_mask(calibration)
            calibration_scores = score_rows(
                entry,
                [t for t, k in zip(calibration.instructions, rows, strict=False) if k],
                [t for t, k in zip(calibration.responses, rows, strict=False) if k],
                [t for t, k in zip(calibration.references, rows, strict=False) if k],
                cache,
                batch_size,
                f"{entry.name} on {ds.name} calibration ({calibration.split} split)",
                calibration_counts,
            )
        key = metrics_key(
            ds,
            entry,
            bootstrap,
            scores,
            reference_scores or {},
            calibration_scores if calibration_scores is not None else [],
            target_coverages=target_coverages,
        )
        result = cache.load_metrics(key)
        if result is None:
            result = evaluate_pointwise(
                ds,
                scores,
                reference_scores,
                calibration_scores=calibration_scores,
                target_coverages=tuple(target_coverages),
                **options,
            )
            if entry.needs_reference and ds.group_references is not None:
                result["vs_reference"] = None  # cos(reference, reference) = 1: the comparison says nothing
            cache.save_metrics(key, result)
    else:
        score_a = score_rows(
            entry,
            ds.instructions,
            ds.responses_a,
            ds.references,
            cache,
            batch_size,
            f"{entry.name} on {ds.name} (a)",
            counts,
        )
        score_b = score_rows(
            entry,
            ds.instructions,
            ds.responses_b,
            ds.references,
            cache,
            batch_size,
            f"{entry.name} on {ds.name} (b)",
            counts,
        )
        key = metrics_key(ds, entry, bootstrap, score_a, score_b)
        result = cache.load_metrics(key)
        if result is None:
            result = evaluate_pairwise(ds, score_a, score_b, **options)
            cache.save_metrics(key, result)
    result["scoring"] = asdict(counts)
    result["scoring"]["seconds"] = round(counts.seconds, 2)
    if calibration_counts.scored or calibration_counts.cached:
        result["calibration_scoring"] = asdict(calibration_counts) | {"seconds": round(calibration_counts.seconds, 2)}
    if entry.needs_reference and counts.no_reference:
        result["note"] = (
            f"{entry.name} needs the reference: {counts.no_reference} rows without one are left out of its metrics."
        )
    return ScoredSet(result, scores if isinstance(ds, PointwiseSet) else (score_a, score_b))
