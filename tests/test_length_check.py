"""The length-exploitation check (recipes/results/grpo_length_check.py): both settings run the GRPO recipe, the
unseen quality measure is logged per step beside the completion length, and a finished setting is never rerun."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from selfj_trl.io import load_script, read_jsonl
from selfj_trl.testing import tiny_instruction_rows


SCRIPT = Path(__file__).resolve().parents[1] / "recipes" / "results" / "grpo_length_check.py"


def load_check():
    return load_script(SCRIPT)


def test_length_check_logs_length_and_the_unseen_measure_per_step_and_resumes(
    tiny_policy, tiny_judge, tiny_embedder, tmp_path
):
    check = load_check()
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in tiny_instruction_rows(6)))
    out = tmp_path / "check"
    argv = [
        "--judge",
        tiny_judge,
        "--policy",
        tiny_policy,
        "--embedder",
        tiny_embedder,
        "--prompts_file",
        str(prompts),
    ]
    controlled = tmp_path / "controlled_judge"
    shutil.copytree(tiny_judge, controlled)
    argv += ["--steps", "2", "--prompts", "4", "--window", "1", "--out", str(out), "--max_completion_length", "24"]
    argv += ["--controlled_judge", str(controlled)]
    assert check.main(argv) == 0
    for name, overlong, judge in (
        ("judge", False, tiny_judge),
        ("judge_overlong", True, tiny_judge),
        ("controlled_judge", False, str(controlled)),
    ):
        config = yaml.safe_load((out / name / "config.yaml").read_text())
        assert ("overlong_cache" in config) == overlong and config["monitor_reference_column"] == "reference"
        assert config["judge"] == judge and config["max_completion_length"] == 24
        assert config.get("overlong_cache") == (6 if overlong else None)  # the recipe's 32 of 128, at 24
        rows = json.loads((out / name / "log_history.json").read_text())
        assert [r["step"] for r in rows] == [1, 2]
        assert all(check.LENGTH in r and check.QUALITY in r and -1 <= r[check.QUALITY] <= 1 for r in rows)
        assert ("rewards/soft_overlong_punishment_reward/mean" in rows[0]) == overlong
    summary = (out / "summary.md").read_text()
    assert "| judge | 2 |" in summary and "| judge_overlong | 2 |" in summary and "| controlled_judge | 2 |" in summary
    with Image.open(out / "grpo_length_check.png") as im:
        im.verify()
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/log_history.json")}
    assert check.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/log_history.json")} == before


def test_default_prompts_are_alpaca_eval_train_rows_only_or_the_bundled_ones(tmp_path, monkeypatch):
    check = load_check()
    data = tmp_path / "data" / "alpaca_eval_gpt4"
    data.mkdir(parents=True)
    rows = [
        {"id": "a", "instruction": "train one", "reference": "ref a", "split": "train"},
        {"id": "b", "instruction": "test one", "reference": "ref b", "split": "test"},
    ]
    (data / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("SELFJ_SHARED_DATA", str(tmp_path / "data"))
    written = check.prompt_file(tmp_path, None)
    assert read_jsonl(written) == [{"instruction": "train one", "reference": "ref a"}]
    monkeypatch.setenv("SELFJ_SHARED_DATA", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    assert check.prompt_file(tmp_path / "other", None) == "selfj_trl/data/instructions.jsonl"


def test_heldout_fold_prompts_are_that_folds_train_instructions_only(tmp_path, monkeypatch):
    """A distill_cv fold judge trained on the other fold's instructions: its loop must not prompt with them."""
    check = load_check()
    data = tmp_path / "data" / "alpaca_eval_gpt4"
    data.mkdir(parents=True)
    rows = [{"id": str(i), "instruction": f"train {i}", "reference": f"ref {i}", "split": "train"} for i in range(40)]
    rows.append({"id": "t", "instruction": "test one", "reference": "ref t", "split": "test"})
    (data / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("SELFJ_SHARED_DATA", str(tmp_path / "data"))
    folds = [{r["instruction"] for r in read_jsonl(check.prompt_file(tmp_path, None, (k, 2)))} for k in (0, 1)]
    assert folds[0] and folds[1] and not folds[0] & folds[1]
    assert folds[0] | folds[1] == {f"train {i}" for i in range(40)}  # the test row in neither
    with pytest.raises(SystemExit) as refused:
        check.main(["--heldout_fold", "2", "--out", str(tmp_path / "o")])
    assert refused.value.code == 2
    with pytest.raises(SystemExit) as refused:
        check.main(["--settings", "controlled_judge", "--out", str(tmp_path / "o")])
    assert refused.value.code == 2
