"""Completion markers: a folder is complete only when its marker is there and every listed file has its size."""

from __future__ import annotations

import json

from selfj_trl.io import MANIFEST_NAME, check_complete, folder_files, read_manifest, write_manifest


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
