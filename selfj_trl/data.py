"""Reading tables of data from wherever users keep them, and the shared data folder this project evaluates on.

Every stage takes a ``datasets.Dataset``, a Hub id, a ``save_to_disk`` folder, or a JSON/JSONL/CSV/Parquet file,
so one loader serves all of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from .errors import SelfJInputError

_FILE_TYPES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def load_table(source: Any, split: str = "train") -> Dataset:
    """A ``Dataset`` from an in-memory dataset, a file, a ``save_to_disk`` folder or a Hub id."""
    if isinstance(source, Dataset):
        return source
    if isinstance(source, DatasetDict):
        return _pick_split(source, split, str(source))
    if isinstance(source, list):
        return Dataset.from_list(source)
    if not isinstance(source, (str, os.PathLike)) or not str(source):
        raise SelfJInputError(f"dataset must be a Dataset, a path or a Hub id, got {type(source).__name__}.")
    path = Path(source)
    if path.is_file():
        kind = _FILE_TYPES.get(path.suffix.lower())
        if kind is None:
            raise SelfJInputError(f"{path}: unsupported file type; use .jsonl, .json, .csv or .parquet.")
        return load_dataset(kind, data_files=str(path), split="train")
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        loaded = load_from_disk(str(path))
        return _pick_split(loaded, split, str(path)) if isinstance(loaded, DatasetDict) else loaded
    if path.exists() or str(source).startswith((".", "/", "~")) or path.suffix.lower() in _FILE_TYPES:
        if path.is_dir():
            return load_dataset(str(path), split=split)
        raise SelfJInputError(f"{source}: no such file or folder.")
    try:
        return load_dataset(str(source), split=split)
    except Exception as err:  # network down, unknown repo, gated repo
        raise SelfJInputError(f"could not load dataset {source!r} from the Hub ({type(err).__name__}: {err}).") from err


def _pick_split(dd: DatasetDict, split: str, name: str) -> Dataset:
    if split not in dd:
        raise SelfJInputError(f"{name} has no split {split!r}; it has {sorted(dd)}.")
    return dd[split]


def require_columns(dataset: Dataset, columns: list[str], what: str, hint: str = "") -> None:
    """Raise one clear error naming every missing column, the ones present, and how to map them."""
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise SelfJInputError(
            f"{what} is missing column(s) {missing}; it has {dataset.column_names}." + (f" {hint}" if hint else "")
        )
    if len(dataset) == 0:
        raise SelfJInputError(f"{what} is empty: nothing to do.")


def shared_data_dir() -> Path | None:
    """The project's ``shared/data`` folder next to the checkout, when it exists (never on a user's machine)."""
    env = os.environ.get("SELFJ_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd() / ".." / "shared" / "data", Path(__file__).resolve().parents[2] / "shared" / "data"]
    for cand in candidates:
        if (cand / "alpaca_eval_gpt4" / "instructions.jsonl").exists():
            return cand.resolve()
    return None
