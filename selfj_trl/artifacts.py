"""Folders the package publishes (labeled datasets, best-of-n tables, DPO pairs, evaluation reports): read only
when finished.

Whose folder is it? Every folder a command here publishes carries :data:`STAMP_NAME`, a small hidden file naming
what the folder is and which command writes it, written before any other file of the folder (into the staging
folder, or into the folder itself when it is written in place). The completion marker
(:data:`~selfj_trl.io.MANIFEST_NAME`, each file and its size) is written LAST. So:

* a folder with the stamp or a marker is ours: it is read only when its marker matches its files, and refused in
  one line otherwise (:func:`require_complete_folder`, which :func:`selfj_trl.tables.load_table` runs on every folder
  it reads, so no command or recipe reads a half-written folder);
* a folder with neither (a user's own ``save_to_disk`` folder, or one written before folders were stamped) is read
  as it is.

The stamp is hidden, so neither the marker's file list nor a Hub upload (which skips hidden names) includes it: a
dataset pushed to the Hub and downloaded again is a plain user folder.

Two ways to publish. :func:`staged_folder` writes everything into a staging folder next to the target and then
renames it into place (one rename when the target does not exist yet; otherwise the old marker is dropped, the new
files are renamed in, and the marker is renamed in last). A folder that also holds a run's resumable state (a score
cache next to an evaluation report) is written in place between :func:`open_for_writing` and :func:`mark_complete`.
Either way a kill at any point leaves a complete folder, no folder, or one that is refused until the same command
is run again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import SelfJInputError
from .io import (
    MANIFEST_NAME,
    atomic_write_json,
    check_complete,
    fsync_dir,
    read_manifest,
    temporary_sibling,
    write_manifest,
)


#: Written first into every folder this package publishes: ``{"selfj": what, "command": the command that writes it}``.
STAMP_NAME = ".selfj_folder.json"
#: Fault injection for the crash-consistency tests: a process whose environment sets this to one of
#: :data:`CRASH_POINTS` kills itself with SIGKILL at that point of a publication, as an outside kill would.
CRASH_ENV = "SELFJ_CRASH_AT"
CRASH_POINTS = ("staged", "unmarked", "moving", "before_marker")


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def stamp(folder: str | os.PathLike, what: str, command: str) -> None:
    """Claim ``folder`` as ours (see the module doc); call it before writing any other file into it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / STAMP_NAME).is_file():
        atomic_write_json(folder / STAMP_NAME, {"selfj": what, "command": command})


def is_ours(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return (folder / STAMP_NAME).is_file() or (folder / MANIFEST_NAME).is_file()


def read_stamp(folder: str | os.PathLike) -> dict[str, Any]:
    try:
        data = json.loads((Path(folder) / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def require_complete_folder(source: Any, what: str = "dataset folder") -> None:
    """Refuse, in one line, a folder of ours that was not completely written; anything else passes (files, Hub
    ids, in-memory tables, user folders), to be loaded as usual."""
    if not isinstance(source, (str, os.PathLike)) or not str(source):
        return
    folder = Path(source)
    if not folder.is_dir() or not is_ours(folder):
        return
    info = read_stamp(folder)
    what = info.get("selfj") or what
    problems = check_complete(folder, what)
    if not problems:
        return
    shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    command = info.get("command") or "the command that wrote it"
    raise SelfJInputError(
        f"{folder} is an incomplete {what} ({shown}): `{command}` was stopped before it finished writing it; "
        "run the same command again to finish it."
    )


def open_for_writing(folder: str | os.PathLike, what: str, command: str) -> Path:
    """Start rewriting ``folder`` in place: stamp it and drop its marker, so that until :func:`mark_complete` it is
    refused, never read half old and half new."""
    folder = Path(folder)
    stamp(folder, what, command)
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    fsync_dir(folder)
    crash_point("unmarked")
    return folder


def mark_complete(folder: str | os.PathLike, files: list[str], what: str) -> Path:
    """Finish a folder opened with :func:`open_for_writing`: the marker lists ``files`` (paths relative to it)."""
    crash_point("before_marker")
    return write_manifest(folder, files, what=what)


@contextmanager
def staged_folder(folder: str | os.PathLike, what: str, command: str) -> Iterator[Path]:
    """Yield a stamped staging folder next to ``folder``; on a clean exit mark it complete and publish it as
    ``folder`` (see :func:`publish`). If the block raises, ``folder`` is not touched."""
    target = Path(folder).absolute()
    remove_stale_temporaries(target)
    staging = temporary_sibling(target)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        stamp(staging, what, command)
        yield staging
        write_manifest(staging, what=what)
        publish(staging, target, what, command)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, folder: Path, what: str, command: str) -> None:
    """Move the complete folder ``staging`` into place as ``folder``.

    A new ``folder`` is one rename. An existing one is rewritten file by file between dropping its marker and
    renaming the new marker in: files the previous publication listed and this one lacks are removed; files it never
    listed (a user's, a run's resumable state) are left alone.
    """
    new = read_manifest(staging)
    if new is None:
        raise RuntimeError(f"{staging} has no completion marker: mark it complete before publishing it.")
    crash_point("staged")
    if not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, folder)
        fsync_dir(folder.parent)
        return
    old = read_manifest(folder) or {}
    open_for_writing(folder, what, command)
    for rel in sorted(set(old) - set(new)):
        (folder / rel).unlink(missing_ok=True)
    for k, rel in enumerate(sorted(new)):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, folder / rel)
        if k == 0:
            crash_point("moving")
    fsync_dir(folder)
    crash_point("before_marker")
    os.replace(staging / MANIFEST_NAME, folder / MANIFEST_NAME)
    fsync_dir(folder)


def remove_stale_temporaries(path: Path) -> None:
    """Delete what killed runs left next to ``path`` under :func:`~selfj_trl.io.temporary_sibling` names (staging
    folders, half-written files) once their process is gone."""
    prefix = f".{path.name}.tmp"
    if not path.parent.is_dir():
        return
    for stale in path.parent.glob(f"{prefix}*"):
        pid = re.match(r"\d+", stale.name[len(prefix) :])
        if pid is None or pid_alive(int(pid.group())):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True
