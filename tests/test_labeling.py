"""Stage 1: signals, labels, column mappings, resume, multi-process sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from datasets import Dataset, load_from_disk

from selfj_trl.errors import SelfJInputError
from selfj_trl.labeling import LabelingConfig, label_dataset, prepare_rows, self_eval_detail
from selfj_trl.labels import combine_labels, fit_combination
from selfj_trl.measured import measured_label, measured_policies
from selfj_trl.models import load_policy
from selfj_trl.prompts import build_judge_prompt, digit_token_ids
from selfj_trl.signals.digits import digit_score, self_evaluate
from selfj_trl.testing import make_tiny_embedder, table_rows


REPO = Path(__file__).resolve().parents[1]


def _independent_digit_expectation(model, tok, text):
    """Expected digit computed the slow, obvious way: full forward, softmax, sum per digit, renormalise."""
    ids = tok(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(**ids).logits[0, -1].double(), -1)
    per_digit = {}
    for token_id in range(len(tok)):
        s = tok.decode([token_id]).strip()
        if len(s) == 1 and s.isdigit():
            per_digit[int(s)] = per_digit.get(int(s), 0.0) + probs[token_id].item()
    total = sum(per_digit.values())
    return sum(d * p for d, p in per_digit.items()) / total


def test_self_eval_matches_independent_expectation(tiny_policy, tiny_rows):
    model, tok = load_policy(tiny_policy)
    ins = [r["instruction"] for r in tiny_rows]
    refs = [r["reference"] for r in tiny_rows]
    resp = ["the sea is blue", "four", "rating : 7 and more words here", "good", "five six", "the answer"]
    batched = self_evaluate(model, tok, ins, resp, refs)
    for i in range(len(ins)):
        text = build_judge_prompt(tok, ins[i], resp[i], refs[i]).text
        assert batched[i] == pytest.approx(_independent_digit_expectation(model, tok, text), abs=1e-4)
        assert 0.0 <= batched[i] <= 9.0
    no_ref = self_evaluate(model, tok, ins, resp, None)
    text = build_judge_prompt(tok, ins[0], resp[0], None).text
    assert no_ref[0] == pytest.approx(_independent_digit_expectation(model, tok, text), abs=1e-4)


def test_multi_id_digits_are_all_counted(tiny_policy):
    _, tok = load_policy(tiny_policy)
    groups = digit_token_ids(tok)
    assert all(len(g) == 2 for g in groups), groups  # "7" and "▁7"
    ids = [t for g in groups for t in g]
    log_probs = torch.full((len(ids),), -1e4, dtype=torch.float64)
    log_probs[ids.index(groups[7][1])] = 0.0  # all mass on the space-marked 7 only

    def record(lp):  # what digit_logprobs keeps: per digit, the log of the probability summed over its ids
        return {"lp": [float(torch.logsumexp(lp[[ids.index(t) for t in g]], 0)) for g in groups]}

    assert digit_score(record(log_probs)) == pytest.approx(7.0, abs=1e-4)
    log_probs[ids.index(groups[3][0])] = 0.0  # equal mass on plain "3"
    assert digit_score(record(log_probs)) == pytest.approx(5.0, abs=1e-4)


def test_vocabulary_without_digits_is_a_clear_error():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "a": 1, "b": 2, "1": 3}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>")
    with pytest.raises(SelfJInputError, match=r"no token for digit\(s\) 0, 2"):
        digit_token_ids(tok)


def test_label_formula_and_ranges():
    s = [0.0, 9.0, 4.5, 9.0]
    c = [-0.3, 1.0, 0.5, 0.0]
    labels = combine_labels(s, c, cosine_weight=0.5)
    assert labels == pytest.approx([0.0, 9.0, 4.5, 4.5])
    assert combine_labels(s, c, cosine_weight=0.0) == pytest.approx(s)
    assert combine_labels(s, c, cosine_weight=1.0) == pytest.approx([0.0, 9.0, 4.5, 0.0])
    ranked = combine_labels(s, c, cosine_weight=0.5, combination="rank_mean")
    assert min(ranked) >= 0 and max(ranked) <= 9 and ranked[1] == pytest.approx(9 * (0.5 * 5 / 6 + 0.5 * 1.0))
    with pytest.raises(SelfJInputError):
        combine_labels([float("nan")], [0.1])
    w = fit_combination([1, 5, 9, 3], [0.1, 0.5, 0.9, 0.2], [0.0, 0.5, 1.0, 0.2])
    fitted = combine_labels([1, 5, 9, 3], [0.1, 0.5, 0.9, 0.2], combination="fitted", weights=w)
    assert all(0 <= x <= 9 for x in fitted) and fitted[2] > fitted[0]


def test_column_mapping_alpaca_and_messages():
    alpaca = Dataset.from_list(
        [
            {"instruction": "add", "input": "2 and 2", "output": "4"},
            {"instruction": "say hi", "input": "", "output": "hi"},
            {"instruction": "", "input": "", "output": "skip me"},
            {"instruction": "no ref", "input": "", "output": None},
        ]
    )
    rows, skipped = prepare_rows(alpaca, LabelingConfig(input_column="input", reference_column="output"))
    assert [r["instruction"] for r in rows] == ["add\n\n2 and 2", "say hi"]
    assert [r["reference"] for r in rows] == ["4", "hi"]
    assert skipped == Counter({"empty_instruction": 1, "empty_reference": 1})

    chat = Dataset.from_list(
        [
            {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "what is 2+2?"},
                    {"role": "assistant", "content": "4"},
                ]
            }
        ]
    )
    rows, _ = prepare_rows(chat, LabelingConfig(messages_column="messages"))
    assert rows == [{"instruction_id": 0, "instruction": "what is 2+2?", "reference": "4"}]

    seed = Dataset.from_list([{"instruction": "antonym of", "instances": [{"input": "hot", "output": "cold"}]}])
    rows, _ = prepare_rows(seed, LabelingConfig(instances_column="instances"))
    assert rows == [{"instruction_id": 0, "instruction": "antonym of\n\nhot", "reference": "cold"}]

    with pytest.raises(SelfJInputError, match=r"missing column\(s\) \['reference'\]"):
        prepare_rows(Dataset.from_list([{"instruction": "a", "output": "b"}]), LabelingConfig())
    with pytest.raises(SelfJInputError, match="must be a string"):
        prepare_rows(Dataset.from_list([{"instruction": "a", "reference": 3}]), LabelingConfig())


def test_judge_prompt_truncates_response_then_reference_never_instruction(tiny_policy):
    _, tok = load_policy(tiny_policy)
    long = "the sea is blue and deep " * 200
    jp = build_judge_prompt(tok, "write a short poem", long, "the sea " * 100, max_length=160)
    assert jp.response_truncated and jp.reference_truncated
    assert len(tok(jp.text, add_special_tokens=False)["input_ids"]) <= 160
    assert "write a short poem" in jp.text.replace(" ", " ")
    with pytest.raises(SelfJInputError, match="instruction alone"):
        build_judge_prompt(tok, "write " * 400, "x", "y", max_length=100)


def _config(tmp_path, policy, **kw) -> LabelingConfig:
    return LabelingConfig(
        dataset_name=str(tmp_path / "rows.jsonl"),
        output_dir=str(tmp_path / "out"),
        policy=policy,
        embedder=str(_embedder_dir(tmp_path)),
        num_samples=2,
        max_new_tokens=6,
        chunk_size=2,
        generation_batch_size=2,
        judge_batch_size=4,
        max_length=400,
        **kw,
    )


def _embedder_dir(tmp_path) -> Path:
    return make_tiny_embedder(tmp_path.parent / "tiny_embedder")


def _write_rows(tmp_path, n=5):
    from selfj_trl.testing import tiny_instruction_rows

    rows = tiny_instruction_rows(n)
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _rows_of(path) -> list[dict]:
    return table_rows(load_from_disk(str(path)))


def test_label_dataset_end_to_end_and_resume(tmp_path, tiny_policy):
    _write_rows(tmp_path)
    cfg = _config(tmp_path, tiny_policy)
    table = label_dataset(cfg)
    out = Path(cfg.output_dir)
    assert len(table) >= 8  # 5 instructions x 2 samples, minus any empty sample
    for col in [
        "instruction",
        "reference",
        "response",
        "self_eval_score",
        "self_eval_noref_score",
        "cosine_similarity",
        "label",
        "sample_index",
        "instruction_id",
    ]:
        assert col in table.column_names
    assert all(0 <= x <= 9 for x in table["label"]) and all(-1 <= x <= 1 for x in table["cosine_similarity"])
    card = (out / "README.md").read_text()
    assert "self_eval_score" in card and cfg.policy in card and "cosine" in card
    full = _rows_of(out)

    # Interrupted run: lose the last two shards and the assembled dataset, restart with the same arguments.
    shards = sorted((out / "shards").glob("chunk-*.jsonl"))
    assert len(shards) == 3
    for p in shards[1:]:
        p.unlink()
    (out / "state.json").unlink()
    resumed = label_dataset(cfg)
    assert table_rows(resumed) == table_rows(table) == full


def test_resume_refuses_changed_settings(tmp_path, tiny_policy):
    _write_rows(tmp_path, 2)
    label_dataset(_config(tmp_path, tiny_policy))
    with pytest.raises(SelfJInputError, match="different settings"):
        label_dataset(_config(tmp_path, tiny_policy, seed=7))


def _launch(tmp_path, policy, out, nproc):
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        str(nproc),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "selfj_trl.labeling",
        "--dataset_name",
        str(tmp_path / "rows.jsonl"),
        "--output_dir",
        str(out),
        "--policy",
        policy,
        "--embedder",
        str(_embedder_dir(tmp_path)),
        "--num_samples",
        "2",
        "--max_new_tokens",
        "6",
        "--chunk_size",
        "2",
        "--generation_batch_size",
        "2",
        "--max_length",
        "400",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def test_two_processes_give_the_same_rows_as_one(tmp_path, tiny_policy):
    _write_rows(tmp_path, 5)
    _launch(tmp_path, tiny_policy, tmp_path / "one", 1)
    _launch(tmp_path, tiny_policy, tmp_path / "two", 2)
    one, two = _rows_of(tmp_path / "one"), _rows_of(tmp_path / "two")
    assert len(one) > 0
    assert [(r["instruction_id"], r["sample_index"], r["response"]) for r in one] == [
        (r["instruction_id"], r["sample_index"], r["response"]) for r in two
    ]
    for a, b in zip(one, two, strict=False):
        assert a["label"] == pytest.approx(b["label"], abs=1e-4)


def test_cli_bad_input_is_one_line(tmp_path, tiny_policy):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "x", "answer": "y"}) + "\n")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfj_trl.cli",
            "label",
            "--dataset_name",
            str(tmp_path / "bad.jsonl"),
            "--policy",
            tiny_policy,
            "--output_dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "missing column(s)" in res.stderr and "--instruction_column" in res.stderr


@pytest.mark.slow
def test_real_offline_models_label_four_instructions(tmp_path):
    """The real default policy and MiniLM on 4 real instructions (slow: model set-up and CPU generation)."""
    rows = [
        {"instruction": "Name the capital of France.", "reference": "The capital of France is Paris."},
        {"instruction": "Give a synonym for 'happy'.", "reference": "Joyful."},
        {"instruction": "What is 12 times 3?", "reference": "12 times 3 is 36."},
        {"instruction": "Write one sentence about the sea.", "reference": "The sea is vast, deep and full of life."},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = LabelingConfig(
        dataset_name=str(tmp_path / "rows.jsonl"),
        output_dir=str(tmp_path / "out"),
        num_samples=1,
        max_new_tokens=32,
        chunk_size=4,
    )
    table = label_dataset(cfg)
    assert len(table) == 4
    assert all(0 <= x <= 9 for x in table["self_eval_score"])
    assert all(-1 <= x <= 1 for x in table["cosine_similarity"])
    assert len({round(x, 6) for x in table["self_eval_score"]}) > 1  # real signal varies across rows


def test_growing_max_instructions_reuses_finished_chunks(tmp_path, tiny_policy, monkeypatch):
    _write_rows(tmp_path, 6)
    small = label_dataset(_config(tmp_path, tiny_policy, max_instructions=3))  # chunks of 2: [2, 1]
    calls = []
    import selfj_trl.labeling.pipeline as pipeline

    real = pipeline.label_chunk
    monkeypatch.setattr(
        pipeline,
        "label_chunk",
        lambda rows, chunk, *a, **k: calls.append((chunk, len(rows))) or real(rows, chunk, *a, **k),
    )
    big = label_dataset(_config(tmp_path, tiny_policy, max_instructions=5))  # chunks [2, 2, 1]
    assert calls == [(1, 2), (2, 1)]  # chunk 0 reused; the resized chunk 1 and the new chunk 2 labeled
    first = [r for r in table_rows(small) if r["instruction_id"] < 2]
    assert table_rows(big)[: len(first)] == first
    assert sorted({r["instruction_id"] for r in table_rows(big)}) == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------------------------
# Defaults per policy, and the fitted combination
# ---------------------------------------------------------------------------------------------------------------
def test_unset_self_eval_settings_resolve_per_policy():
    from selfj_trl.labeling import SELFJ_DEFAULTS

    other = LabelingConfig(policy="my-org/my-7b-chat")
    assert {k: getattr(other, k) for k in SELFJ_DEFAULTS} == SELFJ_DEFAULTS
    assert other.self_eval_method == "digits" and other.cosine_weight == 0.5  # the paper's method for capable policies
    assert other.defaults_source.startswith("Self-J defaults")
    assert measured_policies() == ["gemma-3-270m", "smollm2-135m-instruct"]  # read from recipes/<policy>/label/
    for alias in measured_policies():
        measured = measured_label(alias)["settings"]
        assert measured, f"no measured labeling defaults for {alias}"
        cfg = LabelingConfig(policy=alias)
        assert {k: getattr(cfg, k) for k in measured} == measured
        assert cfg.defaults_source.startswith(f"measured for {alias}")
        mixed = LabelingConfig(policy=alias, cosine_weight=0.9)
        assert mixed.cosine_weight == 0.9 and "except what the user set" in mixed.defaults_source
    explicit = LabelingConfig(
        policy="x",
        self_eval_method="likelihood",
        likelihood_method="response_gain",
        likelihood_target_tokens=64,
        prompt_style="few_shot",
        cosine_weight=0.25,
    )
    assert explicit.defaults_source == "set by the user" and explicit.likelihood_method == "response_gain"
    # the measured number of target tokens reaches the signal, and a changed one changes the fingerprint
    gemma = LabelingConfig(policy="gemma-3-270m")
    assert gemma.likelihood_target_tokens == measured_label("gemma-3-270m")["settings"]["likelihood_target_tokens"]
    assert "first 128 target tokens" in self_eval_detail(gemma)
    assert LabelingConfig(policy="gemma-3-270m", likelihood_target_tokens=256).fingerprint() != gemma.fingerprint()


def test_fitted_config_needs_dev_data_and_three_weights():
    with pytest.raises(SelfJInputError, match="fit_dataset"):
        LabelingConfig(combination="fitted")
    with pytest.raises(SelfJInputError, match="3 numbers"):
        LabelingConfig(combination="fitted", fit_weights=[0.1, 0.2])
    with pytest.raises(SelfJInputError, match="likelihood_method"):
        LabelingConfig(self_eval_method="likelihood", likelihood_method="perplexity")


def _write_dev(tmp_path, quality_values) -> Path:
    from selfj_trl.testing import tiny_instruction_rows

    rows = tiny_instruction_rows(len(quality_values))
    responses = ["the sea is blue", "four", "good", "bad answer", "hello world", "the answer is four"]
    dev = [
        {**r, "response": responses[i % len(responses)], "quality": q}
        for i, (r, q) in enumerate(zip(rows, quality_values, strict=False))
    ]
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in dev))
    return path


def test_fitted_combination_learns_weights_on_a_dev_slice(tmp_path, tiny_policy, monkeypatch):
    _write_rows(tmp_path, 3)
    dev = _write_dev(tmp_path, [0.1, 0.9, 0.4, 0.7, 0.2, 0.6])
    cfg = _config(tmp_path, tiny_policy, combination="fitted", fit_dataset=str(dev))
    table = label_dataset(cfg)
    out = Path(cfg.output_dir)
    fit_file = next((out / "shards").glob("fit-*.jsonl"))
    dev_rows = [json.loads(line) for line in fit_file.read_text().splitlines()]
    assert len(dev_rows) == 6 and {"self_eval_score", "cosine_similarity", "quality"} <= set(dev_rows[0])
    weights = fit_combination(
        [r["self_eval_score"] for r in dev_rows],
        [r["cosine_similarity"] for r in dev_rows],
        [r["quality"] for r in dev_rows],
    )
    expect = combine_labels(
        table["self_eval_score"], table["cosine_similarity"], combination="fitted", weights=weights
    )
    assert table["label"] == pytest.approx(expect)
    card = (out / "README.md").read_text()
    assert "fitted weights" in card and str(dev) in card and "6 dev rows" in card
    assert f"{weights[1]:+.4f}" in card  # the formula with the actual weights

    # A rerun finds every shard and the scored dev slice on disk: no model is loaded at all.
    import selfj_trl.models as models

    monkeypatch.setattr(models, "load_policy", lambda *a, **k: pytest.fail("reloaded the policy"))
    assert table_rows(label_dataset(cfg)) == table_rows(table)


def test_fitted_combination_with_given_weights_and_bad_dev_data(tmp_path, tiny_policy):
    _write_rows(tmp_path, 2)
    cfg = _config(tmp_path, tiny_policy, combination="fitted", fit_weights=[0.1, 0.5, 0.3])
    table = label_dataset(cfg)
    assert table["label"] == pytest.approx(
        combine_labels(
            table["self_eval_score"], table["cosine_similarity"], combination="fitted", weights=(0.1, 0.5, 0.3)
        )
    )
    assert "given (--fit_weights)" in (Path(cfg.output_dir) / "README.md").read_text()

    bad = tmp_path / "bad_dev.jsonl"
    bad.write_text(json.dumps({"instruction": "a", "reference": "b", "response": "c", "quality": "high"}) + "\n")
    with pytest.raises(SelfJInputError, match="finite number"):
        label_dataset(_fit_cfg(tmp_path, tiny_policy, bad, "bad"))
    nocol = tmp_path / "nocol.jsonl"
    nocol.write_text(json.dumps({"instruction": "a", "reference": "b", "answer": "c", "score": 1}) + "\n")
    with pytest.raises(SelfJInputError, match=r"missing column\(s\) \['response', 'quality'\]"):
        label_dataset(_fit_cfg(tmp_path, tiny_policy, nocol, "nocol"))


def _fit_cfg(tmp_path, policy, dev, name) -> LabelingConfig:
    cfg = _config(tmp_path, policy, combination="fitted", fit_dataset=str(dev))
    cfg.output_dir = str(tmp_path / name)
    return cfg


def test_fit_on_an_alpaca_style_folder_reads_train_rows_of_honest_models_only(tmp_path, tiny_policy):
    folder = tmp_path / "alpaca"
    folder.mkdir()
    instructions = [
        {
            "id": i,
            "instruction": f"what is {w} ?",
            "reference": f"the answer is {w} .",
            "split": "train" if i < 3 else "test",
        }
        for i, w in enumerate(["two", "four", "one", "five"])
    ]
    (folder / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in instructions))
    responses = [
        {"id": r["id"], "model": m, "response": f"{m} says {r['instruction']}", "gpt4_win_prob": q}
        for r in instructions
        for m, q in (("good", 0.8), ("bad", 0.1), ("NullModel", 0.9))
    ]
    (folder / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in responses))
    _write_rows(tmp_path, 2)
    cfg = _config(tmp_path, tiny_policy, combination="fitted", fit_dataset=str(folder), fit_max_instructions=10)
    label_dataset(cfg)
    fit_file = next((Path(cfg.output_dir) / "shards").glob("fit-*.jsonl"))
    used = [json.loads(line) for line in fit_file.read_text().splitlines()]
    assert len(used) == 6  # 3 train instructions x the 2 honest models: no test row, no NullModel
    assert not any("five" in r["instruction"] or "NullModel" in r["response"] for r in used)


@pytest.mark.parametrize(
    "recipe", sorted((REPO / "recipes").glob("*/label/config_*.yaml")), ids=lambda p: f"{p.parts[-3]}/{p.name}"
)
def test_label_recipes_parse_and_point_at_real_files(recipe):
    from trl import TrlParser

    from selfj_trl.io import shared_data_dir

    (config,) = TrlParser(LabelingConfig).parse_args_and_config(["--config", str(recipe)])
    assert config.policy and config.self_eval_method in ("digits", "likelihood")
    if shared_data_dir() is not None:  # the recipes read ../shared/data from the repository root
        for path in (config.dataset_name, config.fit_dataset):
            assert path is None or (REPO / path).exists(), path


def test_card_reports_digit_mass_and_warns_when_it_is_low(tmp_path, tiny_policy, caplog):
    _write_rows(tmp_path, 2)
    cfg = _config(tmp_path, tiny_policy, self_eval_method="digits", prompt_style="zero_shot")
    table = label_dataset(cfg)
    stats = {}
    for f in (Path(cfg.output_dir) / "shards").glob("*.stats.json"):
        for k, v in json.loads(f.read_text()).items():
            stats[k] = stats.get(k, 0) + v
    assert stats["digit_mass_rows"] == len(table)
    mass = stats["digit_mass_sum"] / stats["digit_mass_rows"]
    assert 0.0 < mass < 1.0
    card = (Path(cfg.output_dir) / "README.md").read_text()
    assert f"| mean probability on the digit tokens | {mass:.3f}" in card
    # the random tiny policy spreads its probability over the whole vocabulary: far below the warning level
    assert mass < 0.2 and "mostly noise" in card and "mostly noise" in caplog.text


def test_card_says_how_the_measured_defaults_measured_beside_length():
    from datasets import Dataset

    from selfj_trl.hub import dataset_card
    from selfj_trl.labeling import card_info

    table = Dataset.from_dict({"label": [3.0, 6.0]})
    for alias in measured_policies():
        quality = measured_label(alias)["quality"]
        assert quality is not None, f"recipes/{alias}/label/measured_label.yaml has no measured quality"
        info = card_info(table, LabelingConfig(policy=alias), skipped=Counter(), stats=Counter(), num_instructions=1)
        card = str(dataset_card(info))
        label = " / ".join(f"{v:+.2f}" for v in quality["label"])
        length = " / ".join(f"{v:+.2f}" for v in quality["length"])
        assert f"this label {label}; response length {length}" in card
    # settings the user changed were never measured: no figures claimed for them
    for cfg in (
        LabelingConfig(policy=alias, cosine_weight=0.9),
        LabelingConfig(policy=alias, combination="rank_mean"),
        LabelingConfig(policy="my-org/my-7b"),
    ):
        info = card_info(table, cfg, skipped=Counter(), stats=Counter(), num_instructions=1)
        assert info["measured_quality"] is None and "how good these settings measured" not in str(dataset_card(info))


def test_a_4bit_policy_is_refused_without_cuda_and_loaded_with_qlora_settings_on_it(tiny_policy, capsys, monkeypatch):
    import transformers

    from selfj_trl import models
    from selfj_trl.cli import main as cli

    if not torch.cuda.is_available():
        assert cli(["label", "--dataset_name", "rows.jsonl", "--load_in_4bit", "true"]) == 2
        (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
        assert "--load_in_4bit needs a CUDA device" in line
    seen = {}

    class Loaded(Exception):
        pass

    def from_pretrained(path, **kwargs):
        seen.update(kwargs)
        raise Loaded

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(models, "has_bitsandbytes", lambda: False)
    with pytest.raises(SelfJInputError, match=r"needs bitsandbytes.*selfj-trl\[gpu\]"):
        models.load_policy(tiny_policy, device="cuda:0", dtype="bfloat16", load_in_4bit=True)
    assert not seen  # refused before any weight is read
    monkeypatch.setattr(models, "has_bitsandbytes", lambda: True)
    with pytest.raises(Loaded):
        models.load_policy(tiny_policy, device="cuda:0", dtype="bfloat16", load_in_4bit=True)
    config = seen["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16 and seen["device_map"] == {"": torch.device("cuda:0")}
    seen.clear()
    with pytest.raises(Loaded):
        models.load_policy(tiny_policy, device="cpu", dtype="float32")
    assert "quantization_config" not in seen and "device_map" not in seen  # full precision: placed by .to(device)
