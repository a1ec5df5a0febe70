"""Scoring rows with a scorer, through a per-scorer cache in the output folder (a second report costs no scoring)."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SelfJInputError
from ..io import JsonlCache, atomic_write_json, content_hash, slug
from .scorers import ScorerEntry, row_hash


SCORE_CACHE_DIR = "score_cache"


class ScoreCache:
    """One append-only :class:`~selfj_trl.io.JsonlCache` of ``row_hash -> score`` per scorer under
    ``<output_dir>/score_cache``, plus the metrics computed from those scores.

    Scores are appended after every scored chunk, so an interrupted run keeps its work; a torn last line is ignored.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._scores: dict[str, JsonlCache] = {}

    def path(self, cache_id: str) -> Path:
        return self.root / f"{slug(cache_id)}-{content_hash(cache_id, length=10)}.jsonl"

    def load(self, cache_id: str) -> dict[str, float]:
        """Every score cached for ``cache_id``, read from disk now."""
        self._scores[cache_id] = JsonlCache(self.path(cache_id))
        return {h: float(s) for h, s in self._scores[cache_id].values.items()}

    def add(self, cache_id: str, scores: dict[str, float]) -> None:
        if cache_id not in self._scores:
            self._scores[cache_id] = JsonlCache(self.path(cache_id))
        self._scores[cache_id].add(scores)

    def load_metrics(self, key: str) -> dict | None:
        """Metrics computed earlier from exactly these scores and options (the bootstrap is the slow part)."""
        path = self.root / "metrics" / f"{key}.json"
        if not path.is_file():
            return None
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if text.strip() else None

    def save_metrics(self, key: str, metrics: dict) -> None:
        atomic_write_json(self.root / "metrics" / f"{key}.json", metrics, indent=None)


@dataclass
class ScoringStats:
    """What scoring one scorer on one set took: rows scored now, from the cache, unusable, without a reference."""

    scored: int = 0
    cached: int = 0
    failed: int = 0
    no_reference: int = 0
    seconds: float = 0.0


def unusable_text(instruction: Any, response: Any, reference: Any, needs_reference: bool) -> str | None:
    """Why a row cannot be scored (a missing or empty instruction, a missing response), or None when it can."""
    if not isinstance(instruction, str) or not instruction.strip():
        return "the instruction is missing or empty"
    if not isinstance(response, str):
        return "the response is not a string"
    if needs_reference and (not isinstance(reference, str) or not reference.strip()):
        return "the reference is missing or empty"
    return None


def score_rows(
    entry: ScorerEntry,
    instructions: Sequence[str],
    responses: Sequence[str],
    references: Sequence[str | None] | None,
    cache: ScoreCache,
    batch_size: int = 16,
    desc: str = "",
    counts: ScoringStats | None = None,
) -> np.ndarray:
    """Scores of every row, from the cache where possible; NaN where the row cannot be scored.

    Rows are deduplicated by hash and scored in chunks with a progress bar; each chunk is cached as it finishes.
    Rows without the reference a scorer needs are NaN (counted as ``no_reference``); rows with unusable text are NaN
    (counted as ``failed``), and a set where every row to score is unusable is an input error.
    """
    from tqdm.auto import tqdm

    n = len(responses)
    counts = counts if counts is not None else ScoringStats()
    references = list(references) if (entry.needs_reference and references is not None) else [None] * n
    hashes = [
        row_hash(i, r, ref if entry.needs_reference else None)
        for i, r, ref in zip(instructions, responses, references, strict=False)
    ]
    cached = cache.load(entry.cache_id)
    todo: dict[str, int] = {}
    unusable: dict[str, float] = {}
    first_problem = None
    for idx, h in enumerate(hashes):
        if h in cached or h in todo or h in unusable:
            continue
        if entry.needs_reference and references[idx] is None:
            cached[h] = math.nan
            counts.no_reference += 1
            continue
        problem = unusable_text(instructions[idx], responses[idx], references[idx], entry.needs_reference)
        if problem is not None:
            unusable[h] = math.nan
            first_problem = first_problem or f"row {idx}: {problem}"
            continue
        todo[h] = idx
    if unusable and not todo:
        raise SelfJInputError(f"{entry.name}: no row of {desc or 'this set'} can be scored ({first_problem}).")
    counts.failed += len(unusable)
    cached.update(unusable)
    counts.cached += n - len(todo) - len(unusable)
    start = time.perf_counter()
    chunk = max(4 * batch_size, 64)
    items = list(todo.items())
    with tqdm(
        total=len(items), desc=desc or entry.name, unit="row", disable=not items, leave=False, file=sys.stderr
    ) as bar:
        for lo in range(0, len(items), chunk):
            part = items[lo : lo + chunk]
            got = _call_scorer(
                entry,
                [instructions[i] for _, i in part],
                [responses[i] for _, i in part],
                [references[i] for _, i in part],
                batch_size,
            )
            new = {h: s for (h, _), s in zip(part, got, strict=False)}
            cache.add(entry.cache_id, new)
            cached.update(new)
            bar.update(len(part))
    counts.scored += len(items)
    counts.seconds += time.perf_counter() - start
    return np.array([cached[h] for h in hashes], dtype=float)


def _call_scorer(entry: ScorerEntry, instructions, responses, references, batch_size) -> list[float]:
    out = entry.scorer.score(
        list(instructions),
        list(responses),
        references=list(references) if entry.needs_reference else None,
        batch_size=batch_size,
    )
    out = [float(x) for x in out]
    if len(out) != len(responses):
        raise SelfJInputError(f"scorer {entry.name!r} returned {len(out)} scores for {len(responses)} rows.")
    return out
