"""Contrast answers: answers of known construction put beside an instruction's own, each labeled by the same Self-J
label as every other row (``--contrast_answers``; ``source="contrast"``, ``model`` = the kind).

Why: a judge learns only the contrasts its training rows hold. Policy samples or other models' answers to one
instruction differ mostly in length, so a judge learns "longer is better" (or, on a small policy's short samples,
"shorter is better"). These answers differ in what a judge should see instead: an answer to another instruction
(fluent, off-topic), an answer cut short (on-topic, unfinished), an answer said twice or padded with off-topic text
(longer, no better). Nothing here says which is better: that is the label's to say, and whether it says so is
measured (docs/results.md), not assumed.

Each instruction draws one *source* answer: one of its given answers (seeded), or its reference when it has none; the
"other instruction" text is another instruction's source answer. A new kind is one entry of :data:`CONTRAST_KINDS`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import SelfJInputError


@dataclass(frozen=True)
class ContrastContext:
    """What a contrast answer is built from, for one instruction."""

    source: str
    reference: str
    other: str | None


def first_third(text: str) -> str | None:
    """The text up to the end of its first third of words (None for a text of fewer than two words)."""
    words = list(re.finditer(r"\S+", text))
    if len(words) < 2:
        return None
    return text[: words[max(len(words) // 3, 1) - 1].end()]


#: kind -> the answer it builds (None: this instruction gets none of that kind).
CONTRAST_KINDS: dict[str, Callable[[ContrastContext], str | None]] = {
    "reference": lambda c: c.reference,
    "other_instruction": lambda c: c.other,
    "cut": lambda c: first_third(c.source),
    "repeated": lambda c: f"{c.source}\n\n{c.source}",
    "padded": lambda c: f"{c.source}\n\n{c.other}" if c.other else None,
}


def check_contrast_kinds(kinds: list[str] | None) -> list[str] | None:
    """The kinds asked for, in order and without repeats; unknown ones refused in one line."""
    if not kinds:
        return None
    unknown = [k for k in kinds if k not in CONTRAST_KINDS]
    if unknown:
        raise SelfJInputError(f"unknown contrast answer kind(s) {unknown}; choose from {sorted(CONTRAST_KINDS)}.")
    return list(dict.fromkeys(kinds))


def add_contrast_answers(rows: list[dict[str, Any]], kinds: list[str], seed: int) -> list[dict[str, Any]]:
    """Each row (an instruction of :func:`~selfj_trl.labeling.rows.prepare_rows`) with a ``contrast`` list of
    ``{"response", "model", "built_from"}`` (the kind in ``model``, the source answer in ``built_from``) in ``kinds``
    order. Deterministic in ``seed`` and the rows: all rows are drawn before
    any chunk is labeled, so one process and N processes, or a resumed run, make the same answers."""
    rng = random.Random(seed)
    sources = [
        rng.choice(row["given"])["response"] if row.get("given") else row["reference"] for row in rows
    ]  # no draw for a row without given answers: the references-only case draws only the "other" texts below
    out = []
    for i, row in enumerate(rows):
        others = [s for j, s in enumerate(sources) if j != i and s != sources[i]]
        context = ContrastContext(sources[i], row["reference"], rng.choice(others) if others else None)
        contrast = [
            {"response": text, "model": kind, "built_from": sources[i]}
            for kind in kinds
            if (text := CONTRAST_KINDS[kind](context)) and text.strip()
        ]
        out.append({**row, "contrast": contrast})
    return out
