"""``selfj-trl score``: a judge score column added to a table, columns mapped by flags, errors in one line."""

from __future__ import annotations

import json

import pytest

from selfj_trl.judge import SelfJudge
from selfj_trl.score import main


INSTRUCTIONS = ["write a short poem about the sea", "what is two plus two ?", "hello world", "one two three"]
RESPONSES = ["the sea is blue and deep", "four", "", "four five six"]


@pytest.fixture(scope="module")
def judge(tiny_judge):
    return SelfJudge.from_pretrained(tiny_judge, device="cpu")


def test_score_cli_writes_scores_with_mapped_columns(tiny_judge, judge, tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"q": i, "a": r, "id": n}) + "\n"
                            for n, (i, r) in enumerate(zip(INSTRUCTIONS, RESPONSES, strict=True))))
    out = tmp_path / "out" / "scores.jsonl"
    argv = ["--judge", tiny_judge, "--dataset", str(data), "--output_file", str(out),
            "--instruction_column", "q", "--response_column", "a", "--device", "cpu", "--batch_size", "3"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(len(INSTRUCTIONS)))
    assert [r["score"] for r in rows] == pytest.approx(judge.score(INSTRUCTIONS, RESPONSES), abs=1e-5)


def test_score_cli_reports_missing_columns_in_one_line(tiny_judge, tmp_path, capsys):
    from selfj_trl.cli import main as cli_main

    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"question": "hello world", "answer": "good"}) + "\n")
    out = str(tmp_path / "o.jsonl")
    code = cli_main(["score", "--judge", tiny_judge, "--dataset", str(data), "--output_file", out])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # earlier lines are the datasets progress bar
    assert last.startswith("selfj-trl score: error:") and "'instruction'" in last and "--instruction_column" in last


def test_score_cli_scores_the_teacher_view_with_a_reference_column(tiny_judge, judge, tmp_path):
    data = tmp_path / "rows.jsonl"
    refs = ["the sea is blue"] * len(INSTRUCTIONS)
    data.write_text("".join(json.dumps({"instruction": i, "response": r, "reference": ref, "score": 0.0}) + "\n"
                            for i, r, ref in zip(INSTRUCTIONS, RESPONSES, refs, strict=True)))
    out = tmp_path / "scores.jsonl"
    argv = ["--judge", tiny_judge, "--dataset", str(data), "--output_file", str(out), "--reference_column",
            "reference", "--device", "cpu", "--max_rows", "3"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = judge.score(INSTRUCTIONS[:3], RESPONSES[:3], references=refs[:3])
    assert [r["score"] for r in rows] == pytest.approx(expected, abs=1e-5)  # the old score column is replaced
    assert not list(tmp_path.glob(".scores.jsonl.tmp*"))
