"""Files: atomic writes, append-only caches, completion markers, JSON Lines, content hashes, the Hub-id test and
the loading of scripts by path.

Everything this package writes goes to a temporary name first and is renamed into place, so a killed run never
leaves a file that looks finished but is not. Tables are read by :mod:`selfj_trl.tables`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SelfJInputError, first_line


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------------------------------
# JSON Lines and the shared data folder
# ---------------------------------------------------------------------------------------------------------------
def json_line_problem(line: str) -> str | None:
    """Why one JSON Lines line is not a row (blank lines are allowed), or None."""
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except RecursionError:
        return "nested too deeply to be a row"
    except ValueError as err:
        return f"not valid JSON ({getattr(err, 'msg', None) or first_line(err)})"
    return None if isinstance(row, dict) else f"must be a JSON object, got {type(row).__name__}"


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Every row of a JSONL file (blank lines skipped); a line that is not a JSON object, or a file without one row,
    is refused in one line naming the file and the line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            problem = json_line_problem(line)
            if problem:
                raise SelfJInputError(f"{path} line {number}: {problem}.")
            if line.strip():
                rows.append(json.loads(line))
    if not rows:
        raise SelfJInputError(f"{path} holds no rows (it is empty or blank).")
    return rows


def shared_data_dir() -> Path | None:
    """The project's ``shared/data`` folder next to the checkout, when it exists (never on a user's machine).

    ``SELFJ_SHARED_DATA`` set replaces the search: it names the one folder to use, and a folder without the data
    (an empty one, say) hides ``../shared/data``, so a machine that has it can still run as a user's machine does.
    """
    env = os.environ.get("SELFJ_SHARED_DATA")
    if env:
        candidates = [Path(env)]
    else:
        candidates = [Path.cwd() / ".." / "shared" / "data", Path(__file__).resolve().parents[2] / "shared" / "data"]
    for cand in candidates:
        if (cand / "alpaca_eval_gpt4" / "instructions.jsonl").exists():
            return cand.resolve()
    return None


# ---------------------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------------------
def is_hub_id(name: str) -> bool:
    """``org/name`` that is not a local path: the one test of "should this go to the Hub" in the package."""
    return (
        isinstance(name, str)
        and bool(_HUB_ID.match(name))
        and not name.startswith((".", "~"))
        and not os.path.exists(name)
    )


def load_script(path: str | os.PathLike, name: str | None = None) -> Any:
    """A script under recipes/ or bench/ as a module: they are run by path, not installed, yet their tests and their
    sibling scripts call into them. Registered in ``sys.modules`` because dataclasses look their module up there."""
    path = Path(path)
    name = name or path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or not path.is_file():
        raise FileNotFoundError(f"no script at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def slug(text: str, keep: int = 60) -> str:
    """A file-name-safe form of ``text``; a path gets a short hash so two folders with one name stay apart."""
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(text).name or text)[:keep]
    return f"{tail}-{hashlib.sha256(text.encode()).hexdigest()[:6]}" if ("/" in text or "\\" in text) else tail


def content_hash(*parts: Any, length: int = 8) -> str:
    """A short, stable hash of JSON-able settings: what a cache or a shard was made with."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:length]


def folder_identity(path_or_id: str) -> str:
    """A model's identity for a score cache: a folder's path plus its files' sizes and times (so a retrained model
    scores again), or the Hub id itself."""
    path = Path(path_or_id)
    if not path.is_dir():
        return str(path_or_id)
    parts = [str(path.resolve())]
    for f in sorted(path.glob("*")):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".model", ".txt"}:
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16] + ":" + path.name


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """Plain Python for JSON: numpy scalars and arrays converted, non-finite floats as None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    return obj


def temporary_sibling(path: str | os.PathLike, suffix: str = "") -> Path:
    """A name next to ``path`` that no other process writes (same folder, so the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and one rename: readers see the old file or the new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(jsonable(obj), indent=indent, ensure_ascii=False) + "\n")


def atomic_savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``fig.savefig`` through a temporary file of the same format, then one rename."""
    path = Path(path)
    tmp = temporary_sibling(path, suffix=path.suffix)
    fig.savefig(tmp, **kwargs)
    os.replace(tmp, path)
    return path


class JsonlCache:
    """An append-only ``key -> value`` cache in one JSONL file, flushed as work finishes.

    A run that dies keeps everything appended before; a line torn by the kill is ignored, so that row is simply
    computed again. Values must be JSON-able; non-finite floats are stored as None and read back as NaN.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.values: dict[str, Any] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        item = json.loads(line)
                        key, value = item["key"], item["value"]
                    except (ValueError, KeyError, TypeError):
                        continue
                    self.values[key] = math.nan if value is None else value

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __len__(self) -> int:
        return len(self.values)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def add(self, items: dict[str, Any]) -> None:
        if not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"key": k, "value": jsonable(v)}) + "\n" for k, v in items.items())
            fh.flush()
            os.fsync(fh.fileno())
        self.values.update({k: (math.nan if v is None else v) for k, v in items.items()})


# ---------------------------------------------------------------------------------------------------------------
# Completion markers
# ---------------------------------------------------------------------------------------------------------------
#: Written LAST into a folder this package publishes: the relative path and size of each of its files. A folder
#: without it (or whose files no longer match it) was not completely written and is refused.
MANIFEST_NAME = "selfj_complete.json"
MANIFEST_VERSION = 1


def folder_files(folder: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the regular files under ``folder``, without the marker and without hidden or
    temporary names (staging folders, files still being written)."""
    root = Path(folder)
    names = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST_NAME or any(part.startswith(".") for part in rel.split("/")) or ".tmp" in path.name:
            continue
        if path.is_file() and not path.is_symlink():
            names.append(rel)
    return sorted(names)


def write_manifest(folder: str | os.PathLike, files: list[str] | None = None, what: str | None = None) -> Path:
    """Mark ``folder`` complete: fsync ``files`` (default: :func:`folder_files`) and write :data:`MANIFEST_NAME` with
    each one's size, atomically. Call it after every other file of the folder is written, never before."""
    root = Path(folder)
    names = folder_files(root) if files is None else sorted(dict.fromkeys(str(f) for f in files))
    sizes = {}
    for rel in names:
        path = root / rel
        with open(path, "rb") as fh:  # durable before the marker says so
            os.fsync(fh.fileno())
        sizes[rel] = path.stat().st_size
    marker = {"selfj_manifest": MANIFEST_VERSION, "what": what, "files": sizes}
    atomic_write_json(root / MANIFEST_NAME, marker)
    fsync_dir(root)
    return root / MANIFEST_NAME


def read_manifest(folder: str | os.PathLike) -> dict[str, int] | None:
    """The ``{relative path: size}`` recorded in ``folder``'s marker, None when there is none or it is unreadable."""
    path = Path(folder) / MANIFEST_NAME
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in files.items()):
        return None
    return files


def check_complete(folder: str | os.PathLike, what: str = "folder") -> list[str]:
    """Why ``folder`` (a ``what``) is not complete: an empty list when its marker is there and every file it lists
    is present with its recorded size; else one short phrase per problem (never raises for a bad folder)."""
    root = Path(folder)
    if not (root / MANIFEST_NAME).is_file():
        return [f"the {what} has no completion marker {MANIFEST_NAME}"]
    files = read_manifest(root)
    if files is None:
        return [f"the {what} has an unreadable completion marker {MANIFEST_NAME}"]
    problems = []
    for rel, size in sorted(files.items()):
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif path.stat().st_size != size:
            problems.append(f"{rel} has {path.stat().st_size:,} bytes, not {size:,}")
    return problems


def fsync_dir(folder: Path) -> None:
    """Make renames inside ``folder`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
