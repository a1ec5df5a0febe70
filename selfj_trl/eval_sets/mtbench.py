"""MT-Bench turn 1: 22 models' answers to 80 questions with GPT-4 single-answer grades 1-10."""

from __future__ import annotations

from pathlib import Path

from .base import PointwiseSet, graded_set, load_shared_table
from .registry import register
from .sources import MTBENCH_SOURCE


MTBENCH = "mtbench"


@register(MTBENCH, aliases=("mt_bench", "mtbench_gpt4"), public=MTBENCH_SOURCE)
def load_mtbench(
    data_dir: str | Path | None = None, max_instructions: int | None = None, seed: int = 0
) -> PointwiseSet:
    """MT-Bench turn-1 answers of 22 models with GPT-4 single-answer grades 1-10 (the Self-J paper's kind of test)."""
    table = load_shared_table(data_dir, "mtbench_gpt4/mtbench_gpt4_single_turn1.jsonl")
    return graded_set(
        MTBENCH,
        "MT-Bench turn 1, GPT-4 grade 1-10",
        table,
        [str(q) for q in table["question_id"]],
        max_instructions,
        seed,
        "references exist only for math, reasoning and coding questions (what GPT-4 saw).",
    )
