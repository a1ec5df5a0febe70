"""Uploads to the Hub, and the checks on a judge folder before it is loaded or pushed.

Uploads go through ``create_repo`` + ``upload_folder`` from a *staging copy* of the folder (hard links where
possible): the card rendered for the target repo (:mod:`selfj_trl.cards`), a parquet export of a ``save_to_disk``
dataset and an adapter config pointing at the base model's Hub id are written there, so a push, failed or not,
never changes the local folder. A judge pushed over a repo that held other weights (an adapter before a merged
judge, other shards) leaves none of them behind (``delete_patterns``).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, ModelCard

from .cards import DATASET_PLACEHOLDER, dataset_card, hub_id_for, judge_card, merge_pushed_metadata
from .errors import SelfJInputError, UploadError
from .io import MANIFEST_NAME, check_complete, is_hub_id, read_manifest, write_manifest
from .prompts import JUDGE_CONFIG_KEY


#: A model repo's weight files from an earlier push (another kind, other shards, an adapter) that the new judge no
#: longer has: ``upload_folder`` deletes the remote ones matching these and re-adds those uploaded in the same commit.
MODEL_DELETE_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "*.bin", "adapter_config.json"]
#: Never uploaded: labeling shards, training checkpoints, lock files, pickles (judges ship safetensors only).
IGNORE_PATTERNS = [
    "shards/*",
    "checkpoint-*",
    "*.lock",
    ".cache/*",
    "runs/*",
    "*.tmp*",
    "*/.*",
    ".*",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.pkl",
    "*.ckpt",
]


def find_judge_config(judge_dir: str | os.PathLike) -> dict | None:
    """The ``selfj`` section of a judge folder (config.json, or selfj.json for adapter-only judges), None if neither
    has one (e.g. a plain sequence classifier)."""
    folder = Path(judge_dir)
    config_file, mirror = folder / "config.json", folder / "selfj.json"
    if config_file.exists():
        section = json.loads(config_file.read_text()).get(JUDGE_CONFIG_KEY)
        if section:
            return section
    if mirror.exists():
        return json.loads(mirror.read_text())
    return None


def read_judge_config(judge_dir: str | os.PathLike) -> dict:
    """The ``selfj`` section of a judge folder; an input error naming the folder when it has none."""
    folder = Path(judge_dir)
    section = find_judge_config(folder)
    if section is not None:
        return section
    raise SelfJInputError(
        f"{folder} is not a Self-J judge folder (no `{JUDGE_CONFIG_KEY}` section in config.json and no selfj.json); "
        "pass the folder written by `selfj-trl train`."
    )


def require_complete_judge(judge_dir: str | os.PathLike) -> None:
    """Refuse, in one line, a local judge folder that was not completely written (a killed ``selfj-trl train``).

    A folder with a ``selfj`` section (config.json or selfj.json) must carry a completion marker that matches its
    files; a plain sequence classifier (no ``selfj`` section) is not checked.
    """
    folder = Path(judge_dir)
    try:
        is_judge = find_judge_config(folder) is not None
        problems = check_complete(folder, "folder") if is_judge else []
    except (OSError, ValueError) as err:  # a torn config.json / selfj.json
        problems = [f"its config cannot be read ({type(err).__name__})"]
    if not problems:
        return
    shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    raise SelfJInputError(
        f"judge folder {folder} is incomplete ({shown}): it was not completely written, e.g. `selfj-trl train` was "
        "stopped while saving; rerun training to write it again."
    )


def render_judge_card(
    judge_dir: str | os.PathLike,
    judge_repo: str | None = None,
    dataset_repo: str | None = None,
    results: dict | None = None,
) -> ModelCard:
    """The judge card for a saved judge folder; evaluation results come from ``results`` or eval_results.json."""
    folder = Path(judge_dir)
    if results is None and (folder / "eval_results.json").exists():
        results = json.loads((folder / "eval_results.json").read_text())
    return judge_card(
        {
            "selfj": read_judge_config(folder),
            "repo": judge_repo or str(folder),
            "dataset_repo": dataset_repo,
            "results": results,
        }
    )


def push_labeled_dataset(
    table: Any, info: dict, repo_id: str, *, private: bool = False, token: str | None = None
) -> DatasetCard:
    """``Dataset.push_to_hub`` then the Self-J card for ``repo_id`` over the card it wrote, keeping the
    ``configs``/``dataset_info`` metadata it put there (the Hub viewer and ``load_dataset`` read them)."""
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    table.push_to_hub(repo_id, private=private, token=token)
    try:
        pushed = DatasetCard.load(repo_id, repo_type="dataset", token=token)
    except (EntryNotFoundError, RepositoryNotFoundError):
        pushed = None
    card = merge_pushed_metadata(dataset_card(info, repo_id=repo_id), pushed)
    card.push_to_hub(repo_id, repo_type="dataset", token=token, commit_message="Self-J dataset card")
    return card


# ---------------------------------------------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------------------------------------------
def _ignored(rel: str) -> bool:
    parts = rel.split("/")
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(parts[0], p) for p in IGNORE_PATTERNS)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").exists() or (
        (folder / "dataset_info.json").exists() and (folder / "state.json").exists()
    )


def _export_parquet(folder: Path, staging: Path) -> tuple[dict[str, str], set[str]]:
    """A ``save_to_disk`` folder as ``data/<split>-00000-of-00001.parquet`` (what ``load_dataset(repo)`` reads)."""
    from datasets import DatasetDict, load_from_disk

    loaded = load_from_disk(str(folder))
    splits = loaded if isinstance(loaded, DatasetDict) else {"train": loaded}
    (staging / "data").mkdir(parents=True, exist_ok=True)
    data_files = {}
    for split, ds in splits.items():
        ds.to_parquet(str(staging / "data" / f"{split}-00000-of-00001.parquet"))
        data_files[split] = f"data/{split}-*.parquet"
    consumed = {"dataset_dict.json", "dataset_info.json", "state.json", *splits.keys()}
    return data_files, consumed


def stage_folder(
    folder: str | os.PathLike,
    staging: str | os.PathLike,
    repo_type: str = "model",
    card: Any = None,
    repo_id: str | None = None,
) -> list[str]:
    """Fill ``staging`` with what will be uploaded from ``folder``; returns the paths in the repo.

    The local folder is only read. ``card`` (a RepoCard or text) replaces README.md in the staged copy.
    """
    src, dst = Path(folder), Path(staging)
    consumed: set[str] = set()
    data_files: dict[str, str] = {}
    if repo_type == "dataset" and _is_saved_dataset(src):
        data_files, consumed = _export_parquet(src, dst)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        if not path.is_file() or _ignored(rel) or rel.split("/")[0] in consumed or rel.endswith(".arrow"):
            continue
        if rel == "README.md" and card is not None:
            continue
        _link_or_copy(path, dst / rel)
    readme = dst / "README.md"
    if card is not None:
        readme.write_text(str(card), encoding="utf-8")
    elif repo_type == "dataset" and readme.exists():
        # The labeling card describes the data: add where the parquet files are (so the Hub viewer and
        # load_dataset find them) and the repo id its usage snippets were waiting for.
        existing = DatasetCard(readme.read_text(encoding="utf-8"))
        if data_files and not existing.data.to_dict().get("configs"):
            existing.data.configs = [
                {"config_name": "default", "data_files": [{"split": s, "path": p} for s, p in data_files.items()]}
            ]
        text = str(existing)
        if repo_id:
            text = text.replace(DATASET_PLACEHOLDER, repo_id)
        readme.unlink()  # a hard link to the local card: replace it, never write through it
        readme.write_text(text, encoding="utf-8")
    adapter = dst / "adapter_config.json"
    marked = read_manifest(src) if repo_type == "model" else None
    (dst / MANIFEST_NAME).unlink(missing_ok=True)  # a hard link to the local marker: rewritten below, never through it
    if adapter.exists():
        cfg = json.loads(adapter.read_text())
        hub_base = hub_id_for(cfg.get("base_model_name_or_path"))
        if hub_base is None:
            hub_base = hub_id_for((find_judge_config(src) or {}).get("base_model"))
        if hub_base:  # a published adapter must name a base model users can download, not a local folder
            cfg["base_model_name_or_path"] = hub_base
            adapter.unlink()
            adapter.write_text(json.dumps(cfg, indent=2) + "\n")
    if marked is not None:  # the uploaded judge is complete too: its marker lists what is uploaded, with its sizes
        write_manifest(dst, [rel for rel in marked if (dst / rel).is_file()], what="judge")
    return sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())


@contextmanager
def staged(
    folder: str | os.PathLike, repo_type: str = "model", card: Any = None, repo_id: str | None = None
) -> Iterator[tuple[Path, list[str]]]:
    """A temporary staging copy of ``folder`` (removed afterwards) and the list of its files."""
    src = Path(folder)
    if not src.is_dir():
        raise SelfJInputError(f"{src} is not a folder; pass the folder to upload.")
    parent = src.resolve().parent  # same filesystem as the source, so hard links work
    try:
        tmp = tempfile.mkdtemp(prefix=".selfj-push-", dir=parent)
    except OSError:
        tmp = tempfile.mkdtemp(prefix="selfj-push-")
    try:
        files = stage_folder(src, tmp, repo_type=repo_type, card=card, repo_id=repo_id)
        yield Path(tmp), files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    repo_type: str = "model",
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    dry_run: bool = False,
    card: Any = None,
    commit_message: str | None = None,
) -> dict:
    """Create ``repo_id`` if needed and upload ``folder`` (its card in README.md) in one ``upload_folder`` call.

    The token comes from the argument, ``HF_TOKEN`` or ``huggingface-cli login``; it is never written anywhere.
    Returns ``{"repo_id", "repo_type", "revision", "files", "url"}`` (``url`` is None on a dry run).
    """
    if repo_type not in ("model", "dataset"):
        raise SelfJInputError(f"repo_type must be `model` or `dataset`, got {repo_type!r}.")
    if not is_hub_id(repo_id):
        raise SelfJInputError(f"repo id {repo_id!r} must look like `user-or-org/name` (and not be a local path).")
    with staged(folder, repo_type, card, repo_id) as (staging, files):
        if not files:
            raise SelfJInputError(f"{folder}: nothing to upload (every file is ignored or the folder is empty).")
        result = {
            "repo_id": repo_id,
            "repo_type": repo_type,
            "revision": revision or "main",
            "files": files,
            "url": None,
        }
        if dry_run:
            result["sizes"] = {f: (staging / f).stat().st_size for f in files}
            return result
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        try:
            repo_url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
            if revision and revision != "main":
                api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=str(staging),
                repo_type=repo_type,
                revision=revision,
                commit_message=commit_message or f"Upload Self-J {'judge' if repo_type == 'model' else 'dataset'}",
                ignore_patterns=IGNORE_PATTERNS,
                # a merged judge pushed over an adapter (or the reverse, or fewer shards) leaves no stale weights
                delete_patterns=MODEL_DELETE_PATTERNS if repo_type == "model" else None,
            )
        except Exception as err:  # whatever the Hub or the network answered: the upload failed, nothing local changed
            raise UploadError(
                f"uploading {folder} to {repo_type} repo {repo_id} failed ({type(err).__name__}: {_one_line(err)}); "
                "local files unchanged, run the same command again to retry."
            ) from err
        result["url"] = str(getattr(info, "commit_url", None) or repo_url)
        return result


def _one_line(err: BaseException, limit: int = 400) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
