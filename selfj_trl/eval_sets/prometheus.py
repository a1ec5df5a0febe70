"""Prometheus: MT-Bench (turn 2) and Vicuna-Bench answers with GPT-4 rubric scores 1-5 (mean of three)."""

from __future__ import annotations

from pathlib import Path

from .base import PointwiseSet, graded_set, load_shared_table
from .registry import register
from .sources import PROMETHEUS_SOURCE


PROMETHEUS = "prometheus"


@register(PROMETHEUS, aliases=("prometheus_gpt4",), public=PROMETHEUS_SOURCE)
def load_prometheus(
    data_dir: str | Path | None = None, max_instructions: int | None = None, seed: int = 0
) -> PointwiseSet:
    """Prometheus' MT-Bench (turn 2) and Vicuna-Bench items with GPT-4 rubric scores 1-5 (mean of three)."""
    table = load_shared_table(data_dir, "prometheus_gpt4/prometheus_gpt4_pointwise_mtbench_vicuna.jsonl")
    groups = [f"{b}-{q}" for b, q in zip(table["benchmark"], table["question_id"], strict=False)]
    return graded_set(
        PROMETHEUS,
        "Prometheus MT-Bench/Vicuna-Bench, GPT-4 rubric score 1-5",
        table,
        groups,
        max_instructions,
        seed,
        "judges see no rubric: they score (instruction, response) only, as in use.",
    )
