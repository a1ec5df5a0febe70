"""The bad-input matrix: every CLI entry point answers a fixable mistake with one line naming it, exit code 2, no traceback.

Runs the CLI in-process (``selfj_trl.cli.main``) so the matrix stays fast; ``push_to_hub.py`` runs as a script.
Property-based tests (hypothesis) throw random unicode and lengths at ``SelfJudge.score`` and the judging-prompt
builder.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfj_trl.cli import main as cli
from selfj_trl.errors import SelfJInputError


REPO = Path(__file__).resolve().parents[1]


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _labeled(path: Path, **override) -> str:
    row = {"instruction": "what is two plus two ?", "reference": "four", "response": "four", "label": 7.0,
           "instruction_id": 0, "sample_index": 0}
    rows = [dict(row, **override), dict(row, response="five", label=2.0)]
    Dataset.from_list(rows).save_to_disk(str(path))
    return str(path)


@pytest.fixture
def bad(tmp_path, tiny_policy, tiny_judge, tiny_embedder):
    """(argv, words the one-line error must contain) for each case of the matrix."""
    t = tmp_path
    no_cols = _jsonl(t / "no_cols.jsonl", [{"prompt": "x", "answer": "y"}])
    empty = _jsonl(t / "empty.jsonl", [{"instruction": "", "reference": ""}])
    nonstr = _jsonl(t / "nonstr.jsonl", [{"instruction": 3, "reference": "y"}])
    good = _jsonl(t / "good.jsonl", [{"instruction": "hello world", "reference": "good"}])
    rows_ok = _jsonl(t / "score.jsonl", [{"instruction": "hello", "response": "world"}])
    not_st = str(t / "not_st")
    Path(not_st).mkdir()
    (Path(not_st) / "config.json").write_text("{}")
    label_common = ["--output_dir", str(t / "lab"), "--policy", tiny_policy, "--embedder", tiny_embedder]
    train_common = ["--model_name_or_path", tiny_judge, "--output_dir", str(t / "judge"), "--use_cpu", "true",
                    "--report_to", "none"]
    return {
        "label: missing columns": (["label", "--dataset_name", no_cols, *label_common], ["missing column", "reference"]),
        "label: only empty rows": (["label", "--dataset_name", empty, *label_common], ["no usable"]),
        "label: non-string value": (["label", "--dataset_name", nonstr, *label_common], ["instruction", "string"]),
        "label: missing file": (["label", "--dataset_name", str(t / "nope.jsonl"), *label_common], ["no such file"]),
        "label: unknown policy": (["label", "--dataset_name", good, "--output_dir", str(t / "l2"),
                                   "--policy", str(t / "no_policy"), "--embedder", tiny_embedder], ["policy"]),
        "label: embedder not sentence-transformers": (
            ["label", "--dataset_name", good, "--output_dir", str(t / "l3"), "--policy", tiny_policy,
             "--embedder", not_st, "--max_new_tokens", "4"], ["sentence-transformers"]),
        "label: cosine_weight out of range": (["label", "--dataset_name", good, "--cosine_weight", "1.5",
                                               *label_common], ["cosine_weight"]),
        "train: NaN label": (["train", "--dataset_name", _labeled(t / "nan", label=math.nan), *train_common],
                             ["label", "NaN"]),
        "train: label outside scale": (["train", "--dataset_name", _labeled(t / "big", label=42.0), *train_common],
                                       ["outside", "label_max"]),
        "train: None response": (["train", "--dataset_name", _labeled(t / "none", response=None), *train_common],
                                 ["response"]),
        "train: unknown base model": (["train", "--dataset_name", _labeled(t / "ok"), "--model_name_or_path",
                                       str(t / "no_model"), "--output_dir", str(t / "j2"), "--use_cpu", "true"],
                                      ["no_model"]),
        "score: unknown judge": (["score", "--judge", str(t / "no_judge"), "--dataset", rows_ok, "--output_file",
                                  str(t / "s.jsonl")], ["judge"]),
        "score: missing column": (["score", "--judge", tiny_judge, "--dataset", no_cols, "--output_file",
                                   str(t / "s2.jsonl")], ["instruction"]),
        "best-of-n: n = 0": (["best-of-n", "--policy", tiny_policy, "--judge", tiny_judge, "--dataset", good,
                              "--output_dir", str(t / "b"), "--n", "0"], ["n"]),
        "evaluate: unknown eval set": (["evaluate", "--judges", tiny_judge, "--eval_sets", str(t / "nope_set"),
                                        "--output_dir", str(t / "e")], ["nope_set"]),
        "evaluate: unknown judge": (["evaluate", "--judges", str(t / "no_judge"), "--eval_sets", rows_ok,
                                     "--output_dir", str(t / "e2")], ["no_judge"]),
        "quickstart: unknown stage": (["quickstart", "--stages", "lable", "--output_dir", str(t / "q")], ["lable"]),
    }


CASES = [
    "label: missing columns", "label: only empty rows", "label: non-string value", "label: missing file",
    "label: unknown policy", "label: embedder not sentence-transformers", "label: cosine_weight out of range",
    "train: NaN label", "train: label outside scale", "train: None response", "train: unknown base model",
    "score: unknown judge", "score: missing column", "best-of-n: n = 0", "evaluate: unknown eval set",
    "evaluate: unknown judge", "quickstart: unknown stage",
]


@pytest.mark.parametrize("case", CASES)
def test_cli_bad_input_gives_one_clear_line(case, bad, capsys):
    argv, words = bad[case]
    code = cli(argv)
    err = capsys.readouterr().err
    assert code == 2, (case, err[-2000:])
    message = [line for line in err.splitlines() if "error:" in line]
    assert message, err[-2000:]
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in message[-1].lower(), (case, message[-1])


def _train_numeric_cases():
    """Every numeric flag of the trainer's one table, plus the values that mean no training (issue 17, item 3)."""
    from selfj_trl.trainer.config import NUMERIC_FLAGS

    cases = [("num_train_epochs", v) for v in ("-1", "0", "nan", "inf")] + [("max_steps", "0")]
    for name, (kind, low, low_ok, _) in NUMERIC_FLAGS.items():
        cases.append((name, str(int(low) - 1 if low_ok else int(low))))
        if kind is float:
            cases += [(name, "nan"), (name, "-inf")]
    return list(dict.fromkeys(cases))


@pytest.mark.parametrize("flag, value", _train_numeric_cases(), ids=lambda x: str(x))
def test_train_numeric_flag_refused_at_parse_time(flag, value, tmp_path, tiny_judge, capsys):
    out = tmp_path / "judge"
    argv = ["train", "--model_name_or_path", tiny_judge, "--dataset_name", _labeled(tmp_path / "ok"), "--output_dir",
            str(out), "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no", f"--{flag}={value}"]
    capsys.readouterr()
    code = cli(argv)
    err = capsys.readouterr().err
    assert code == 2, (flag, value, err[-2000:])
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"selfj-trl train: error: `--{flag}` must be"), err[-2000:]
    assert not out.exists() or not any(out.iterdir())  # refused before anything was written


def test_cli_runtime_failure_is_one_line_exit_1(monkeypatch, capsys):
    """A run that fails on valid input (a diverging loss, a refused upload) exits 1 with one line, no traceback."""
    import types

    from selfj_trl import cli as cli_module
    from selfj_trl.errors import TrainingDivergedError

    def main(argv):
        raise TrainingDivergedError("loss became nan at step 3;\nthe last checkpoint is kept.")

    monkeypatch.setitem(sys.modules, "fake_selfj_command", types.SimpleNamespace(main=main))
    monkeypatch.setitem(cli_module.COMMANDS, "diverge", ("fake_selfj_command", "test only"))
    assert cli(["diverge"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "selfj-trl diverge: error: loss became nan at step 3; the last checkpoint is kept."


def test_push_command_missing_folder_is_one_line(tmp_path, capsys):
    code = cli(["push", "--judge_dir", str(tmp_path / "nope"), "--judge_repo", "me/judge", "--dry_run"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().startswith("selfj-trl push: error: --judge_dir") and "Traceback" not in err


def test_push_to_hub_missing_folder_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, "push_to_hub.py", "--judge_dir", str(tmp_path / "nope"),
                          "--judge_repo", "me/judge", "--dry_run"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("push_to_hub.py: error:") and "nope" in res.stderr


# ---------------------------------------------------------------------------------------------------------------
# Property-based: random unicode and lengths
# ---------------------------------------------------------------------------------------------------------------
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=400)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instruction=texts.filter(lambda s: s.strip()), response=texts)
def test_score_any_unicode_gives_a_finite_score(tiny_judge_model, instruction, response):
    scores = tiny_judge_model.score([instruction], [response])
    assert len(scores) == 1 and math.isfinite(scores[0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instruction=texts, response=texts, reference=texts, max_length=st.integers(60, 400))
def test_judge_prompt_builder_fits_or_refuses(tiny_tokenizer, instruction, response, reference, max_length):
    from selfj_trl.prompts import build_judge_prompt

    try:
        jp = build_judge_prompt(tiny_tokenizer, instruction, response, reference, max_length=max_length)
    except SelfJInputError as err:
        assert "\n" not in str(err)  # one line, naming the problem
        return
    assert len(tiny_tokenizer(jp.text, add_special_tokens=False)["input_ids"]) <= max_length
    assert instruction in jp.text  # the judging instruction is never cut


@pytest.fixture(scope="module")
def tiny_judge_model(tmp_path_factory):
    from selfj_trl.judge import SelfJudge
    from selfj_trl.testing import make_tiny_llama

    return SelfJudge.from_pretrained(str(make_tiny_llama(tmp_path_factory.mktemp("pj"), kind="seqcls")))


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from selfj_trl.testing import make_tokenizer

    return make_tokenizer(chat=False)
