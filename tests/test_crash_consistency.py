"""Nothing half-written is ever read: every published folder is complete or refused in one line, and every command
killed at a random point (or mid-save) finishes when run again, with nothing lost.

The kill loops are those of ``bench/crash_consistency.py`` (which runs them with more kill points and prints the
totals); here each command is killed at one or two seeded points, against an uninterrupted reference run in-process.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from datasets import Dataset, load_from_disk

from selfj_trl.artifacts import (
    STAMP_NAME,
    mark_complete,
    open_for_writing,
    require_complete_folder,
    staged_folder,
    stamp,
)
from selfj_trl.cli import main as cli
from selfj_trl.errors import SelfJInputError
from selfj_trl.io import MANIFEST_NAME, check_complete, load_script, read_manifest, write_manifest
from selfj_trl.testing import make_tiny_llama


REPO = Path(__file__).resolve().parents[1]


def _bench():
    return load_script(REPO / "bench" / "crash_consistency.py")


crash = _bench()


@pytest.fixture(scope="module")
def models(tiny_policy, tiny_judge, tiny_embedder, tmp_path_factory):
    base = make_tiny_llama(tmp_path_factory.mktemp("base"), kind="seqcls", chat=True, seed=3)
    return crash.Models(policy=tiny_policy, judge=tiny_judge, embedder=tiny_embedder, base=str(base))


def _rows(n: int = 4) -> Dataset:
    return Dataset.from_list([{"instruction": f"q{i}", "response": f"a{i}", "label": float(i)} for i in range(n)])


# ---------------------------------------------------------------------------------------------------------------
# The rule: whose folder, and when it is finished
# ---------------------------------------------------------------------------------------------------------------
def test_a_user_folder_is_read_as_it_is_and_ours_only_once_complete(tmp_path):
    user = tmp_path / "user"
    _rows().save_to_disk(str(user))
    require_complete_folder(user)  # no stamp, no marker: a user's save_to_disk folder

    ours = tmp_path / "ours"
    stamp(ours, "labeled dataset", "selfj-trl label")
    _rows().save_to_disk(str(ours))  # loadable, but nothing says it is finished
    with pytest.raises(SelfJInputError, match=r"incomplete labeled dataset .*`selfj-trl label`.*run the same command"):
        require_complete_folder(ours)
    write_manifest(ours)
    require_complete_folder(ours)
    assert STAMP_NAME not in read_manifest(ours)  # hidden: neither listed nor uploaded
    data = next(ours.glob("data-*.arrow"))
    data.write_bytes(data.read_bytes()[:-8])  # a file cut short after the marker was written
    with pytest.raises(SelfJInputError, match="bytes, not"):
        require_complete_folder(ours)


def test_staged_folder_renames_a_new_folder_and_swaps_into_an_existing_one(tmp_path):
    out = tmp_path / "table"
    with staged_folder(out, "best-of-n table", "selfj-trl best-of-n") as staging:
        assert not out.exists()
        _rows(3).save_to_disk(str(staging))
        (staging / "old_only.txt").write_text("x")
    assert check_complete(out) == [] and len(load_from_disk(str(out))) == 3
    (out / "notes_by_user.txt").write_text("mine")

    with pytest.raises(RuntimeError), staged_folder(out, "best-of-n table", "selfj-trl best-of-n") as staging:
        _rows(5).save_to_disk(str(staging))
        raise RuntimeError("the run failed before publishing")
    assert check_complete(out) == [] and len(load_from_disk(str(out))) == 3  # untouched
    with staged_folder(out, "best-of-n table", "selfj-trl best-of-n") as staging:
        _rows(5).save_to_disk(str(staging))
    assert check_complete(out) == [] and len(load_from_disk(str(out))) == 5
    assert not (out / "old_only.txt").exists()  # listed by the old marker only: removed
    assert (out / "notes_by_user.txt").read_text() == "mine"  # never ours: kept
    assert not list(tmp_path.glob(".table.tmp*"))


def test_a_folder_rewritten_in_place_is_refused_until_marked(tmp_path):
    out = tmp_path / "report"
    open_for_writing(out, "evaluation report", "selfj-trl evaluate")
    (out / "metrics.json").write_text("{}")
    with pytest.raises(SelfJInputError, match="no completion marker"):
        require_complete_folder(out)
    mark_complete(out, ["metrics.json"], "evaluation report")
    require_complete_folder(out)
    open_for_writing(out, "evaluation report", "selfj-trl evaluate")
    assert not (out / MANIFEST_NAME).exists()


def test_the_evaluation_report_is_marked_complete_without_its_score_cache(tmp_path):
    from selfj_trl import evaluation as ev

    rows = [{"instruction": f"q{i % 4}", "response": "w " * (i % 5), "quality": float(i % 5)} for i in range(16)]
    ev.evaluate_judges(["length"], [Dataset.from_list(rows)], tmp_path, bootstrap_resamples=0, plots=False)
    assert check_complete(tmp_path) == []
    assert sorted(read_manifest(tmp_path)) == ["metrics.json", "report.md"]  # the cache grows on later runs


def test_every_reading_command_refuses_an_unfinished_folder_in_one_line(tmp_path, tiny_judge, capsys):
    unfinished = tmp_path / "labeled"
    stamp(unfinished, "labeled dataset", "selfj-trl label")
    _rows().save_to_disk(str(unfinished))  # loadable, unmarked: a killed publication
    commands = {
        "train": ["--model_name_or_path", tiny_judge, "--output_dir", str(tmp_path / "j"), "--max_steps", "1"],
        "score": ["--judge", tiny_judge, "--output_file", str(tmp_path / "s.jsonl")],
        "best-of-n": ["--policy", tiny_judge, "--judge", tiny_judge, "--output_dir", str(tmp_path / "b")],
        "label": ["--output_dir", str(tmp_path / "l")],
        "push": ["--judge_dir", tiny_judge, "--judge_repo", "me/judge", "--dataset_repo", "me/data", "--dry_run"],
    }
    flag = {
        "train": "--dataset_name",
        "score": "--dataset",
        "best-of-n": "--dataset",
        "label": "--dataset_name",
        "push": "--dataset_dir",
    }
    for command, argv in commands.items():
        capsys.readouterr()
        code = cli([command, flag[command], str(unfinished), *argv])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "error:" in line]
        assert code == 2 and len(lines) == 1 and "incomplete labeled dataset" in lines[0], (command, err[-500:])
    assert not (tmp_path / "j").exists() and not (tmp_path / "s.jsonl").exists() and not (tmp_path / "b").exists()


def test_a_pushed_dataset_carries_neither_stamp_nor_marker(tmp_path):
    from selfj_trl.hub import stage_folder

    folder = tmp_path / "labeled"
    with staged_folder(folder, "labeled dataset", "selfj-trl label") as staging:
        _rows().save_to_disk(str(staging))
        (staging / "README.md").write_text("---\nlicense: mit\n---\n# card\n")
    files = stage_folder(folder, tmp_path / "up", repo_type="dataset")
    assert STAMP_NAME not in files and MANIFEST_NAME not in files  # downloaded again, it is a plain user folder


# ---------------------------------------------------------------------------------------------------------------
# Kill loops (subprocesses, one thread): bench/crash_consistency.py with few points
# ---------------------------------------------------------------------------------------------------------------
def _check(tally, min_kills: int) -> None:
    assert tally.failures == []
    assert tally.kills >= min_kills and tally.survived == tally.kills
    assert tally.rows_expected > 0 and tally.rows_lost == 0


def test_score_killed_mid_run_resumes_to_the_same_bytes(tmp_path, models):
    _check(crash.crash_score(tmp_path, models, random.Random(0), points=1), min_kills=1)


def test_label_killed_mid_publication_is_refused_then_finishes_with_every_row(tmp_path, models):
    _check(crash.crash_label(tmp_path, models, random.Random(0), points=1), min_kills=1)


def test_best_of_n_killed_while_swapping_in_a_new_table_is_old_or_refused(tmp_path, models):
    _check(crash.crash_best_of_n(tmp_path, models, random.Random(0), points=1), min_kills=1)


def test_evaluate_killed_while_writing_its_report_is_refused_then_rewritten(tmp_path, models):
    _check(crash.crash_evaluate(tmp_path, models, random.Random(0), points=1), min_kills=1)
    assert json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["eval_sets"]


def test_train_killed_mid_run_or_while_saving_never_leaves_a_loadable_half_judge(tmp_path, models):
    # seeded: killed once the judge's staging folder appears (if the poll sees it) and once checkpoint-4 is written
    _check(crash.crash_train(tmp_path, models, random.Random(0), points=2), min_kills=1)
