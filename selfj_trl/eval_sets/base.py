"""The two shapes of a held-out set, and the helpers every set's loader shares.

* :class:`PointwiseSet`: (instruction, response) rows with an external quality score (GPT-4's win probability
  against a reference, or a GPT-4 grade). Correlation, within-question ordering, the best-of-k pick, selective
  following and model ranking read these.
* :class:`PairwiseSet`: (instruction, response_a, response_b) with a human preference label "A" | "B" | "tie".

What is particular to one set (which models game its annotator, which subsets are reported together, what its
leaderboard is called) is an attribute of the set object, set by the set's own loader; the metrics only read the
attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from ..errors import SelfJInputError
from ..io import shared_data_dir
from ..tables import load_table, require_columns


@dataclass
class PointwiseSet:
    """Rows scored one at a time against an external quality score."""

    name: str
    title: str
    quality_name: str
    instructions: list[str]
    responses: list[str]
    references: list[str | None]
    quality: np.ndarray
    groups: list[str]
    models: list[str | None]
    subsets: list[str | None]
    #: Each instruction's reference answer when the quality is a verdict against it (AlpacaEval): the reference is
    #: scored as a response too, to compare J(x, y) with J(x, r).
    group_references: dict[str, str] | None = None
    #: A quality above this means the response beat its reference (read only with ``group_references``).
    reference_win_threshold: float = 0.5
    #: Per-model target to rank models against (AlpacaEval's leaderboard win rate), and its axis label.
    leaderboard: dict[str, float] | None = None
    leaderboard_name: str = "leaderboard score"
    #: Further per-model targets to report the ranking against (e.g. a length-controlled win rate), by name.
    other_leaderboards: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Entries built to fool the annotator: left out of quality metrics, watched by the gaming check.
    adversarial: tuple[str, ...] = ()
    #: Models whose answers compete in the best-of-k pick (for each group, the quality of the scorer's top answer
    #: among them). None: every answer of a non-adversarial model in the group.
    pick_models: tuple[str, ...] | None = None
    #: Rows of a separate split (never the rows evaluated here) whose *scores* choose the selective-following
    #: threshold at a target coverage, which is then applied to this set; their quality is never read. None when the
    #: set has no such split (the report says so).
    calibration: PointwiseSet | None = None
    split: str | None = None
    notes: list[str] = field(default_factory=list)
    kind: str = "pointwise"

    def __len__(self) -> int:
        return len(self.responses)


@dataclass
class PairwiseSet:
    """Pairs of responses to one instruction with a preference label."""

    name: str
    title: str
    instructions: list[str]
    responses_a: list[str]
    responses_b: list[str]
    labels: list[str]
    subsets: list[str]
    references: list[str | None]
    notes: list[str] = field(default_factory=list)
    #: Accuracy rows reported over several subsets together: ``{row name: subsets}``.
    subset_totals: dict[str, tuple[str, ...]] = field(default_factory=dict)
    kind: str = "pairwise"

    def __len__(self) -> int:
        return len(self.labels)


EvalSet = PointwiseSet | PairwiseSet


# ---------------------------------------------------------------------------------------------------------------
# Locating the shared data and slicing it
# ---------------------------------------------------------------------------------------------------------------
def data_root(data_dir: str | Path | None = None) -> Path:
    """The shared data folder, or a one-line error saying how to point at it."""
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise SelfJInputError(
                f"data_dir {str(root)!r} is not a folder; pass the folder that holds alpaca_eval_gpt4/."
            )
        return root
    root = shared_data_dir()
    if root is None:
        raise SelfJInputError(
            "the held-out data folder (../shared/data next to the checkout) was not found; set SELFJ_SHARED_DATA or "
            "--data_dir to it, or evaluate on your own dataset path with instruction/response and a quality column."
        )
    return root


def data_file(root: Path, relative: str) -> Path:
    """A file of the shared data folder, or a one-line error when it is missing."""
    path = root / relative
    if not path.is_file():
        raise SelfJInputError(f"{path} is missing; the shared data folder {root} looks incomplete.")
    return path


def sample_groups(groups: list[str], max_groups: int | None, seed: int) -> np.ndarray:
    """Row mask keeping every row of ``max_groups`` instructions drawn with a fixed seed (all rows when None).

    Slicing by instruction rather than by row keeps every model's answer to the kept instructions, so per-model
    means and the per-instruction reference comparison stay meaningful on a quick run.
    """
    keep = np.ones(len(groups), dtype=bool)
    if max_groups is None:
        return keep
    if max_groups <= 0:
        raise SelfJInputError(f"max_instructions must be a positive integer, got {max_groups}.")
    unique = sorted(set(groups))
    if max_groups >= len(unique):
        return keep
    chosen = set(np.random.default_rng(seed).choice(len(unique), size=max_groups, replace=False).tolist())
    kept = {unique[i] for i in chosen}
    return np.array([g in kept for g in groups], dtype=bool)


def masked(values: list[Any], mask: np.ndarray) -> list[Any]:
    """The items of ``values`` where ``mask`` is true."""
    return [v for v, k in zip(values, mask, strict=False) if k]


# ---------------------------------------------------------------------------------------------------------------
# Building blocks of loaders
# ---------------------------------------------------------------------------------------------------------------
def graded_set(
    name: str, title: str, table: Dataset, groups: list[str], max_instructions: int | None, seed: int, note: str
) -> PointwiseSet:
    """A pointwise set from a table of instruction, response, label (a grade), model and optional reference and
    category columns, sliced by question."""
    require_columns(table, ["instruction", "response", "label", "model"], title)
    rows = list(table)
    mask = sample_groups(groups, max_instructions, seed)
    rows, groups = masked(rows, mask), masked(groups, mask)
    notes = [note]
    if max_instructions is not None:
        notes.append(f"quick run: {len(set(groups))} questions drawn with seed {seed}.")
    return PointwiseSet(
        name=name,
        title=title,
        quality_name="label",
        instructions=[r["instruction"] for r in rows],
        responses=[r["response"] for r in rows],
        references=[r.get("reference") for r in rows],
        quality=np.array([r["label"] for r in rows], dtype=float),
        groups=groups,
        models=[r["model"] for r in rows],
        subsets=[r.get("category") for r in rows],
        split="test",
        notes=notes,
    )


def pairwise_from_table(
    name: str,
    title: str,
    table: Dataset,
    max_instructions: int | None,
    seed: int,
    subset_totals: dict[str, tuple[str, ...]] | None = None,
) -> PairwiseSet:
    """A pairwise set from a table of instruction, response_a, response_b and label ('A', 'B' or 'tie')."""
    require_columns(
        table,
        ["instruction", "response_a", "response_b", "label"],
        title,
        "A pairwise set needs label 'A', 'B' or 'tie' per row.",
    )
    rows = list(table)
    bad = sorted({str(r["label"]) for r in rows} - {"A", "B", "tie"})
    if bad:
        raise SelfJInputError(f"{title}: `label` must be 'A', 'B' or 'tie', found {bad[:5]}.")
    ids = [str(r.get("id", i)) for i, r in enumerate(rows)]
    rows = masked(rows, sample_groups(ids, max_instructions, seed))
    notes = [] if max_instructions is None else [f"quick run: {len(rows)} pairs drawn with seed {seed}."]
    return PairwiseSet(
        name=name,
        title=title,
        instructions=[r["instruction"] for r in rows],
        responses_a=[r["response_a"] for r in rows],
        responses_b=[r["response_b"] for r in rows],
        labels=[r["label"] for r in rows],
        subsets=[str(r.get("subset") or "all") for r in rows],
        references=[r.get("reference") for r in rows],
        notes=notes,
        subset_totals=dict(subset_totals or {}),
    )


def load_shared_table(data_dir: str | Path | None, relative: str) -> Dataset:
    """A table of the shared data folder by its path inside it."""
    return load_table(str(data_file(data_root(data_dir), relative)))
