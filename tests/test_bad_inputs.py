"""The bad-input matrix: every CLI entry point answers a fixable mistake with one line naming it, exit code 2, no traceback.

Runs the CLI in-process (``selfj_trl.cli.main``) so the matrix stays fast; ``push_to_hub.py`` runs as a script.
Property-based tests (hypothesis) throw random unicode and lengths at ``SelfJudge.score`` and the judging-prompt
builder.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import re
import subprocess
import sys
import typing
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
    row = {
        "instruction": "what is two plus two ?",
        "reference": "four",
        "response": "four",
        "label": 7.0,
        "instruction_id": 0,
        "sample_index": 0,
    }
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
    train_common = [
        "--model_name_or_path",
        tiny_judge,
        "--output_dir",
        str(t / "judge"),
        "--use_cpu",
        "true",
        "--report_to",
        "none",
    ]
    return {
        "label: missing columns": (
            ["label", "--dataset_name", no_cols, *label_common],
            ["missing column", "reference"],
        ),
        "label: only empty rows": (["label", "--dataset_name", empty, *label_common], ["no usable"]),
        "label: non-string value": (["label", "--dataset_name", nonstr, *label_common], ["instruction", "string"]),
        "label: missing file": (["label", "--dataset_name", str(t / "nope.jsonl"), *label_common], ["no such file"]),
        "label: unknown policy": (
            [
                "label",
                "--dataset_name",
                good,
                "--output_dir",
                str(t / "l2"),
                "--policy",
                str(t / "no_policy"),
                "--embedder",
                tiny_embedder,
            ],
            ["policy", "no such folder"],
        ),
        "label: embedder not sentence-transformers": (
            [
                "label",
                "--dataset_name",
                good,
                "--output_dir",
                str(t / "l3"),
                "--policy",
                tiny_policy,
                "--embedder",
                not_st,
                "--max_new_tokens",
                "4",
            ],
            ["sentence-transformers"],
        ),
        "label: cosine_weight out of range": (
            ["label", "--dataset_name", good, "--cosine_weight", "1.5", *label_common],
            ["cosine_weight"],
        ),
        "label: unknown contrast answer kind": (
            ["label", "--dataset_name", good, "--contrast_answers", "repeated", "longer", *label_common],
            ["contrast answer kind", "longer"],
        ),
        "train: NaN label": (
            ["train", "--dataset_name", _labeled(t / "nan", label=math.nan), *train_common],
            ["label", "NaN"],
        ),
        "train: label outside scale": (
            ["train", "--dataset_name", _labeled(t / "big", label=42.0), *train_common],
            ["outside", "label_max"],
        ),
        "train: None response": (
            ["train", "--dataset_name", _labeled(t / "none", response=None), *train_common],
            ["response"],
        ),
        "train: unknown base model": (
            [
                "train",
                "--dataset_name",
                _labeled(t / "ok"),
                "--model_name_or_path",
                str(t / "no_model"),
                "--output_dir",
                str(t / "j2"),
                "--use_cpu",
                "true",
            ],
            ["no_model", "no such folder"],
        ),
        "score: unknown judge": (
            ["score", "--judge", str(t / "no_judge"), "--dataset", rows_ok, "--output_file", str(t / "s.jsonl")],
            ["judge"],
        ),
        "score: missing column": (
            ["score", "--judge", tiny_judge, "--dataset", no_cols, "--output_file", str(t / "s2.jsonl")],
            ["instruction"],
        ),
        "best-of-n: n = 0": (
            [
                "best-of-n",
                "--policy",
                tiny_policy,
                "--judge",
                tiny_judge,
                "--dataset",
                good,
                "--output_dir",
                str(t / "b"),
                "--n",
                "0",
            ],
            ["n"],
        ),
        "evaluate: unknown eval set": (
            ["evaluate", "--judges", tiny_judge, "--eval_sets", str(t / "nope_set"), "--output_dir", str(t / "e")],
            ["nope_set"],
        ),
        "evaluate: unknown judge": (
            ["evaluate", "--judges", str(t / "no_judge"), "--eval_sets", rows_ok, "--output_dir", str(t / "e2")],
            ["no_judge"],
        ),
        "quickstart: unknown stage": (["quickstart", "--stages", "lable", "--output_dir", str(t / "q")], ["lable"]),
    }


CASES = [
    "label: missing columns",
    "label: only empty rows",
    "label: non-string value",
    "label: missing file",
    "label: unknown policy",
    "label: embedder not sentence-transformers",
    "label: cosine_weight out of range",
    "label: unknown contrast answer kind",
    "train: NaN label",
    "train: label outside scale",
    "train: None response",
    "train: unknown base model",
    "score: unknown judge",
    "score: missing column",
    "best-of-n: n = 0",
    "evaluate: unknown eval set",
    "evaluate: unknown judge",
    "quickstart: unknown stage",
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


# ---------------------------------------------------------------------------------------------------------------
# The flag matrix: bad values derived from every command's config dataclasses, refused at parse time
# ---------------------------------------------------------------------------------------------------------------
#: command -> (config dataclasses, the module attribute that runs it once parsed, a valid argv over the fixtures).
#: The runner is replaced by one that fails the test: a bad flag must be refused before anything runs.
def _commands():
    from trl import ModelConfig

    from selfj_trl.best_of_n import BestOfNConfig
    from selfj_trl.evaluation.harness import EvaluationConfig
    from selfj_trl.label_report.config import LabelReportConfig
    from selfj_trl.labeling.config import LabelingConfig
    from selfj_trl.push import PushConfig
    from selfj_trl.quickstart import QuickstartConfig
    from selfj_trl.score import ScoreConfig
    from selfj_trl.serve.config import ServeConfig
    from selfj_trl.trainer.config import SelfJRewardConfig, SelfJScriptArguments

    return {
        "score": (
            (ScoreConfig,),
            "selfj_trl.score:run_score",
            ["--judge", "{judge}", "--dataset", "{rows}", "--output_file", "{out}/s.jsonl"],
        ),
        "best-of-n": (
            (BestOfNConfig,),
            "selfj_trl.best_of_n:run_best_of_n",
            ["--policy", "{policy}", "--judge", "{judge}", "--dataset", "{rows}", "--output_dir", "{out}/b"],
        ),
        "evaluate": (
            (EvaluationConfig,),
            "selfj_trl.evaluation.command:evaluate_judges",
            ["--output_dir", "{out}/e", "--judges", "{judge}", "--eval_sets", "{rows}"],
        ),
        "signal": (
            (LabelReportConfig,),
            "selfj_trl.label_report.report:run_label_report",
            ["--output_dir", "{out}/sig", "--policy", "{policy}", "--embedder", "{embedder}"],
        ),
        "label": (
            (LabelingConfig,),
            "selfj_trl.labeling.pipeline:label_dataset",
            [
                "--dataset_name",
                "{rows}",
                "--output_dir",
                "{out}/l",
                "--policy",
                "{policy}",
                "--embedder",
                "{embedder}",
            ],
        ),
        "train": (
            (SelfJScriptArguments, SelfJRewardConfig, ModelConfig),
            "selfj_trl.trainer.script:train_judge",
            [
                "--model_name_or_path",
                "{judge}",
                "--dataset_name",
                "{rows}",
                "--output_dir",
                "{out}/j",
                "--use_cpu",
                "true",
                "--report_to",
                "none",
            ],
        ),
        "serve": ((ServeConfig,), "selfj_trl.serve.app:build_server", ["--judge", "{judge}"]),
        "push": (
            (PushConfig,),
            "selfj_trl.push:run_push",
            ["--judge_dir", "{judge}", "--judge_repo", "me/judge", "--dry_run"],
        ),
        "quickstart": ((QuickstartConfig,), "selfj_trl.quickstart:run_quickstart", ["--output_dir", "{out}/q"]),
    }


def _checked_fields(dtype):
    """The fields the matrix tries: all of this package's own, and of TRL's and transformers' those the one table
    ranges or that hold floats (their other flags keep their own checks)."""
    from selfj_trl.flags import NUMERIC_FLAGS, field_types, numeric_kind, own_fields

    hints, own = field_types(dtype), own_fields(dtype)
    for f in dataclasses.fields(dtype):
        if f.init and (f.name in own or f.name in NUMERIC_FLAGS or numeric_kind(hints[f.name]) is float):
            yield f, hints[f.name]


def _bad_values(f, hint):
    """(label, value) bad values for one field, from its type, its range in the one table and its path kind."""
    from selfj_trl.flags import CHOICE_FLAGS, DEVICES, FOLDERS, NUMERIC_FLAGS, OUTPUT_FILES, numeric_kind

    kind, bounds = numeric_kind(hint), NUMERIC_FLAGS.get(f.name)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        yield "missing", None
    if kind is not None:
        yield "wrong type", "abc"
    if kind is float:
        yield "nan", "nan"
        yield "inf", "-inf"
    if bounds is not None and bounds.low is not None:
        below = bounds.low - 1 if bounds.low_ok else bounds.low
        yield "below range", str(int(below) if bounds.kind is int else below)
    if bounds is not None and bounds.high is not None:
        yield "above range", str(int(bounds.high) + 1 if bounds.high_ok else bounds.high)
    if bounds is not None and bounds.kind is int:
        yield "not an integer", "2.5"
    if hint is bool or hint == bool | None:
        yield "not a bool", "maybe"
    if "choices" in f.metadata or f.name in CHOICE_FLAGS:
        yield "not a choice", "no-such-choice"
    if kind is None and hint is not bool and str in typing.get_args(hint) + (hint,):
        yield "empty", ""
    if f.name in OUTPUT_FILES:
        yield "existing folder", "{out}"
    if f.name in FOLDERS:
        yield "existing file", "{file}"
    if f.name in DEVICES:
        yield "unavailable device", "cuda:99"


def _matrix():
    cases = []
    for command, (types, _, _) in _commands().items():
        for dtype in types:
            for f, hint in _checked_fields(dtype):
                for label, value in _bad_values(f, hint):
                    cases.append(pytest.param(command, f.name, value, id=f"{command}--{f.name}-{label}"))
    return cases


MATRIX = _matrix()


@pytest.fixture(scope="module")
def places(tmp_path_factory, tiny_policy, tiny_judge, tiny_embedder):
    out = tmp_path_factory.mktemp("flags")
    (out / "a_file.txt").write_text("not a folder\n")
    rows = _jsonl(out / "rows.jsonl", [{"instruction": "hello", "response": "world", "reference": "earth"}])
    return {
        "out": str(out),
        "file": str(out / "a_file.txt"),
        "rows": rows,
        "judge": tiny_judge,
        "policy": tiny_policy,
        "embedder": tiny_embedder,
    }


@pytest.mark.parametrize("command, flag, value", MATRIX)
def test_every_flag_refuses_bad_input_in_one_line(command, flag, value, places, monkeypatch, capsys):
    types, runner, base = _commands()[command]
    module, _, attr = runner.partition(":")

    def never(*args, **kwargs):
        raise AssertionError(f"{command} ran with --{flag}={value!r}: it should have been refused")

    monkeypatch.setattr(importlib.import_module(module), attr, never)
    argv = [a.format(**places) for a in base]
    if value is None:  # a required flag left out
        at = argv.index(f"--{flag}")
        del argv[at : at + 2]
    else:
        argv += [f"--{flag}", value.format(**places)]
    capsys.readouterr()
    code = cli([command, *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"selfj-trl {command}: error: "), lines
    assert flag in lines[0] or flag.replace("_", "-") in lines[0], lines


def test_every_numeric_flag_has_a_range():
    """A new numeric flag of any command is covered by the matrix only once the one table gives it a range."""
    from selfj_trl.flags import NUMERIC_FLAGS, numeric_kind, own_fields

    missing = [
        f"{dtype.__name__}.{f.name}"
        for types, _, _ in _commands().values()
        for dtype in types
        for f, hint in _checked_fields(dtype)
        if f.name in own_fields(dtype)
        and numeric_kind(hint) is not None
        and f.name not in NUMERIC_FLAGS
        and f.name != "fit_weights"
    ]
    assert not missing


def test_matrix_size():
    """docs/reliability.md quotes this count; the matrix is generated, so it only grows with the flags."""
    assert len(MATRIX) >= 400, len(MATRIX)


def test_flag_ranges_accept_every_default():
    """The table's ranges hold for every command's own defaults (a range too strict would refuse a plain run)."""
    from selfj_trl.flags import check_values

    for types, _, _ in _commands().values():
        for dtype in types:
            defaults = {f.name: f.default for f in dataclasses.fields(dtype) if f.default is not dataclasses.MISSING}
            check_values(dtype, defaults)


def test_bad_config_file_is_one_line(tmp_path, places, capsys):
    bad_yaml, unknown = tmp_path / "bad.yaml", tmp_path / "unknown.yaml"
    bad_yaml.write_text("judge: [unclosed\n")
    unknown.write_text("no_such_key: 1\n")
    given = ["--judge", places["judge"], "--dataset", places["rows"], "--output_file", str(tmp_path / "s.jsonl")]
    for config, word in ((bad_yaml, "YAML"), (tmp_path, "--config"), (unknown, "no_such_key")):
        assert cli(["score", "--config", str(config), *given]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and word in lines[0], lines


def test_score_output_path_is_a_folder_subprocess(places, tmp_path):
    """The one line really is all of stderr in a fresh interpreter (no warning, no traceback)."""
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfj_trl.cli",
            "score",
            "--judge",
            places["judge"],
            "--dataset",
            places["rows"],
            "--output_file",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == [
        f"selfj-trl score: error: `--output_file` {tmp_path} is an existing folder; name a file to write."
    ]


def error_lines(err: str) -> list[str]:
    """The lines of stderr that are not progress bars (datasets and tqdm draw theirs on stderr); no traceback."""
    assert "Traceback" not in err, err[-3000:]
    return [
        line
        for line in err.strip().splitlines()
        if line.strip() and ("error:" in line or not re.search(r"\d+/\d+|it/s|examples", line))
    ]


# ---------------------------------------------------------------------------------------------------------------
# Bad files and models: refused in one line naming the file (and the line)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, text, words",
    [
        ("empty.jsonl", "", ["empty.jsonl", "empty"]),
        ("empty_list.json", "[]", ["empty_list.json", "empty JSON list"]),
        ("blank.jsonl", "\n  \n\n", ["blank.jsonl", "blank"]),
        (
            "torn.jsonl",
            '{"instruction": "a", "response": "b"}\n{"instruction": "c", "resp\n',
            ["torn.jsonl", "line 2"],
        ),
        ("header_only.csv", "instruction,response\n", ["header_only.csv", "no rows"]),
    ],
    ids=lambda x: x if isinstance(x, str) and "." in x else "",
)
def test_unusable_table_file_is_one_line(name, text, words, tmp_path, tiny_judge, capsys):
    path = tmp_path / name
    path.write_text(text)
    code = cli(["score", "--judge", tiny_judge, "--dataset", str(path), "--output_file", str(tmp_path / "s.jsonl")])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1, lines
    assert all(w in lines[0] for w in words), lines


def _broken_judge(tmp_path: Path, tiny_judge: str, how: str) -> str:
    import shutil

    from selfj_trl.io import write_manifest

    folder = tmp_path / how
    shutil.copytree(tiny_judge, folder)
    config = json.loads((folder / "config.json").read_text())
    if how == "two_labels":
        from transformers import AutoConfig, AutoModelForSequenceClassification

        two = AutoConfig.from_pretrained(folder)
        two.num_labels = 2
        AutoModelForSequenceClassification.from_config(two).save_pretrained(folder)
    elif how == "truncated":
        with open(folder / "model.safetensors", "r+b") as fh:
            fh.truncate(fh.seek(0, 2) // 2)
    elif how == "unknown_type":
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "no-such-architecture"}))
    write_manifest(folder)  # complete as written: the problem is the content, not a killed save
    return str(folder)


@pytest.mark.parametrize(
    "how, words",
    [
        ("two_labels", ["2 labels"]),
        ("truncated", ["weights", "truncated"]),
        ("unknown_type", ["no-such-architecture"]),
    ],
)
def test_unusable_judge_is_one_line(how, words, tmp_path, tiny_judge, capsys):
    judge = _broken_judge(tmp_path, tiny_judge, how)
    rows = _jsonl(tmp_path / "rows.jsonl", [{"instruction": "a", "response": "b"}])
    code = cli(["score", "--judge", judge, "--dataset", rows, "--output_file", str(tmp_path / "s.jsonl")])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("selfj-trl score: error: "), lines
    assert all(w in lines[0] for w in words), lines


def test_resume_without_checkpoint_is_refused_before_loading(tmp_path, tiny_judge, monkeypatch, capsys):
    from selfj_trl.trainer import script

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the resume flag was checked")

    monkeypatch.setattr(script, "SelfJRewardTrainer", never)
    out = tmp_path / "judge"
    out.mkdir()
    code = cli(
        [
            "train",
            "--model_name_or_path",
            tiny_judge,
            "--dataset_name",
            _labeled(tmp_path / "ok"),
            "--output_dir",
            str(out),
            "--use_cpu",
            "true",
            "--report_to",
            "none",
            "--resume_from_checkpoint",
            "true",
        ]
    )
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and "--resume_from_checkpoint" in lines[0] and str(out) in lines[0], lines


def test_label_refuses_over_long_instruction_before_sampling(
    tmp_path, tiny_policy, tiny_embedder, monkeypatch, capsys
):
    from selfj_trl.labeling import scoring

    def never(*args, **kwargs):
        raise AssertionError("the policy sampled answers for an instruction that cannot be judged")

    monkeypatch.setattr(scoring, "sample_responses", never)
    rows = _jsonl(
        tmp_path / "long.jsonl",
        [{"instruction": "short one", "reference": "fine"}, {"instruction": "word " * 3000, "reference": "fine"}],
    )
    code = cli(
        [
            "label",
            "--dataset_name",
            rows,
            "--output_dir",
            str(tmp_path / "lab"),
            "--policy",
            tiny_policy,
            "--embedder",
            tiny_embedder,
            "--max_length",
            "256",
        ]
    )
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1, lines
    assert "row 1" in lines[0] and "max_length=256" in lines[0], lines


def _run_raising(monkeypatch, err: BaseException) -> int:
    import types

    from selfj_trl import cli as cli_module

    def main(argv):
        raise err

    monkeypatch.setitem(sys.modules, "fake_selfj_raiser", types.SimpleNamespace(main=main))
    monkeypatch.setitem(cli_module.COMMANDS, "raiser", ("fake_selfj_raiser", "test only"))
    return cli(["raiser"])


@pytest.mark.parametrize(
    "err",
    [
        json.JSONDecodeError("Expecting value", "{", 1),
        IsADirectoryError(21, "Is a directory", "/some/folder"),
        NotADirectoryError(20, "Not a directory", "/a/file/x"),
        PermissionError(13, "Permission denied", "/root/secret"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_cli_maps_input_type_errors_to_exit_2(err, monkeypatch, capsys):
    assert _run_raising(monkeypatch, err) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("selfj-trl raiser: error: "), lines


@pytest.mark.parametrize(
    "err", [ValueError("a bug"), PermissionError("no path involved"), KeyError("x")], ids=lambda e: type(e).__name__
)
def test_cli_keeps_the_traceback_of_a_bug(err, monkeypatch):
    with pytest.raises(type(err)):
        _run_raising(monkeypatch, err)


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
    res = subprocess.run(
        [
            sys.executable,
            "push_to_hub.py",
            "--judge_dir",
            str(tmp_path / "nope"),
            "--judge_repo",
            "me/judge",
            "--dry_run",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
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


# ---------------------------------------------------------------------------------------------------------------
# Model folders without their tokenizer: every loader of a judge, policy, embedder or base model says so in one line
# ---------------------------------------------------------------------------------------------------------------
def _without_tokenizer(source: str, folder: Path, which: str) -> str:
    """A copy of ``source`` with ``tokenizer.json`` removed (``json``), or every tokenizer file (``all``)."""
    import shutil

    from selfj_trl.models import TOKENIZER_FILES

    shutil.copytree(source, folder)
    names = ("tokenizer.json",) if which == "json" else TOKENIZER_FILES
    for path in list(folder.rglob("*")):
        if path.name in names:
            path.unlink()
    (folder / "selfj_complete.json").unlink(missing_ok=True)  # a plain folder, not one `selfj-trl train` wrote
    return str(folder)


def _tokenizerless_commands(t: Path, plain_judge: str, policy: str, embedder: str, rows: str, labeled: str):
    return {
        "score": ["score", "--judge", plain_judge, "--dataset", rows, "--output_file", str(t / "s.jsonl")],
        "serve": ["serve", "--judge", plain_judge, "--port", "0"],
        "evaluate": ["evaluate", "--judges", plain_judge, "--eval_sets", rows, "--output_dir", str(t / "e")],
        "best-of-n": [
            "best-of-n",
            "--policy",
            policy,
            "--judge",
            plain_judge,
            "--dataset",
            rows,
            "--output_dir",
            str(t / "b"),
            "--n",
            "2",
        ],
        "label policy": ["label", "--dataset_name", rows, "--policy", policy, "--output_dir", str(t / "l")],
        "label embedder": [
            "label",
            "--dataset_name",
            rows,
            "--policy",
            policy,
            "--embedder",
            embedder,
            "--output_dir",
            str(t / "l2"),
        ],
        "train": [
            "train",
            "--dataset_name",
            labeled,
            "--model_name_or_path",
            plain_judge,
            "--output_dir",
            str(t / "j"),
            "--use_cpu",
            "true",
            "--report_to",
            "none",
        ],
    }


@pytest.mark.parametrize("which", ["json", "all"])
@pytest.mark.parametrize(
    "command", ["score", "serve", "evaluate", "best-of-n", "label policy", "label embedder", "train"]
)
def test_a_model_without_its_tokenizer_is_one_line(command, which, tmp_path, tiny_policy, tiny_embedder, capsys):
    if command == "label embedder" and which == "json":
        pytest.skip("a BERT embedder rebuilds its tokenizer from vocab.txt: not an error")
    from selfj_trl.testing import make_tiny_llama

    plain = make_tiny_llama(tmp_path / "plain_source", kind="seqcls", chat=True)
    judge = _without_tokenizer(str(plain), tmp_path / "judge", which)
    good_policy, good_embedder = tiny_policy, tiny_embedder
    policy = (
        _without_tokenizer(tiny_policy, tmp_path / "policy", which)
        if command in ("best-of-n", "label policy")
        else good_policy
    )
    embedder = (
        _without_tokenizer(tiny_embedder, tmp_path / "embedder", which)
        if command == "label embedder"
        else good_embedder
    )
    if command == "best-of-n":
        judge = str(plain)  # the policy is the broken one here
    rows = _jsonl(
        tmp_path / "rows.jsonl",
        [
            {"instruction": "hello", "response": "world", "reference": "earth", "quality": 1.0},
            {"instruction": "bye", "response": "now", "reference": "later", "quality": 2.0},
        ],
    )
    argv = _tokenizerless_commands(tmp_path, judge, policy, embedder, rows, _labeled(tmp_path / "labeled"))[command]
    name = argv[0]
    capsys.readouterr()
    code = cli(argv)
    lines = error_lines(capsys.readouterr().err)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"selfj-trl {name}: error: "), lines
    assert "tokenizer" in lines[0], lines
    if which == "all":
        assert "no tokenizer" in lines[0] and "tokenizer.json" in lines[0], lines
