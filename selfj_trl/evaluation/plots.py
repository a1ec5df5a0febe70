"""Plots: coverage-quality curves per pointwise set, and per-model mean score against a set's leaderboard."""

from __future__ import annotations

import math
from pathlib import Path

from ..eval_sets import EvalSet, PointwiseSet
from ..io import atomic_savefig, slug
from .metrics import COVERAGES
from .report import number


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def write_plots(metrics: dict, sets: list[EvalSet], out_dir: Path) -> dict[str, str]:
    """Coverage-quality curves per pointwise set, and per-model mean score vs the leaderboard where a set has one.
    Returns ``{title: file name}``."""
    files: dict[str, str] = {}
    for ds in sets:
        res = metrics["eval_sets"][ds.name]
        if res["kind"] != "pointwise":
            continue
        fig = _figure(7, 4.5)
        ax = fig.add_subplot()
        coverage = [100 * c for c in COVERAGES]
        for scorer, r in res["scorers"].items():
            ax.plot(coverage, r["selective"]["curve"], marker="o", ms=3, label=scorer)
        ax.plot(coverage, res["orderings"]["oracle"]["curve"], "k--", label="oracle (GPT-4)")
        ax.plot(coverage, res["orderings"]["random (expected)"]["curve"], "k:", label="random (expected)")
        ax.set_xlabel("coverage: % of answers kept (highest score first)")
        ax.set_ylabel(f"mean {res['quality']} of kept answers")
        subset = " (honest models' answers)" if res.get("quality_rows", res["n"]) < res["n"] else ""
        ax.set_title(f"Selective instruction following: {ds.name}{subset}")
        ax.invert_xaxis()
        ax.legend(fontsize=7)
        fig.tight_layout()
        files[f"coverage-quality curves, {ds.name}"] = _save(fig, out_dir / f"coverage_{slug(ds.name)}.png")
        if isinstance(ds, PointwiseSet) and ds.leaderboard:
            files[f"per-model mean score vs leaderboard, {ds.name}"] = _ranking_plot(res, ds, out_dir)
    return files


def _ranking_plot(res: dict, ds: PointwiseSet, out_dir: Path) -> str:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    scorers = [(n, r) for n, r in res["scorers"].items() if "ranking" in r]
    panels = [("GPT-4 on these rows", res["gpt4_per_model_mean"], res["gpt4_rows_vs_leaderboard"]["honest"])]
    panels += [
        (n, r["ranking"]["per_model_mean"], r["ranking"].get("honest", r["ranking"]["all"])) for n, r in scorers
    ]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(4.2 * ncols, 3.6 * nrows)
    for k, (title, means, agreement) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for model, y in means.items():
            x = ds.leaderboard.get(model)
            if x is None or y is None or not math.isfinite(y):
                continue
            adversarial = model in ds.adversarial
            ax.scatter([x], [y], c="tab:red" if adversarial else "tab:blue", marker="x" if adversarial else "o", s=28)
            if adversarial:
                ax.annotate(model, (x, y), fontsize=7, color="tab:red", xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(ds.leaderboard_name)
        ax.set_ylabel("mean score")
        ax.set_title(f"{title}\nSpearman (honest) = {number(agreement.get('spearman'), 2)}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir / f"ranking_{slug(ds.name)}.png")


def _save(fig, path: Path) -> str:
    atomic_savefig(fig, path, dpi=110)
    return path.name
