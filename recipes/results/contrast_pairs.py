"""Contrast answers paired with the answer of their own instruction they were built from (said twice, padded, cut:
selfj_trl.labeling.contrast), and how often a scorer puts the contrast answer below its source: whether writing
more, or less, buys a scorer's favour (``distill_cv.py --contrast``)."""

from __future__ import annotations

import numpy as np
from datasets import Dataset


#: Contrast kinds built from one of the instruction's own answers, whose scorer's order against that answer is
#: reported: the share of pairs where the contrast answer scores below its source (ties half).
SOURCED_KINDS = ("repeated", "padded", "cut")


def source_of(kind: str, response: str, answers: list[str]) -> str | None:
    """The instruction's own answer a contrast answer was built from (contrast.CONTRAST_KINDS), by its text."""
    if kind == "repeated":
        half = response[: (len(response) - 2) // 2]
        return half if response == f"{half}\n\n{half}" and half in answers else None
    if kind == "padded":
        return max((a for a in answers if response.startswith(f"{a}\n\n")), key=len, default=None)
    if kind == "cut":
        return next((a for a in answers if a.startswith(response) and len(a) > len(response)), None)
    return None


def contrast_pairs(contrast: Dataset, labeled: Dataset, instructions: set[str]) -> list[dict]:
    """(contrast answer, its source answer) pairs of the given instructions, with both labels."""
    label_of = {(r["instruction"], r["response"]): r["label"] for r in labeled if r["instruction"] in instructions}
    answers: dict[str, list[str]] = {}
    for ins, resp in label_of:
        answers.setdefault(ins, []).append(resp)
    pairs = []
    for r in contrast:
        if r["instruction"] not in instructions or r["model"] not in SOURCED_KINDS:
            continue
        source = source_of(r["model"], r["response"], answers.get(r["instruction"], []))
        if source is not None:
            pairs.append(
                {
                    "kind": r["model"],
                    "instruction": r["instruction"],
                    "response": r["response"],
                    "source": source,
                    "label": r["label"],
                    "source_label": label_of[(r["instruction"], source)],
                }
            )
    return pairs


def below_source(pairs: list[dict], scores: np.ndarray, source_scores: np.ndarray) -> dict[str, float]:
    """Per kind: the share of pairs whose contrast answer scores below its source answer (ties count half)."""
    out = {}
    for kind in SOURCED_KINDS:
        idx = [i for i, p in enumerate(pairs) if p["kind"] == kind]
        if idx:
            diff = scores[idx] - source_scores[idx]
            out[kind] = float(np.mean((diff < 0) + 0.5 * (diff == 0)))
    return out
