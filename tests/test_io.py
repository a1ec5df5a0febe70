"""Completion markers (a folder is complete only when its marker is there and every listed file has its size), and
reading tables: a file that holds no table is refused in one line naming it."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset

from selfj_trl.artifacts import mark_complete, open_for_writing
from selfj_trl.errors import SelfJInputError
from selfj_trl.eval_sets.custom import load_custom_set
from selfj_trl.io import MANIFEST_NAME, check_complete, folder_files, read_jsonl, read_manifest, write_manifest
from selfj_trl.rewards import prompt_dataset
from selfj_trl.tables import load_table
from selfj_trl.testing import make_tokenizer


def _folder(tmp_path):
    root = tmp_path / "out"
    (root / "sub").mkdir(parents=True)
    (root / "a.json").write_text('{"x": 1}')
    (root / "sub" / "b.bin").write_bytes(b"12345")
    (root / ".staging").mkdir()
    (root / ".staging" / "c").write_text("hidden: never listed")
    (root / ".d.json.tmp123").write_text("being written")
    return root


def test_write_manifest_lists_every_file_with_its_size_and_is_written_atomically(tmp_path):
    root = _folder(tmp_path)
    assert check_complete(root, "thing") == [f"the thing has no completion marker {MANIFEST_NAME}"]
    write_manifest(root, what="thing")
    assert read_manifest(root) == {"a.json": 8, "sub/b.bin": 5}
    assert json.loads((root / MANIFEST_NAME).read_text())["what"] == "thing"
    assert check_complete(root, "thing") == []
    assert not [p for p in root.iterdir() if ".tmp" in p.name and p.name != ".d.json.tmp123"]  # no temporary left
    assert MANIFEST_NAME not in folder_files(root)


def test_check_complete_names_missing_and_resized_files_without_raising(tmp_path):
    root = _folder(tmp_path)
    write_manifest(root, ["a.json", "sub/b.bin"])
    (root / "a.json").unlink()
    (root / "sub" / "b.bin").write_bytes(b"12")
    (root / "extra.txt").write_text("files the marker does not list are not its business")
    assert check_complete(root, "thing") == ["a.json is missing", "sub/b.bin has 2 bytes, not 5"]


def test_an_unreadable_marker_is_a_problem_not_an_exception(tmp_path):
    root = _folder(tmp_path)
    (root / MANIFEST_NAME).write_text('{"files": {"a.json": 8')  # torn
    assert check_complete(root, "thing") == [f"the thing has an unreadable completion marker {MANIFEST_NAME}"]
    (root / MANIFEST_NAME).write_text('{"files": ["a.json"]}')
    assert len(check_complete(root)) == 1 and read_manifest(root) is None
    assert check_complete(tmp_path / "missing", "thing")  # a folder that is not there is not complete either


# ---------------------------------------------------------------------------------------------------------------
# Reading tables: a file that holds no table is refused in one line naming it (and the line at fault)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, text, words",
    [
        ("empty.jsonl", "", ["is empty"]),
        ("empty.json", "[]", ["empty JSON list"]),
        ("object.json", "{}", ["empty JSON object"]),
        ("blank.jsonl", "\n \n\t\n", ["blank"]),
        ("torn.jsonl", '{"a": 1}\n\n{"a": 2\n', ["line 3", "not valid JSON"]),
        ("scalar.jsonl", '{"a": 1}\n7\n', ["line 2", "JSON object"]),
        ("header.csv", "a,b\n", ["no rows"]),
        ("torn.parquet", "PAR1xx", ["cannot be read as parquet"]),
    ],
)
def test_load_table_refuses_a_file_without_rows(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SelfJInputError) as err:
        load_table(str(path))
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert all(w in message for w in words), message


def test_load_table_reads_good_files_unchanged(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n')
    (tmp_path / "rows.json").write_text('[{"a": 1}, {"a": 2}]')
    assert load_table(str(tmp_path / "rows.jsonl"))["a"] == [1, 2]
    assert load_table(str(tmp_path / "rows.json"))["a"] == [1, 2]


@pytest.mark.parametrize(
    "text, words",
    [
        ("", ["no rows"]),
        ("\n\n", ["no rows"]),
        ('{"a": 1}\n{"a": \n', ["line 2", "not valid JSON"]),
        ('{"a": 1}\n[1]\n', ["line 2", "JSON object"]),
    ],
)
def test_read_jsonl_names_the_file_and_line(tmp_path, text, words):
    path = tmp_path / "rows.jsonl"
    path.write_text(text)
    with pytest.raises(SelfJInputError) as err:
        read_jsonl(path)
    assert str(path) in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


def test_read_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


# ---------------------------------------------------------------------------------------------------------------
# A folder a command left half-written is refused by every reader, not only by the commands
# ---------------------------------------------------------------------------------------------------------------
def _half_written_table(tmp_path):
    """A best-of-n-like table folder: stamped and written in place, its marker not yet there (a killed run)."""
    folder = open_for_writing(tmp_path / "table", "best-of-n table", "selfj-trl best-of-n")
    Dataset.from_list(
        [{"instruction": f"q{i}", "response": "a", "prompt": f"q{i}", "score": 0.5 + i} for i in range(3)]
    ).save_to_disk(str(folder))
    return folder


@pytest.mark.parametrize(
    "reader",
    [
        lambda f: load_table(str(f)),
        lambda f: load_custom_set(str(f), "score", split="train"),
        lambda f: prompt_dataset(str(f), make_tokenizer(chat=False), prompt_column="prompt"),
    ],
)
def test_every_table_reader_refuses_a_half_written_folder_and_reads_it_once_marked(tmp_path, reader):
    folder = _half_written_table(tmp_path)
    with pytest.raises(SelfJInputError) as err:
        reader(folder)
    message = str(err.value)
    assert "\n" not in message and "incomplete best-of-n table" in message and "selfj-trl best-of-n" in message
    mark_complete(folder, folder_files(folder), "best-of-n table")
    assert len(reader(folder)) == 3


def test_a_users_own_save_to_disk_folder_is_read_as_it_is(tmp_path):
    Dataset.from_list([{"a": 1}, {"a": 2}]).save_to_disk(str(tmp_path / "mine"))
    assert load_table(str(tmp_path / "mine"))["a"] == [1, 2]
