"""``selfj-trl push`` (and ``push_to_hub.py``): publish a judge folder and, optionally, its labeled dataset folder.

    selfj-trl push --judge_dir outputs/judge --judge_repo me/selfj-judge \
        --dataset_dir outputs/labeled/alpaca_train --dataset_repo me/selfj-labels [--private] [--revision dev] [--dry_run]

Each folder goes up in one ``upload_folder`` commit from a staging copy, with its card rendered for the target repo
(the judge card links the dataset repo and uses the judge repo in its snippets). Nothing in the local folders is
changed, whether the upload succeeds or fails. The token comes from ``HF_TOKEN`` or ``huggingface-cli login`` and is
never written anywhere. ``HF_ENDPOINT`` points the command at another Hub (or a local stand-in). A judge folder that
was not completely written (no valid completion marker: a killed ``selfj-trl train``) is refused before anything is
uploaded, ``--dry_run`` included; the uploaded judge carries a marker matching the uploaded files.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import require_complete_folder
from .errors import SelfJInputError
from .hub import push_folder, read_judge_config, render_judge_card, require_complete_judge


@dataclass
class PushConfig:
    """``selfj-trl push``: upload a judge folder (and its labeled dataset folder) to the Hugging Face Hub."""

    judge_dir: str = field(metadata={"help": "Judge folder written by `selfj-trl train`."})
    judge_repo: str = field(metadata={"help": "Hub model repo id, e.g. me/selfj-judge."})
    dataset_dir: str | None = field(
        default=None, metadata={"help": "Labeled dataset folder written by `selfj-trl label` (optional)."}
    )
    dataset_repo: str | None = field(
        default=None, metadata={"help": "Hub dataset repo id for --dataset_dir, e.g. me/selfj-labels."}
    )
    private: bool = field(default=False, metadata={"help": "Create the repos as private."})
    revision: str | None = field(
        default=None, metadata={"help": "Branch to upload to (created if missing; default: main)."}
    )
    dry_run: bool = field(default=False, metadata={"help": "Print what would be uploaded and upload nothing."})


def _report(kind: str, result: dict, dry_run: bool) -> None:
    where = f"{result['repo_id']} ({result['repo_type']}, revision {result['revision']})"
    if dry_run:
        print(f"[dry run] would upload {len(result['files'])} file(s) from the {kind} folder to {where}:")
        for name in result["files"]:
            print(f"  {name}  ({result['sizes'][name]:,} bytes)")
    else:
        print(f"uploaded {len(result['files'])} file(s) to {where}: {result['url']}")


def run_push(config: PushConfig) -> list[dict]:
    """Check both folders, then upload the dataset (if any) and the judge; returns each ``push_folder`` result."""
    if config.dataset_dir and not config.dataset_repo:
        raise SelfJInputError("--dataset_dir needs --dataset_repo (the Hub dataset repo id to create).")
    if config.dataset_repo and not config.dataset_dir:
        raise SelfJInputError("--dataset_repo needs --dataset_dir (the labeled dataset folder to upload).")
    judge_dir = Path(config.judge_dir)
    if not judge_dir.is_dir():
        raise SelfJInputError(f"--judge_dir {judge_dir} is not a folder; train a judge with `selfj-trl train`.")
    require_complete_judge(judge_dir)  # fail before uploading anything if this judge was not completely written
    read_judge_config(judge_dir)  # ... or is not a judge
    if config.dataset_dir and not Path(config.dataset_dir).is_dir():
        raise SelfJInputError(f"--dataset_dir {config.dataset_dir} is not a folder.")
    require_complete_folder(config.dataset_dir, "labeled dataset")  # a killed `selfj-trl label`: refused

    common = {"private": config.private, "revision": config.revision, "dry_run": config.dry_run}
    results = []
    if config.dataset_dir:  # first, so that the judge card's dataset link points at an existing repo
        results.append(push_folder(config.dataset_dir, config.dataset_repo, repo_type="dataset", **common))
        _report("dataset", results[-1], config.dry_run)
    card = render_judge_card(judge_dir, judge_repo=config.judge_repo, dataset_repo=config.dataset_repo)
    results.append(push_folder(judge_dir, config.judge_repo, repo_type="model", card=card, **common))
    _report("judge", results[-1], config.dry_run)
    return results


def main(argv: list[str] | None = None) -> int:
    from .flags import parse

    (config,) = parse((PushConfig,), argv, prog="selfj-trl push", description=PushConfig.__doc__)
    run_push(config)
    return 0


if __name__ == "__main__":
    from .cli import main as cli_main

    sys.exit(cli_main(["push", *sys.argv[1:]]))
