"""How good are the labels? Each Self-J label component measured against GPT-4 on AlpacaEval's train split.

A Self-J judge can only be as good as its labels, and a small offline policy is a weak evaluator. This report
(``selfj-trl signal``) scores a seeded sample of AlpacaEval *train* instructions x the 17 models' responses with every
label component (:mod:`.components`: the registered signals of :mod:`selfj_trl.signals` in their variants, and
response length) and reports how each tracks GPT-4-turbo's win probability (Spearman and Pearson, with bootstrap 95%
intervals that resample whole instructions, since the 17 responses to one instruction are not independent), then
every label of the family made from each self-evaluation (:mod:`.correlation`) and the ``selfj-trl label`` flags of
the best one. Only rows whose instruction has ``split == "train"`` are ever read; the test split is never touched.
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import SelfJInputError
from ..eval_sets import ADVERSARIAL_MODELS, load_alpaca_train_rows
from ..io import atomic_write_json, atomic_write_text, shared_data_dir
from ..models import DEFAULT_EMBEDDER, DEFAULT_POLICY, dtype_name
from .components import compute_components
from .config import LabelReportConfig
from .correlation import combined_labels, correlation_summary


def alpaca_eval_dir() -> Path | None:
    """The shared data folder's AlpacaEval copy (None when there is no shared data folder)."""
    root = shared_data_dir()
    return root / "alpaca_eval_gpt4" if root is not None else None


def run_label_report(config: LabelReportConfig) -> dict[str, Any]:
    """Score, correlate, write ``signal_report.json`` and ``signal_report.md`` into ``output_dir``; return the report."""
    started = time.perf_counter()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    rows = load_alpaca_train_rows(
        config.data_dir,
        config.n_instructions,
        models=config.models,
        seed=config.seed,
        max_instruction_chars=config.max_instruction_chars,
    )
    if {r["split"] for r in rows} != {"train"}:  # the loader guarantees it; a report on test rows must never exist
        raise SelfJInputError("refusing to measure on non-train rows.")
    scores, info, timing = compute_components(config, rows)
    scored_at = time.perf_counter()
    quality = [r["gpt4_win_prob"] for r in rows]
    clusters = [r["id"] for r in rows]
    honest = [r["model"] not in ADVERSARIAL_MODELS for r in rows]
    folds = [r["instruction_rank"] % config.fit_folds for r in rows]

    def summary(values: list[float]) -> dict:
        return correlation_summary(
            values, quality, clusters, n_bootstrap=config.n_bootstrap, seed=config.seed, honest=honest
        )

    components = {
        name: {**info[name], **summary(values)}
        for name, values in tqdm(scores.items(), desc="correlations", file=sys.stderr, leave=False)
    }
    # the self-evaluations `selfj-trl label` can produce (so every combined label below is one it can make)
    candidates = [
        n
        for n, i in info.items()
        if i.get("with_reference")
        and "normalisation" not in i
        and (i.get("readout") == "expected" or i["kind"] == "likelihood")
    ]
    combined: dict[str, dict] = {}
    fitted_weights: dict[str, list[float] | None] = {}
    for name in tqdm(candidates, desc="combined labels", file=sys.stderr, leave=False):
        labels, weights = combined_labels(
            scores[name],
            scores["cosine"],
            quality,
            folds,
            cosine_weights=config.cosine_weights,
            n_folds=config.fit_folds,
            fit_mask=honest if config.fit_without_adversarial else None,
        )
        fitted_weights[name] = list(weights) if weights is not None else None
        for variant, values in labels.items():
            combined[f"{name} + cosine | {variant}"] = {"self_eval": name, "label": variant, **summary(values)}

    def best_of(table: dict[str, dict], where: Callable[[str, dict], bool], key: str = "spearman") -> str | None:
        pool = [
            (v[key], k) for k, v in table.items() if where(k, v) and v.get(key) is not None and math.isfinite(v[key])
        ]
        return max(pool)[1] if pool else None

    report = {
        "policy": config.policy,
        "embedder": config.embedder,
        "dtype": dtype_name(config.dtype),
        "quality": "gpt4_win_prob (GPT-4-turbo's probability that the response beats the reference)",
        "data": {
            "dir": str(Path(config.data_dir) if config.data_dir else alpaca_eval_dir()),
            "splits_used": ["train"],
            "n_instructions": len({r["id"] for r in rows}),
            "n_rows": len(rows),
            "instruction_ids": list(dict.fromkeys(r["id"] for r in rows)),
            "models": sorted({r["model"] for r in rows}),
            "seed": config.seed,
        },
        "components": components,
        "combined": combined,
        "fitted_weights_all_rows": fitted_weights,
        "best": {
            "self_eval_with_reference": best_of(components, lambda k, v: k in candidates),
            "self_eval_without_reference": best_of(
                components, lambda k, v: not v.get("with_reference") and v["kind"] in ("digits", "likelihood")
            ),
            "label": best_of(combined, lambda k, v: True),
            "label_honest": best_of(combined, lambda k, v: True, key="spearman_honest"),
        },
        "timing": {
            "components": timing,
            "scoring_s_this_run": round(scored_at - started, 1),
            "total_s_this_run": round(time.perf_counter() - started, 1),
        },
        "config": asdict(config),
    }
    report["recommended"] = recommended_settings(report)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "signal_report.json", report)
    atomic_write_text(out / "signal_report.md", markdown_report(report))
    return report


def label_report(
    policy: str = DEFAULT_POLICY,
    embedder: str = DEFAULT_EMBEDDER,
    n_instructions: int = 24,
    models: list[str] | None = None,
    seed: int = 0,
    output_dir: str = "outputs/signal",
    **options: Any,
) -> dict[str, Any]:
    """Measure every label component of ``policy`` against GPT-4 on a seeded train slice (see the module docstring).

    ``options`` are the other :class:`LabelReportConfig` fields (``data_dir``, ``digit_variants``, ``max_length``, ...).
    """
    return run_label_report(
        LabelReportConfig(
            policy=policy,
            embedder=embedder,
            n_instructions=n_instructions,
            models=models,
            seed=seed,
            output_dir=output_dir,
            **options,
        )
    )


def recommended_settings(report: dict[str, Any]) -> dict[str, Any] | None:
    """The ``selfj-trl label`` settings of the best fixed-weight label: highest mean of the Spearman without the
    GPT-4-gaming models and the within-instruction Spearman.

    Why both: selective following and model ranking compare answers to different instructions, while best-of-n,
    GRPO/RLOO advantages and DPO pairs compare answers to the same one; a label good at only one makes a judge good
    at only one. Why honest rows: GPT-4 prefers NullModel's constant junk, so ranking by all rows would reward labels
    that like junk (the evaluation harness scores quality on honest rows too). ``fitted`` is left out: it needs a
    labelled dev slice, which a user may not have. Returns None when no label could be scored.
    """
    pool = []
    for key, v in report["combined"].items():
        scores = (v.get("spearman_honest"), v.get("within_instruction_spearman"))
        if not v["label"].startswith("fitted") and all(x is not None and math.isfinite(x) for x in scores):
            pool.append((sum(scores) / 2, key))
    if not pool:
        return None
    criterion, key = max(pool)
    entry = report["combined"][key]
    combination, _, weight = entry["label"].partition("/w=")
    se = report["components"][entry["self_eval"]]
    settings: dict[str, Any] = {"self_eval_method": se["kind"]}
    if se["kind"] == "likelihood":
        settings["likelihood_method"] = se["method"]
        if se.get("max_target_tokens"):
            settings["likelihood_target_tokens"] = se["max_target_tokens"]
    else:
        settings["prompt_style"] = se["style"]
    settings.update(cosine_weight=float(weight), combination=combination)
    return {
        "settings": settings,
        "label": key,
        "criterion": criterion,
        "spearman_honest": entry["spearman_honest"],
        "within_instruction_spearman": entry["within_instruction_spearman"],
        "spearman": entry["spearman"],
        "spearman_ci": entry["spearman_ci"],
    }


def label_flags(settings: dict[str, Any]) -> str:
    """Recommended settings as ``selfj-trl label`` flags (the report and the bench summary print the same line)."""
    return " ".join(f"--{k} {v:g}" if isinstance(v, float) else f"--{k} {v}" for k, v in settings.items())


def format_figure(v: float | None, signed: bool = True) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def format_interval(ci: list[float]) -> str:
    return f"[{format_figure(ci[0])}, {format_figure(ci[1])}]"


def markdown_report(report: dict[str, Any]) -> str:
    """Component-by-component table, then the label family, in Markdown."""
    d = report["data"]
    lines = [
        f"# Labeling signal vs GPT-4: {report['policy']}",
        "",
        (
            f"AlpacaEval **train** split only: {d['n_instructions']} instructions x {len(d['models'])} models = "
            f"{d['n_rows']} rows (seed {d['seed']}); models run in {report.get('dtype', 'float32')}. Quality = GPT-4-turbo win probability against the reference. "
            "95% intervals: percentile bootstrap over instructions. *honest* = without NullModel and gpt4_gamed; "
            "*within* = mean Spearman inside each instruction."
        ),
        "",
        "## Components",
        "",
        "| component | ref | Spearman [95% CI] | Pearson [95% CI] | honest | within | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in report["components"].items():
        notes = []
        if "digit_mass" in c and c["digit_mass"] is not None and math.isfinite(c["digit_mass"]):
            notes.append(f"digit mass {c['digit_mass']:.2f}")
        if c.get("response_truncated"):
            notes.append(f"resp cut {c['response_truncated']:.0%}")
        if c.get("unscorable"):
            notes.append(f"{c['unscorable']} unscorable")
        if "mean_gain" in c and c["mean_gain"] is not None:
            notes.append(f"mean gain {format_figure(c['mean_gain'])}")
        lines.append(
            f"| {name} | {'yes' if c.get('with_reference') else 'no'} | {format_figure(c['spearman'])} {format_interval(c['spearman_ci'])} "
            f"| {format_figure(c['pearson'])} {format_interval(c['pearson_ci'])} | {format_figure(c.get('spearman_honest'))} "
            f"| {format_figure(c['within_instruction_spearman'])} | {'; '.join(notes)} |"
        )
    weights = sorted(
        {k.split(" | ")[1] for k in report["combined"]},
        key=lambda v: (v.split("/")[0] != "weighted_mean", v.split("/")[0] != "rank_mean", v),
    )
    lines += [
        "",
        "## Combined label (Spearman with GPT-4; cosine weight w; fitted = cross-fitted over instructions)",
        "",
        "| self-evaluation | " + " | ".join(weights) + " |",
        "|---" * (len(weights) + 1) + "|",
    ]
    by_se: dict[str, dict[str, dict]] = defaultdict(dict)
    for v in report["combined"].values():
        by_se[v["self_eval"]][v["label"]] = v
    for se, cells in by_se.items():
        lines.append(
            f"| {se} | "
            + " | ".join(format_figure(cells[w]["spearman"]) if w in cells else "" for w in weights)
            + " |"
        )
    lines += ["", "## Best", ""]
    for key, name in report["best"].items():
        if name is None:
            continue
        table = report["combined"] if key.startswith("label") else report["components"]
        c = table[name]
        lines.append(
            f"- {key}: `{name}`: Spearman {format_figure(c['spearman'])} {format_interval(c['spearman_ci'])}, "
            f"Pearson {format_figure(c['pearson'])} {format_interval(c['pearson_ci'])}, honest {format_figure(c.get('spearman_honest'))}"
        )
    rec = report.get("recommended")
    if rec:
        flags = label_flags(rec["settings"])
        lines += [
            "",
            "## Recommended labeling settings",
            "",
            f"Best fixed-weight label by the mean of the Spearman without the GPT-4-gaming models and the "
            f"within-instruction Spearman: `{rec['label']}` (honest {format_figure(rec['spearman_honest'])}, within "
            f"{format_figure(rec['within_instruction_spearman'])}; all rows {format_figure(rec['spearman'])} "
            f"{format_interval(rec['spearman_ci'])}):",
            "",
            f"    selfj-trl label --policy {report['policy']} {flags} ...",
        ]
    lines += [
        "",
        "## Compute (cumulative over cached runs)",
        "",
        "| component | rows | seconds | s/row |",
        "|---|---|---|---|",
    ]
    for name, t in report["timing"]["components"].items():
        rate = t["seconds"] / t["rows"] if t["rows"] else math.nan
        lines.append(f"| {name} | {t['rows']} | {t['seconds']:.0f} | {format_figure(rate, signed=False)} |")
    lines.append(f"\nThis run: {report['timing']['total_s_this_run']} s.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from ..flags import parse

    (config,) = parse((LabelReportConfig,), argv, prog="selfj-trl signal")
    report = run_label_report(config)
    out = Path(config.output_dir).resolve()
    print(markdown_report(report))  # noqa: T201
    print(f"wrote {out / 'signal_report.json'} and {out / 'signal_report.md'}")  # noqa: T201
    return 0
