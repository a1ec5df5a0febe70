#!/usr/bin/env python
"""Publish a Self-J judge folder (and, optionally, its labeled dataset folder) to the Hugging Face Hub.

    python push_to_hub.py --judge_dir outputs/judge --judge_repo me/selfj-judge \
        --dataset_dir outputs/labeled/alpaca_train --dataset_repo me/selfj-labels [--private] [--revision dev] [--dry_run]

Each folder goes up in one ``upload_folder`` commit from a staging copy, with its card rendered for the target repo
(the judge card links the dataset repo and uses the judge repo in its snippets). Nothing in the local folders is
changed, whether the upload succeeds or fails. The token comes from ``HF_TOKEN`` or ``huggingface-cli login`` and is
never written anywhere. ``HF_ENDPOINT`` points the script at another Hub (or a local stand-in).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="push_to_hub.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--judge_dir", required=True, help="judge folder written by `selfj-trl train`")
    p.add_argument("--judge_repo", required=True, help="Hub model repo id, e.g. me/selfj-judge")
    p.add_argument("--dataset_dir", help="labeled dataset folder written by `selfj-trl label` (optional)")
    p.add_argument("--dataset_repo", help="Hub dataset repo id for --dataset_dir, e.g. me/selfj-labels")
    p.add_argument("--private", action="store_true", help="create the repos as private")
    p.add_argument("--revision", default=None, help="branch to upload to (created if missing; default: main)")
    p.add_argument("--dry_run", action="store_true", help="print what would be uploaded and upload nothing")
    return p


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def _report(kind: str, result: dict, dry_run: bool) -> None:
    where = f"{result['repo_id']} ({result['repo_type']}, revision {result['revision']})"
    if dry_run:
        print(f"[dry run] would upload {len(result['files'])} file(s) from the {kind} folder to {where}:")
        for name in result["files"]:
            print(f"  {name}  ({result['sizes'][name]:,} bytes)")
    else:
        print(f"uploaded {len(result['files'])} file(s) to {where}: {result['url']}")


def run(args: argparse.Namespace) -> int:
    from selfj_trl.errors import SelfJInputError
    from selfj_trl.hub import push_folder, read_judge_config, render_judge_card

    if args.dataset_dir and not args.dataset_repo:
        raise SelfJInputError("--dataset_dir needs --dataset_repo (the Hub dataset repo id to create).")
    if args.dataset_repo and not args.dataset_dir:
        raise SelfJInputError("--dataset_repo needs --dataset_dir (the labeled dataset folder to upload).")
    judge_dir = Path(args.judge_dir)
    if not judge_dir.is_dir():
        raise SelfJInputError(f"--judge_dir {judge_dir} is not a folder; train a judge with `selfj-trl train`.")
    read_judge_config(judge_dir)  # fail before uploading anything if this is not a judge
    if args.dataset_dir and not Path(args.dataset_dir).is_dir():
        raise SelfJInputError(f"--dataset_dir {args.dataset_dir} is not a folder.")

    common = {"private": args.private, "revision": args.revision, "dry_run": args.dry_run}
    if args.dataset_dir:  # first, so that the judge card's dataset link points at an existing repo
        result = push_folder(args.dataset_dir, args.dataset_repo, repo_type="dataset", **common)
        _report("dataset", result, args.dry_run)
    card = render_judge_card(judge_dir, judge_repo=args.judge_repo, dataset_repo=args.dataset_repo)
    result = push_folder(judge_dir, args.judge_repo, repo_type="model", card=card, **common)
    _report("judge", result, args.dry_run)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("push_to_hub.py: interrupted; local files are unchanged.", file=sys.stderr)
        return 130
    except Exception as err:  # one line, no traceback: the local folders are untouched either way
        from selfj_trl.errors import SelfJInputError

        code = 2 if isinstance(err, SelfJInputError) else 1
        print(f"push_to_hub.py: error: {type(err).__name__}: {_one_line(err)} (local files unchanged)",
              file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
