"""Shards: nothing lost when a run dies.

Work is split in fixed chunks of instructions. Each chunk's rows are written to ``<output_dir>/shards/`` as soon as
they exist (atomically), so a killed run restarted with the same arguments skips what is done; under
``accelerate launch`` each process takes every N-th chunk. A manifest holds the settings' fingerprint so shards are
only ever reused by a run that would make the same rows.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import SelfJInputError
from ..io import atomic_write_text
from .config import LabelingConfig


def shard_path(shard_dir: Path, chunk: int, n_rows: int) -> Path:
    """A chunk's file also names how many instructions it covers, so a run with a larger or smaller
    ``max_instructions`` reuses every complete chunk and redoes only a chunk whose size changed."""
    return shard_dir / f"chunk-{chunk:06d}-n{n_rows}.jsonl"


def stats_path(shard: Path) -> Path:
    """The counters (truncations, digit mass, empty responses) written beside a shard."""
    return shard.with_name(shard.name.replace(".jsonl", ".stats.json"))


def chunk_sizes(n_rows: int, chunk_size: int) -> list[int]:
    return [min(chunk_size, n_rows - start) for start in range(0, n_rows, chunk_size)]


def check_or_write_manifest(shard_dir: Path, config: LabelingConfig) -> None:
    """Shards may only be reused by a run whose settings give the same rows (``max_instructions`` aside)."""
    manifest = shard_dir / "manifest.json"
    want = {"fingerprint": config.fingerprint(), "chunk_size": config.chunk_size}
    if manifest.exists():
        have = json.loads(manifest.read_text())
        if {k: have.get(k) for k in want} != want:
            raise SelfJInputError(
                f"{shard_dir} holds shards from a run with different settings; use another --output_dir "
                "or delete that folder to start over."
            )
        return
    shard_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(manifest, json.dumps(want, indent=2))


def remove_partial_files(shard_dir: Path) -> None:
    """Delete files half-written by a killed run; they are never counted as done."""
    for stale in shard_dir.glob("*.tmp*"):
        stale.unlink()


def write_shard(shard_dir: Path, chunk: int, n_rows: int, rows: list[dict[str, Any]], stats: Counter) -> None:
    """One chunk's rows (and its counters, when any), each file written atomically; rows last, so a shard that exists
    always has its counters."""
    path = shard_path(shard_dir, chunk, n_rows)
    if stats:
        atomic_write_text(stats_path(path), json.dumps(dict(stats)))
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_shards(shard_dir: Path, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for chunk, n in enumerate(sizes):
        path = shard_path(shard_dir, chunk, n)
        if not path.exists():
            raise SelfJInputError(f"shard {path.name} is missing; re-run the same command to finish labeling.")
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


def stat_totals(shard_dir: Path, sizes: list[int]) -> Counter:
    total: Counter = Counter()
    for chunk, n in enumerate(sizes):
        path = stats_path(shard_path(shard_dir, chunk, n))
        if path.exists():
            total.update(json.loads(path.read_text()))
    return total
