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
    data.write_text(
        "".join(
            json.dumps({"q": i, "a": r, "id": n}) + "\n"
            for n, (i, r) in enumerate(zip(INSTRUCTIONS, RESPONSES, strict=True))
        )
    )
    out = tmp_path / "out" / "scores.jsonl"
    argv = [
        "--judge",
        tiny_judge,
        "--dataset",
        str(data),
        "--output_file",
        str(out),
        "--instruction_column",
        "q",
        "--response_column",
        "a",
        "--device",
        "cpu",
        "--batch_size",
        "3",
    ]
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
    data.write_text(
        "".join(
            json.dumps({"instruction": i, "response": r, "reference": ref, "score": 0.0}) + "\n"
            for i, r, ref in zip(INSTRUCTIONS, RESPONSES, refs, strict=True)
        )
    )
    out = tmp_path / "scores.jsonl"
    argv = [
        "--judge",
        tiny_judge,
        "--dataset",
        str(data),
        "--output_file",
        str(out),
        "--reference_column",
        "reference",
        "--device",
        "cpu",
        "--max_rows",
        "3",
    ]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = judge.score(INSTRUCTIONS[:3], RESPONSES[:3], references=refs[:3])
    assert [r["score"] for r in rows] == pytest.approx(expected, abs=1e-5)  # the old score column is replaced
    assert not list(tmp_path.glob(".scores.jsonl.tmp*"))


def _many_rows(path, n=40):
    path.write_text(
        "".join(json.dumps({"instruction": f"question {i}", "response": "word " * (i % 7)}) + "\n" for i in range(n))
    )
    return path


def test_a_killed_run_resumes_from_the_scored_chunks_and_writes_the_same_file(tiny_judge, tmp_path, monkeypatch):
    data = _many_rows(tmp_path / "rows.jsonl")
    argv = ["--judge", tiny_judge, "--dataset", str(data), "--device", "cpu", "--batch_size", "2"]
    assert main([*argv, "--output_file", str(tmp_path / "whole.jsonl")]) == 0
    whole = (tmp_path / "whole.jsonl").read_bytes()

    real_score, scored = SelfJudge.score, []

    def dies_on_the_second_chunk(self, instructions, *args, **kwargs):
        if len(scored) == 1:
            raise KeyboardInterrupt  # stands for the kill: nothing after this point runs
        scored.append(len(instructions))
        return real_score(self, instructions, *args, **kwargs)

    out = tmp_path / "killed.jsonl"
    monkeypatch.setattr(SelfJudge, "score", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        main([*argv, "--output_file", str(out)])
    assert not out.exists() and scored == [16]  # one chunk (8 batches of 2) was kept before the kill
    [cache] = tmp_path.glob(".killed.jsonl.resume-*.jsonl")

    def counts(self, instructions, *args, **kwargs):
        scored.append(len(instructions))
        return real_score(self, instructions, *args, **kwargs)

    monkeypatch.setattr(SelfJudge, "score", counts)
    assert main([*argv, "--output_file", str(out)]) == 0
    assert scored == [16, 16, 8]  # the rerun scored only the two chunks the killed run had not finished
    assert out.read_bytes() == whole  # same rows, same scores, same bytes
    assert not cache.exists()  # the resume cache goes once the output is complete


def test_scores_cached_by_another_judge_are_never_reused(tiny_judge, tmp_path, monkeypatch):
    import shutil

    import selfj_trl.score as score_module
    from selfj_trl.io import write_manifest

    data = _many_rows(tmp_path / "rows.jsonl", n=6)
    out = tmp_path / "scores.jsonl"
    other = tmp_path / "other_judge"
    shutil.copytree(tiny_judge, other)
    (other / "config.json").write_text((other / "config.json").read_text().replace("{", '{"retrained": 1,', 1))
    write_manifest(other)  # a complete judge whose files differ: another judge as far as the cache knows
    argv = ["--dataset", str(data), "--output_file", str(out), "--device", "cpu"]
    real_add, real_score, scored = score_module.JsonlCache.add, SelfJudge.score, []

    def add_then_die(self, items):
        real_add(self, items)
        raise KeyboardInterrupt

    monkeypatch.setattr(score_module.JsonlCache, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        main(["--judge", tiny_judge, *argv])  # killed with every row cached, before the output was written
    [first_cache] = tmp_path.glob(".scores.jsonl.resume-*.jsonl")
    assert len(first_cache.read_text().splitlines()) == 6

    def counts(self, instructions, *args, **kwargs):
        scored.append(len(instructions))
        return real_score(self, instructions, *args, **kwargs)

    monkeypatch.setattr(score_module.JsonlCache, "add", real_add)
    monkeypatch.setattr(SelfJudge, "score", counts)
    assert main(["--judge", str(other), *argv]) == 0
    assert scored == [6]  # every row scored by the new judge, none taken from the first judge's cache
    assert not first_cache.exists() and len(out.read_text().splitlines()) == 6


def test_score_help_says_a_killed_run_resumes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "A killed run resumes" in text and "Rerunning the same command after a kill resumes" in text
