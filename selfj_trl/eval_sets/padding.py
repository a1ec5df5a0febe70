"""Padding: can writing more buy reward? AlpacaEval test answers against themselves said twice, padded with another
test instruction's answer, and cut to their first third.

Each test instruction draws one honest model's answer (seeded); its contrast answers are built from it by
:mod:`selfj_trl.labeling.contrast`, the same construction ``selfj-trl label --contrast_answers`` trains with. The
preferred side of every pair is the answer as written: said twice or followed by an unrelated answer it is no
better, and cut to a third it is unfinished. No grader is read: the order is the construction's. Response length
scores 0 on the repeated and padded pairs and 1 on the cut ones; a judge that prefers short answers wins the first
two and loses the third, so the rows are reported per kind and "repeated + padded" together.

Test split only (koala, vicuna, selfinstruct): the instructions and answers no judge trained on.
"""

from __future__ import annotations

import random
from pathlib import Path

from .alpaca_eval import ADVERSARIAL_MODELS, load_alpaca_eval
from .base import PairwiseSet, masked, sample_groups
from .registry import register
from .sources import ALPACA_EVAL_SOURCE


PADDING = "padding"
KINDS = ("repeated", "padded", "cut")


@register(PADDING, aliases=("alpaca_eval_padding",), public=ALPACA_EVAL_SOURCE)
def load_padding(
    data_dir: str | Path | None = None, max_instructions: int | None = None, seed: int = 0
) -> PairwiseSet:
    """3 pairs per AlpacaEval test instruction: an honest answer against its repeated, padded and cut versions."""
    from ..labeling.contrast import add_contrast_answers

    alpaca = load_alpaca_eval(data_dir, split="test")
    rows: dict[str, dict] = {}
    for ins, resp, ref, group, model in zip(
        alpaca.instructions, alpaca.responses, alpaca.references, alpaca.groups, alpaca.models, strict=True
    ):
        row = rows.setdefault(group, {"id": group, "instruction": ins, "reference": ref, "given": []})
        if model not in ADVERSARIAL_MODELS and resp and resp.strip():
            row["given"].append({"response": resp, "model": model})
    instructions = [r for r in rows.values() if r["given"]]
    keep = sample_groups([r["id"] for r in instructions], max_instructions, seed)
    built = add_contrast_answers(masked(instructions, keep), list(KINDS), seed)
    rng = random.Random(seed)
    pairs = []
    for row in built:
        for c in row["contrast"]:
            first = rng.random() < 0.5  # the answer as written on side A half the time
            a, b = (c["built_from"], c["response"]) if first else (c["response"], c["built_from"])
            pairs.append((row["instruction"], a, b, "A" if first else "B", c["model"], row["reference"]))
    notes = ["no grader read: the answer as written is preferred to its repeated, padded and cut versions."]
    if max_instructions is not None:
        notes.append(f"quick run: {len(built)} test instructions drawn with seed {seed}.")
    return PairwiseSet(
        name=PADDING,
        title="Padding: AlpacaEval test answers against themselves repeated, padded and cut",
        instructions=[p[0] for p in pairs],
        responses_a=[p[1] for p in pairs],
        responses_b=[p[2] for p in pairs],
        labels=[p[3] for p in pairs],
        subsets=[p[4] for p in pairs],
        references=[p[5] for p in pairs],
        notes=notes,
        subset_totals={"repeated + padded": ("repeated", "padded")},
    )
