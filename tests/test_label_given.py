"""Labeling given responses (``--response_column``): existing (instruction, reference, response) rows get the same
self-evaluation and cosine as policy samples, alone or beside them, from any table or an AlpacaEval-style folder's
train pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import load_from_disk

from selfj_trl.errors import SelfJInputError
from selfj_trl.labeling import LabelingConfig, label_dataset, prepare_rows, score_signals
from selfj_trl.labeling.rows import load_alpaca_train_pool
from selfj_trl.signals import ModelSet
from selfj_trl.testing import make_tiny_embedder, table_rows


REPO = Path(__file__).resolve().parents[1]
GIVEN = [  # two instructions, answered by three "models" (one answer empty)
    ("what is two plus two ?", "the answer is four", "four", "good-model"),
    ("what is two plus two ?", "the answer is four", "five", "bad-model"),
    ("hello world", "good hello world", "hello", "good-model"),
    ("what is two plus two ?", "the answer is four", "the answer is four", "copy-model"),
    ("hello world", "good hello world", "", "bad-model"),
]


def _write(tmp_path) -> Path:
    path = tmp_path / "given.jsonl"
    path.write_text(
        "".join(
            json.dumps({"instruction": i, "reference": r, "response": a, "model": m}) + "\n" for i, r, a, m in GIVEN
        )
    )
    return path


def _config(tmp_path, policy, out="out", **kw) -> LabelingConfig:
    return LabelingConfig(
        dataset_name=str(_write(tmp_path)),
        output_dir=str(tmp_path / out),
        policy=policy,
        embedder=str(make_tiny_embedder(tmp_path.parent / "tiny_embedder")),
        max_new_tokens=6,
        chunk_size=1,
        generation_batch_size=2,
        max_length=400,
        response_column="response",
        **kw,
    )


def test_given_responses_are_labeled_without_sampling(tmp_path, tiny_policy, monkeypatch):
    import selfj_trl.labeling.scoring as scoring

    monkeypatch.setattr(scoring, "sample_responses", lambda *a, **k: pytest.fail("sampled with num_samples=0"))
    # the exact fp32 path, with the reference-free diagnostic asked for: every column compared to a direct scoring
    cfg = _config(tmp_path, tiny_policy, response_model_column="model", noref_baseline=True, dtype="float32")
    assert cfg.num_samples == 0
    table = label_dataset(cfg)
    rows = table.to_list()
    assert [(r["instruction_id"], r["sample_index"], r["response"], r["model"], r["source"]) for r in rows] == [
        (0, 0, "four", "good-model", "given"),
        (0, 1, "five", "bad-model", "given"),
        (0, 2, "the answer is four", "copy-model", "given"),
        (2, 0, "hello", "good-model", "given"),
    ]
    # the very same signals as any row: scored here directly, row by row
    s, s0, c = score_signals(
        cfg,
        ModelSet(cfg.policy, cfg.embedder, dtype="float32"),
        table["instruction"],
        table["response"],
        table["reference"],
    )
    assert table["self_eval_score"] == pytest.approx(s, abs=1e-5)
    assert table["self_eval_noref_score"] == pytest.approx(s0, abs=1e-5)
    assert table["cosine_similarity"] == pytest.approx(c, abs=1e-5)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| rows by source | 4 given responses, 0 policy samples |" in card
    assert "empty_given_response | 1" in card


def test_given_and_sampled_rows_in_one_dataset_resume(tmp_path, tiny_policy):
    cfg = _config(tmp_path, tiny_policy, num_samples=2)
    table = label_dataset(cfg)
    by_source = {s: [r for r in table.to_list() if r["source"] == s] for s in ("given", "policy")}
    assert len(by_source["given"]) == 4 and 1 <= len(by_source["policy"]) <= 4  # 2 instructions x 2 samples
    assert all(r["model"] is None for r in by_source["given"])  # no model column named
    n_given = {0: 3, 2: 1}
    assert all(
        r["model"] == tiny_policy and r["sample_index"] >= n_given[r["instruction_id"]] for r in by_source["policy"]
    )
    card = (Path(cfg.output_dir) / "README.md").read_text()
    assert f"| rows by source | 4 given responses, {len(by_source['policy'])} policy samples |" in card
    shards = sorted((Path(cfg.output_dir) / "shards").glob("chunk-*.jsonl"))
    shards[-1].unlink()
    (Path(cfg.output_dir) / "state.json").unlink()
    assert table_rows(label_dataset(cfg)) == table_rows(table) == table_rows(load_from_disk(cfg.output_dir))
    with pytest.raises(SelfJInputError, match="different settings"):  # given-only is another dataset
        label_dataset(_config(tmp_path, tiny_policy, num_samples=0))


def test_given_response_flags_parse_and_refuse_nonsense():
    from trl import TrlParser

    (cfg,) = TrlParser(LabelingConfig).parse_args_and_config(
        [
            "--dataset_name",
            "x",
            "--response_column",
            "answer",
            "--response_model_column",
            "model",
            "--num_samples",
            "2",
        ]
    )
    assert (cfg.response_column, cfg.response_model_column, cfg.num_samples) == ("answer", "model", 2)
    assert LabelingConfig(dataset_name="x").num_samples == 2  # without given responses: sampling as before
    with pytest.raises(SelfJInputError, match="num_samples must be >= 1"):
        LabelingConfig(dataset_name="x", num_samples=0)
    with pytest.raises(SelfJInputError, match="needs --response_column"):
        LabelingConfig(dataset_name="x", response_model_column="model")
    with pytest.raises(SelfJInputError, match="cannot be combined"):
        LabelingConfig(dataset_name="x", response_column="r", messages_column="messages")


def test_max_instructions_counts_instructions_not_responses(tmp_path):
    from datasets import Dataset

    rows, skipped = prepare_rows(
        Dataset.from_list([{"instruction": i, "reference": r, "response": a} for i, r, a, _ in GIVEN]),
        LabelingConfig(dataset_name="x", response_column="response", max_instructions=1),
    )
    assert len(rows) == 1 and [g["response"] for g in rows[0]["given"]] == ["four", "five", "the answer is four"]
    with pytest.raises(SelfJInputError, match=r"missing column\(s\) \['answer'\]"):
        prepare_rows(
            Dataset.from_list([{"instruction": "a", "reference": "b"}]),
            LabelingConfig(dataset_name="x", response_column="answer"),
        )


def _alpaca_folder(tmp_path) -> Path:
    folder = tmp_path / "alpaca"
    folder.mkdir()
    instructions = [
        {
            "id": i,
            "instruction": f"what is {w} ?",
            "reference": f"the answer is {w} .",
            "subset": "s",
            "split": "train" if i < 2 else "test",
        }
        for i, w in enumerate(["two", "four", "five"])
    ]
    (folder / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in instructions))
    responses = [
        {"id": r["id"], "model": m, "response": f"{m} says {r['id']}", "gpt4_win_prob": 0.5}
        for r in instructions
        for m in ("b-model", "a-model")
    ]
    (folder / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in responses))
    return folder


def test_alpaca_folder_gives_its_train_pool_and_never_the_grades(tmp_path, tiny_policy):
    pool = load_alpaca_train_pool(_alpaca_folder(tmp_path))
    assert "gpt4_win_prob" not in pool.column_names
    assert [(r["id"], r["model"]) for r in pool] == [(0, "a-model"), (0, "b-model"), (1, "a-model"), (1, "b-model")]
    cfg = LabelingConfig(
        dataset_name=str(tmp_path / "alpaca"),
        output_dir=str(tmp_path / "out"),
        policy=tiny_policy,
        embedder=str(make_tiny_embedder(tmp_path.parent / "tiny_embedder")),
        chunk_size=2,
        max_length=400,
        response_column="response",
        response_model_column="model",
        self_eval_method="likelihood",
        likelihood_method="reference_gain",
        cosine_weight=0.25,
    )
    table = label_dataset(cfg)
    assert len(table) == 4 and set(table["model"]) == {"a-model", "b-model"}
    assert not any("five" in t for t in table["instruction"])  # no test instruction reaches a label


def test_the_pool_recipe_labels_the_alpaca_train_pool():
    from trl import TrlParser

    from selfj_trl.io import shared_data_dir

    recipe = REPO / "recipes" / "gemma-3-270m" / "label" / "config_alpaca_train_pool.yaml"
    (cfg,) = TrlParser(LabelingConfig).parse_args_and_config(["--config", str(recipe)])
    assert (cfg.response_column, cfg.response_model_column, cfg.policy) == ("response", "model", "gemma-3-270m")
    assert cfg.num_samples >= 1  # the policy's own samples beside the 17 models' answers
    if shared_data_dir() is None:
        pytest.skip("the project's data folder is not here")
    rows, skipped = prepare_rows(load_alpaca_train_pool(REPO / cfg.dataset_name), cfg)
    assert len(rows) == 317 and sum(len(r["given"]) for r in rows) + skipped["empty_given_response"] == 317 * 17


def test_skipping_the_reference_free_baseline_leaves_the_labels_as_they_were(tmp_path, tiny_policy, monkeypatch):
    import math

    import selfj_trl.labeling.scoring as scoring

    lik = {"self_eval_method": "likelihood", "likelihood_method": "reference_gain", "cosine_weight": 0.25}
    full = label_dataset(_config(tmp_path, tiny_policy, out="full", noref_baseline=True, **lik))
    calls = []
    real = scoring.score_signal
    monkeypatch.setattr(scoring, "score_signal", lambda name, *a, **k: calls.append(name) or real(name, *a, **k))
    lean = label_dataset(_config(tmp_path, tiny_policy, out="lean", noref_baseline=False, **lik))
    assert "digits" not in calls and "likelihood" in calls  # one policy forward pass per row saved
    assert lean["label"] == pytest.approx(full["label"], abs=1e-6)
    assert lean["self_eval_score"] == pytest.approx(full["self_eval_score"], abs=1e-6)
    assert all(math.isnan(x) for x in lean["self_eval_noref_score"])
    assert "not computed (`--noref_baseline false`" in (tmp_path / "lean" / "README.md").read_text()
