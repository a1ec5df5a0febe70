"""Any table with instruction, response and a quality column (file, ``save_to_disk`` folder, Hub id or ``Dataset``)
as a pointwise set; a table with response_a, response_b and label as a pairwise set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SelfJInputError
from ..prompts import check_text
from ..tables import load_table, require_columns
from .base import EvalSet, PointwiseSet, masked, pairwise_from_table, sample_groups


#: Columns tried, in order, when a custom set does not name its quality column.
QUALITY_CANDIDATES = ("quality", "gpt4_win_prob", "label", "score")
#: Columns tried, in order, to group a custom set's rows by question.
GROUP_CANDIDATES = ("question_id", "group", "instruction_id")


def load_custom_set(
    source: Any,
    quality_column: str | None = None,
    split: str = "test",
    max_instructions: int | None = None,
    seed: int = 0,
    name: str | None = None,
) -> EvalSet:
    """A user's table as an evaluation set (pairwise when it has response_a/response_b/label)."""
    table = load_table(source, split)
    display = name or (Path(str(source)).stem if isinstance(source, (str, Path)) else "custom")
    if "response_a" in table.column_names and "response" not in table.column_names:
        return pairwise_from_table(display, display, table, max_instructions, seed)
    if quality_column is None:
        quality_column = next((c for c in QUALITY_CANDIDATES if c in table.column_names), None)
        if quality_column is None:
            raise SelfJInputError(
                f"{display} has no quality column (tried {list(QUALITY_CANDIDATES)}); it has {table.column_names}. "
                "Pass --quality_column NAME."
            )
    require_columns(
        table,
        ["instruction", "response", quality_column],
        display,
        "Rename columns with Dataset.rename_column or pass --quality_column.",
    )
    quality = numeric_column(table[quality_column], quality_column, display)
    if not np.isfinite(quality).any():
        raise SelfJInputError(f"{display}: column {quality_column!r} holds no finite number.")
    for i, (instruction, response) in enumerate(zip(table["instruction"], table["response"], strict=False)):
        check_text(instruction, f"instruction (row {i})")
        check_text(response, f"response (row {i})", allow_empty=True)
    columns = table.column_names
    group_column = next((c for c in GROUP_CANDIDATES if c in columns), None)
    groups = [str(g) for g in table[group_column]] if group_column else list(table["instruction"])
    mask = sample_groups(groups, max_instructions, seed)
    notes = [] if group_column else ["no question_id/group column: rows are grouped by instruction text."]
    if not np.isfinite(quality).all():
        notes.append(f"{int((~np.isfinite(quality)).sum())} rows without a finite {quality_column} are left out.")
        mask &= np.isfinite(quality)

    def column(name: str) -> list[Any]:
        return masked(table[name], mask) if name in columns else [None] * int(mask.sum())

    return PointwiseSet(
        name=display,
        title=f"{display} ({quality_column})",
        quality_name=quality_column,
        instructions=column("instruction"),
        responses=column("response"),
        references=column("reference"),
        quality=quality[mask],
        groups=masked(groups, mask),
        models=column("model"),
        subsets=column("subset") if "subset" in columns else column("category"),
        split=split,
        notes=notes,
    )


def numeric_column(values: list[Any], column: str, what: str) -> np.ndarray:
    """A column as floats (None as NaN), or a one-line error when it holds something else."""
    try:
        return np.array([np.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError) as err:
        raise SelfJInputError(f"{what}: quality column {column!r} must hold numbers ({err}).") from None
