"""One loader for every kind of table, and the column check every stage runs on what it loaded.

Every stage takes a ``datasets.Dataset``, a Hub id, a ``save_to_disk`` folder, or a JSON/JSONL/CSV/Parquet file, so
one loader serves all of them. A folder this package published is read only when its completion marker says it is
finished (:func:`selfj_trl.artifacts.require_complete_folder`), whichever command or recipe reads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from .artifacts import require_complete_folder
from .errors import SelfJInputError, first_line
from .io import is_hub_id, json_line_problem


_FILE_TYPES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
#: Libraries whose exceptions, raised while reading a user's table file, mean the file is not a readable table.
_READER_MODULES = {"datasets", "pyarrow", "pandas"}


def load_table(source: Any, split: str = "train") -> Dataset:
    """A ``Dataset`` from an in-memory dataset, a list of dicts, a file, a ``save_to_disk`` folder or a Hub id."""
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
        return load_file(path, kind)
    if path.is_dir():
        require_complete_folder(path)  # a folder a killed command left half-written is refused in one line
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        loaded = load_from_disk(str(path))
        return _pick_split(loaded, split, str(path)) if isinstance(loaded, DatasetDict) else loaded
    if path.exists() or not is_hub_id(str(source)):
        if path.is_dir():
            return load_dataset(str(path), split=split)
        raise SelfJInputError(f"{source}: no such file or folder.")
    try:
        return load_dataset(str(source), split=split)
    except Exception as err:  # network down, unknown repo, gated repo
        raise SelfJInputError(
            f"could not load dataset {source!r} from the Hub ({type(err).__name__}: {err})."
        ) from err


def load_file(path: Path, kind: str) -> Dataset:
    """One table file through ``datasets``; an empty or unreadable file is refused in one line naming it (and the
    line of a JSON Lines file that does not parse), found only when ``datasets`` fails, so good files are read once."""
    if path.stat().st_size == 0:
        raise SelfJInputError(f"{path} is empty: no rows to read.")
    try:
        table = load_dataset(kind, data_files=str(path), split="train")
    except Exception as err:  # noqa: BLE001 - diagnosed below; re-raised unchanged when the file looks fine
        problem = json_file_problem(path) if kind == "json" else None
        if problem is None and "corresponds to no data" in str(err):
            problem = "holds no rows"
        elif problem is None and type(err).__module__.split(".")[0] in _READER_MODULES:
            problem = f"cannot be read as {kind} ({first_line(err.__cause__ or err)})"
        if problem is None:
            raise
        raise SelfJInputError(f"{path} {problem}.") from err
    if len(table) == 0:
        raise SelfJInputError(f"{path} holds no rows.")
    return table


def json_file_problem(path: Path) -> str | None:
    """Why a JSON or JSON Lines file holds no table (blank, ``[]``, a line that does not parse), or None."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        return "holds only blank lines: no rows to read"
    try:
        whole = json.loads(text)
    except (ValueError, RecursionError):
        whole = None
    else:
        if whole == [] or whole == {}:
            return f"holds an empty JSON {'list' if whole == [] else 'object'}: no rows to read"
        if isinstance(whole, list) and not all(isinstance(row, dict) for row in whole):
            return "must hold a list of JSON objects (one per row)"
        if not isinstance(whole, (list, dict)):
            return "must hold JSON objects (one per row)"
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        problem = json_line_problem(line)
        if problem:
            return f"line {number}: {problem}"
    return None


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
