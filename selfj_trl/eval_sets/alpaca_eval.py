"""AlpacaEval: 17 models' answers with GPT-4-turbo's win probability against the GPT-4 reference answer.

Particular to this set, and kept here: the two entries that game the GPT-4 annotator (:data:`ADVERSARIAL_MODELS`),
the leaderboard the models are ranked against, the reference each answer was judged against, and the train/test split
(train = oasst + helpful_base, for labeling; test = koala + vicuna + selfinstruct, held out).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SelfJInputError
from ..io import read_jsonl, shared_data_dir
from ..tables import load_table
from .base import PointwiseSet, data_file, data_root, masked, sample_groups
from .registry import register
from .sources import ALPACA_EVAL_SOURCE


ALPACA_EVAL = "alpaca_eval"
FOLDER = "alpaca_eval_gpt4"

#: AlpacaEval entries built to fool the GPT-4 annotator (see the data README): their GPT-4 labels are the gamed
#: ones, so quality metrics leave them out and the gaming check watches them.
ADVERSARIAL_MODELS = ("NullModel", "gpt4_gamed")


def _tables(data_dir: str | Path | None) -> tuple[list[dict], list[dict], list[dict]]:
    root = data_root(data_dir)
    return (
        list(load_table(str(data_file(root, f"{FOLDER}/instructions.jsonl")))),
        list(load_table(str(data_file(root, f"{FOLDER}/responses.jsonl")))),
        list(load_table(str(data_file(root, f"{FOLDER}/leaderboard.csv")))),
    )


@register(ALPACA_EVAL, aliases=("alpaca_eval_gpt4", "alpacaeval"), public=ALPACA_EVAL_SOURCE)
def load_alpaca_eval(
    data_dir: str | Path | None = None, split: str = "test", max_instructions: int | None = None, seed: int = 0
) -> PointwiseSet:
    """AlpacaEval responses of 17 models with GPT-4-turbo's win probability against the GPT-4 reference.

    ``split="test"`` (koala, vicuna, selfinstruct: 488 instructions) is the held-out set; ``"train"`` exists for
    in-domain sanity checks only and the report says so, since judges may have been trained on it.

    The test set carries the train split as its ``calibration`` set: a selective-following threshold is chosen on
    the scores of train-split answers and only then applied to test answers, so the rows a threshold gates never
    choose it. With ``max_instructions`` the calibration set is a slice of as many train instructions (a smoke run).
    The best-of-k pick is among the honest models' answers (:data:`ADVERSARIAL_MODELS` left out).
    """
    if split not in ("test", "train", "all"):
        raise SelfJInputError(f"split must be 'test' (held out), 'train' or 'all', got {split!r}.")
    tables = _tables(data_dir)
    calibration = _alpaca_set(tables, "train", max_instructions, seed) if split == "test" else None
    ds = _alpaca_set(tables, split, max_instructions, seed)
    ds.calibration = calibration
    if calibration is None:
        ds.notes.append(
            f"split={split!r} has no separate calibration split: selective-following thresholds are not "
            "calibrated here."
        )
    return ds


def _alpaca_set(
    tables: tuple[list[dict], list[dict], list[dict]], split: str, max_instructions: int | None, seed: int
) -> PointwiseSet:
    instructions, responses, board = tables
    by_id = {row["id"]: row for row in instructions if split == "all" or row["split"] == split}
    rows = sorted((r for r in responses if r["id"] in by_id), key=lambda r: (r["id"], r["model"]))
    if not rows:
        raise SelfJInputError(f"AlpacaEval has no responses in split {split!r}.")
    rows = masked(rows, sample_groups([r["id"] for r in rows], max_instructions, seed))
    kept_ids = sorted({r["id"] for r in rows})
    notes = []
    if split != "test":
        notes.append(
            f"split={split!r}: NOT held out; judges trained on AlpacaEval's train split have seen these instructions."
        )
    if max_instructions is not None:
        notes.append(f"quick run: {len(kept_ids)} instructions drawn with seed {seed}, all models' answers kept.")
    models = [r["model"] for r in rows]
    return PointwiseSet(
        name=ALPACA_EVAL,
        title=f"AlpacaEval (GPT-4-turbo annotator), {split} split",
        quality_name="gpt4_win_prob",
        instructions=[by_id[r["id"]]["instruction"] for r in rows],
        responses=[r["response"] for r in rows],
        references=[by_id[r["id"]]["reference"] for r in rows],
        quality=np.array([r["gpt4_win_prob"] for r in rows], dtype=float),
        groups=[r["id"] for r in rows],
        models=models,
        subsets=[by_id[r["id"]]["subset"] for r in rows],
        group_references={i: by_id[i]["reference"] for i in kept_ids},
        reference_win_threshold=0.5,
        leaderboard={row["model"]: float(row["win_rate"]) for row in board},
        leaderboard_name="AlpacaEval 2.0 win rate (%)",
        other_leaderboards={
            "length_controlled_win_rate": {row["model"]: float(row["length_controlled_win_rate"]) for row in board}
        },
        adversarial=ADVERSARIAL_MODELS,
        pick_models=tuple(sorted(set(models) - set(ADVERSARIAL_MODELS))),
        split=split,
        notes=notes,
    )


def load_alpaca_train_rows(
    data_dir: str | Path | None = None,
    n_instructions: int = 24,
    *,
    models: list[str] | None = None,
    seed: int = 0,
    max_instruction_chars: int | None = 1000,
) -> list[dict[str, Any]]:
    """A seeded sample of ``split == "train"`` instructions, each with every (kept) model's response and GPT-4's
    win probability, as rows with id, model, instruction, reference, response, gpt4_win_prob, split, subset and
    instruction_rank. Test instructions are dropped as the file is read and never reach any model.

    ``data_dir`` is the AlpacaEval folder itself (holding instructions.jsonl and responses.jsonl); by default the
    shared data folder's ``alpaca_eval_gpt4``. A larger ``n_instructions`` extends a smaller one (same seeded order),
    so caches keyed by row stay valid.
    """
    shared = shared_data_dir() if data_dir is None else None
    folder = Path(data_dir) if data_dir is not None else (shared / FOLDER if shared is not None else None)
    if folder is None or not (folder / "instructions.jsonl").exists() or not (folder / "responses.jsonl").exists():
        raise SelfJInputError(
            f"no AlpacaEval data at {folder or '../shared/data/alpaca_eval_gpt4'}; pass --data_dir with "
            "instructions.jsonl (id, instruction, reference, split) and responses.jsonl (id, model, response, "
            "gpt4_win_prob)."
        )
    train = {r["id"]: r for r in read_jsonl(folder / "instructions.jsonl") if r.get("split") == "train"}
    eligible = sorted(
        i for i, r in train.items() if max_instruction_chars is None or len(r["instruction"]) <= max_instruction_chars
    )
    if len(eligible) < 2:
        raise SelfJInputError(f"{folder}: fewer than 2 usable train instructions; check the split column.")
    random.Random(seed).shuffle(eligible)
    chosen = eligible[:n_instructions]  # a prefix of one seeded order: a larger n extends a smaller one
    rank = {i: k for k, i in enumerate(chosen)}
    keep_models = set(models) if models else None
    rows = []
    for r in read_jsonl(folder / "responses.jsonl"):
        if r["id"] not in rank or (keep_models is not None and r["model"] not in keep_models):
            continue
        if r.get("gpt4_win_prob") is None or not isinstance(r.get("response"), str):
            continue
        instruction = train[r["id"]]
        rows.append(
            {
                "id": r["id"],
                "model": r["model"],
                "instruction": instruction["instruction"],
                "reference": instruction["reference"],
                "response": r["response"],
                "gpt4_win_prob": float(r["gpt4_win_prob"]),
                "split": instruction["split"],
                "subset": instruction.get("subset"),
                "instruction_rank": rank[r["id"]],
            }
        )
    if keep_models is not None and not {r["model"] for r in rows}:
        raise SelfJInputError(f"none of --models {sorted(keep_models)} has responses in {folder}.")
    rows.sort(key=lambda r: (r["instruction_rank"], r["model"]))
    return rows
