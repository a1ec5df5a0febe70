"""Label-quality report (``selfj-trl signal``) and the signals it measures: prompt styles, shared-prefix scoring,
likelihood self-evaluation, train-only data."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from selfj_trl import prompts as P
from selfj_trl.errors import SelfJInputError
from selfj_trl.eval_sets import load_alpaca_train_rows as load_train_rows
from selfj_trl.label_report import (
    LabelReportConfig,
    combined_labels,
    correlation_summary,
    label_report,
    parse_digit_variant,
)
from selfj_trl.labeling import LabelingConfig
from selfj_trl.models import load_policy
from selfj_trl.signals.digits import digit_logprobs, digit_score
from selfj_trl.signals.likelihood import LIKELIHOOD_SCALES, gain_to_score, likelihood_gains, likelihood_self_eval


INS = ["write a short poem about the sea", "what is two plus two ?"]
REF = ["the sea is blue and deep", "the answer is four"]
RESPONSES = ["the sea is blue and deep", "hello world good bad", "one two", "the answer is four", "five six seven"]
GROUP = [0, 0, 0, 1, 1]


def _rows():
    return [INS[g] for g in GROUP], RESPONSES, [REF[g] for g in GROUP]


def _embedder_dir(root: Path) -> Path:
    """A tiny sentence-transformers model (random BERT + mean pooling), saved locally."""
    path = root / "tiny_embedder_signal"
    if (path / "modules.json").exists():
        return path
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789", "the", "sea"]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab))
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    bert = BertModel(
        BertConfig(
            vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    )
    bert.save_pretrained(path / "bert")
    tok.save_pretrained(path / "bert")
    SentenceTransformer(modules=[Transformer(str(path / "bert")), Pooling(16)]).save(str(path))
    return path


# ---------------------------------------------------------------------------------------------------------------
# Prompt styles
# ---------------------------------------------------------------------------------------------------------------
def test_default_prompt_puts_the_rating_next_and_styles_differ(tiny_plain_policy):
    _, tok = load_policy(tiny_plain_policy)
    no_lead = P.build_judge_prompt(tok, "hello", "world", "good", prompt_style="zero_shot").text  # the old name
    assert no_lead == P.JUDGE_PROMPT_TEMPLATE.format(
        instruction="hello",
        response="world",
        ref_hint=P.digit_prompt_parts()[6],
        reference_block=P.digit_prompt_parts()[5].format(reference="good"),
    )
    lead = P.build_judge_prompt(tok, "hello", "world", "good", prompt_style="zero_shot_lead").text
    assert lead == no_lead + P.RATING_LEAD["plain"]
    assert P.build_judge_prompt(tok, "hello", "world", "good").text == lead  # the default: the digit is next
    few = P.build_judge_prompt(tok, "hello", "world", "good", prompt_style="few_shot").text
    assert few.endswith(lead) and all(ex["instruction"] in few for ex in P.FEW_SHOT_EXAMPLES)
    few_noref = P.build_judge_prompt(tok, "hello", "world", None, prompt_style="few_shot").text
    assert "Reference answer" not in few_noref  # examples follow the row: no reference shown when the row has none
    after = P.build_judge_prompt(tok, "hello", "world", "good", prompt_style="reference_after").text
    assert after.index("### Answer") < after.index("### Reference answer") < after.index("### Rating")
    assert "(1-5)" in P.build_judge_prompt(tok, "hello", "world", "good", prompt_style="scale_1_5").text
    with pytest.raises(SelfJInputError, match="prompt_style must be one of"):
        P.build_judge_prompt(tok, "hello", "world", prompt_style="fancy")
    with pytest.raises(SelfJInputError, match="prompt_style"):
        LabelingConfig(dataset_name="x", prompt_style="fancy")


def test_chat_styles_open_the_answer_with_the_lead(tiny_policy):
    _, tok = load_policy(tiny_policy)
    text = P.build_judge_prompt(tok, "hello", "world", "good", prompt_style="few_shot").text
    assert text.endswith("<|assistant|> " + P.RATING_LEAD["chat"])
    assert text.count("<|assistant|>") == len(P.FEW_SHOT_EXAMPLES) + 1  # one worked turn per example, then ours


def test_few_shot_truncation_keeps_examples_and_fits(tiny_policy):
    _, tok = load_policy(tiny_policy)
    long = " ".join(["the sea is blue"] * 200)
    jp = P.build_judge_prompt(tok, "hello", long, long, prompt_style="few_shot", max_length=700)
    assert jp.response_truncated and len(tok(jp.text, add_special_tokens=False)["input_ids"]) <= 700
    assert all(ex["response"] in jp.text for ex in P.FEW_SHOT_EXAMPLES)


# ---------------------------------------------------------------------------------------------------------------
# Shared-prefix digit scoring == one plain forward pass per row
# ---------------------------------------------------------------------------------------------------------------
def _plain_digit_score(model, tok, text: str, style: str, chat: bool) -> float:
    """Slow, obvious version: the whole prompt in one forward pass, no cache, expectation over the style's digits."""
    ids = tok(text, add_special_tokens=not chat, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
    lo, hi = P.PROMPT_STYLE_DIGITS[style]
    per_digit = [float(probs[ids_].sum()) for ids_ in P.digit_token_ids(tok)][lo : hi + 1]
    return sum(d * p for d, p in enumerate(per_digit)) / sum(per_digit) * 9.0 / (hi - lo)


@pytest.mark.parametrize(
    ("policy_fixture", "style"),
    [
        ("tiny_policy", "few_shot"),
        ("tiny_plain_policy", "few_shot"),
        ("tiny_policy", "zero_shot"),
        ("tiny_plain_policy", "scale_1_5"),
    ],
)
def test_digit_logprobs_match_a_plain_forward_pass(policy_fixture, style, request):
    model, tok = load_policy(request.getfixturevalue(policy_fixture))
    chat = P.has_chat_template(tok)
    ins, resp, refs = _rows()
    for references in (refs, None):
        records = digit_logprobs(model, tok, ins, resp, references, groups=GROUP, prompt_style=style, max_length=800)
        ours = [digit_score(r, style) for r in records]
        for i, score in enumerate(ours):
            text = P.build_judge_prompt(
                tok, ins[i], resp[i], references[i] if references else None, max_length=800, prompt_style=style
            ).text
            assert score == pytest.approx(_plain_digit_score(model, tok, text, style, chat), abs=1e-3)
        assert all(0.0 <= s <= 9.0 for s in ours)
        assert all(0.0 < r["mass"] <= 1.0 + 1e-6 for r in records)


def test_digit_readouts():
    lp = [math.log(p) for p in [0.0001] * 7 + [0.6, 0.3, 0.0993]]
    rec = {"lp": lp, "lp_single": [math.log(1 / 10)] * 10, "mass": 1.0}
    assert digit_score(rec, "zero_shot", "argmax") == 7.0
    assert digit_score(rec, "zero_shot", "single_id") == pytest.approx(4.5)
    assert digit_score(rec, "zero_shot") == pytest.approx(sum(d * math.exp(v) for d, v in enumerate(lp)), abs=1e-3)
    assert digit_score(rec, "scale_1_5", "expected") == pytest.approx(4.5)  # only 1..5 count: all equal there
    rec["lp"][5] = math.log(0.001)
    assert digit_score(rec, "scale_1_5", "argmax") == 9.0  # 5 is the top of the 1-5 scale
    assert math.isnan(digit_score(None))


# ---------------------------------------------------------------------------------------------------------------
# Likelihood self-evaluation
# ---------------------------------------------------------------------------------------------------------------
def _mean_logp(model, tok, context: str, target_ids: list[int], special: bool) -> float:
    """Slow, obvious version: one full forward, no cache, log-softmax, average over the target tokens."""
    ctx = tok(context, add_special_tokens=special)["input_ids"]
    ids = torch.tensor([ctx + target_ids])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    return float(np.mean([lp[len(ctx) + k - 1, t].item() for k, t in enumerate(target_ids)]))


@pytest.mark.parametrize("method", ["response_gain", "reference_gain"])
@pytest.mark.parametrize("policy_fixture", ["tiny_policy", "tiny_plain_policy"])
def test_likelihood_gain_matches_hand_computation(policy_fixture, method, request):
    model, tok = load_policy(request.getfixturevalue(policy_fixture))
    chat = P.has_chat_template(tok)
    ins, resp, refs = _rows()
    got = likelihood_gains(model, tok, ins, resp, refs, method=method, groups=GROUP, max_length=500)
    for i in range(len(resp)):
        cond_ctx, base_ctx, target = P.likelihood_views(tok, ins[i], resp[i], refs[i], method=method)
        tgt = tok(target, add_special_tokens=False)["input_ids"]
        cond = _mean_logp(model, tok, cond_ctx, tgt, not chat)
        base = _mean_logp(model, tok, base_ctx, tgt, not chat)
        assert got[i]["cond"] == pytest.approx(cond, abs=1e-4)
        assert got[i]["base"] == pytest.approx(base, abs=1e-4)
        assert got[i]["n_tokens"] == len(tgt)
    scores = likelihood_self_eval(model, tok, ins, resp, refs, method=method, max_length=500)
    assert all(math.isfinite(s) and 0.0 <= s <= 9.0 for s in scores)
    for s, g in zip(scores, got, strict=False):  # the documented mapping, monotone in the gain
        assert s == pytest.approx(9.0 / (1.0 + math.exp(-g["gain"] / LIKELIHOOD_SCALES[method])), abs=1e-6)
    order = np.argsort([g["gain"] for g in got])
    assert np.all(np.diff(np.array(scores)[order]) >= 0)  # monotone in the gain: ranks are the gain's


def test_likelihood_respects_max_length(tiny_policy):
    model, tok = load_policy(tiny_policy)
    long = " ".join(["the sea is blue and deep"] * 80)
    got = likelihood_gains(
        model, tok, ["hello world"], [long], [long], method="response_gain", max_length=120, max_target_tokens=40
    )
    assert got[0]["n_tokens"] == 40 and math.isfinite(got[0]["gain"])
    assert gain_to_score(0.0) == pytest.approx(4.5) and 0.0 <= gain_to_score(-50.0) < gain_to_score(50.0) <= 9.0


def test_labeling_likelihood_branch_calls_signal(tiny_policy, tmp_path):
    """``self_eval_method=likelihood`` in the labeler goes through likelihood_self_eval (0-9 labels)."""
    from selfj_trl.labeling import label_dataset
    from selfj_trl.testing import tiny_instruction_rows

    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tiny_instruction_rows(2)))
    config = LabelingConfig(
        dataset_name=str(path),
        output_dir=str(tmp_path / "out"),
        policy=tiny_policy,
        embedder=str(_embedder_dir(tmp_path)),
        num_samples=2,
        max_new_tokens=5,
        chunk_size=2,
        max_length=300,
        self_eval_method="likelihood",
    )
    table = label_dataset(config)
    assert len(table) > 0 and all(0.0 <= s <= 9.0 for s in table["self_eval_score"])
    # the labeler scores the reference's first `likelihood_target_tokens` tokens: its scores are those of the signal
    # called with that many
    from selfj_trl.models import load_policy as load

    model, tok = load(tiny_policy, dtype="float32")
    rows = list(table)
    ins, resp, refs = ([r[k] for r in rows] for k in ("instruction", "response", "reference"))
    for n in (3, 256):
        cut = dataclasses.replace(
            config, likelihood_target_tokens=n, output_dir=str(tmp_path / str(n)), dtype="float32"
        )
        again = label_dataset(cut)
        assert again["response"] == resp  # the same samples (same seed), scored with n target tokens
        got = again["self_eval_score"]
        want = likelihood_self_eval(model, tok, ins, resp, refs, max_length=300, max_target_tokens=n)
        assert got == pytest.approx(want, abs=1e-4)
    assert got != pytest.approx(likelihood_self_eval(model, tok, ins, resp, refs, max_length=300, max_target_tokens=3))


# ---------------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------------
def test_correlation_summary_and_cluster_bootstrap():
    rng = np.random.default_rng(0)
    quality = rng.random(60)
    clusters = [i // 6 for i in range(60)]
    s = correlation_summary(
        list(quality + 0.1 * rng.random(60)), list(quality), clusters, n_bootstrap=200, honest=[True] * 60
    )
    assert s["spearman"] > 0.9 and s["spearman_ci"][0] <= s["spearman"] <= s["spearman_ci"][1]
    assert s["pearson_ci"][0] > 0.8 and s["within_instruction_spearman"] > 0.5 and s["n"] == 60
    noise = correlation_summary(list(rng.random(60)), list(quality), clusters, n_bootstrap=200)
    assert abs(noise["spearman"]) < 0.4 and noise["spearman_ci"][0] <= noise["spearman"] <= noise["spearman_ci"][1]
    assert noise["spearman_ci"][1] - noise["spearman_ci"][0] > s["spearman_ci"][1] - s["spearman_ci"][0]
    const = correlation_summary([1.0] * 60, list(quality), clusters, n_bootstrap=50)
    assert math.isnan(const["spearman"])
    # a score that moves in one instruction only: most resamples are constant, the interval uses the rest
    rare = [1.0 if i == 3 else 0.0 for i in range(60)]
    r = correlation_summary(rare, list(quality), clusters, n_bootstrap=200)
    assert r["bootstrap_undefined"] > 0 and all(math.isfinite(v) for v in r["spearman_ci"])


def test_fitted_combination_is_cross_fitted():
    from selfj_trl.labels import combine_labels, fit_combination

    rng = np.random.default_rng(1)
    n = 40
    s, c, q = list(9 * rng.random(n)), list(rng.random(n)), list(rng.random(n))
    folds = [i % 2 for i in range(n)]
    labels, weights = combined_labels(s, c, q, folds, cosine_weights=[0.0, 0.5], n_folds=2)
    assert set(labels) == {
        "weighted_mean/w=0",
        "weighted_mean/w=0.5",
        "rank_mean/w=0",
        "rank_mean/w=0.5",
        "fitted/cross-fitted",
    }
    other = [i for i in range(n) if folds[i] == 1]
    w1 = fit_combination([s[i] for i in other], [c[i] for i in other], [q[i] for i in other])
    fold0 = [i for i in range(n) if folds[i] == 0]
    expect = combine_labels([s[i] for i in fold0], [c[i] for i in fold0], combination="fitted", weights=w1)
    assert [labels["fitted/cross-fitted"][i] for i in fold0] == pytest.approx(expect)
    assert weights == pytest.approx(fit_combination(s, c, q))
    # weights fitted on the masked rows only (the report leaves out the models built to game GPT-4)
    mask = [i % 4 != 0 for i in range(n)]
    labels_m, weights_m = combined_labels(s, c, q, folds, cosine_weights=[0.5], n_folds=2, fit_mask=mask)
    kept = [i for i in range(n) if mask[i]]
    assert weights_m == pytest.approx(
        fit_combination([s[i] for i in kept], [c[i] for i in kept], [q[i] for i in kept])
    )
    assert all(math.isfinite(v) for v in labels_m["fitted/cross-fitted"])  # every row is still labeled


def test_bad_variant_is_a_clear_error():
    assert parse_digit_variant("few_shot:noref:512", 768).max_length == 512
    with pytest.raises(SelfJInputError, match="STYLE:ref"):
        parse_digit_variant("few_shot:maybe", 768)
    with pytest.raises(SelfJInputError, match="fit_folds"):
        LabelReportConfig(fit_folds=1)


# ---------------------------------------------------------------------------------------------------------------
# The report, end to end, on train rows only
# ---------------------------------------------------------------------------------------------------------------
def _fake_alpaca(root: Path) -> Path:
    """A small AlpacaEval-shaped folder whose TEST rows would poison any report that read them."""
    folder = root / "alpaca"
    folder.mkdir()
    instructions, responses = [], []
    for k, (ins, ref) in enumerate(
        zip(INS + ["hello world", "one two three"], REF + ["good hello world", "four"], strict=False)
    ):
        instructions.append(
            {"id": f"train{k}", "instruction": ins, "reference": ref, "split": "train", "subset": "oasst"}
        )
    instructions.append(
        {"id": "test0", "instruction": "TEST INSTRUCTION", "reference": "TEST", "split": "test", "subset": "koala"}
    )
    for ex in instructions:
        for m, resp in enumerate([ex["reference"], "bad bad", "the sea"]):
            responses.append(
                {"id": ex["id"], "model": f"model{m}", "response": resp, "gpt4_win_prob": [0.9, 0.1, 0.4][m]}
            )
    (folder / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in instructions))
    (folder / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in responses))
    return folder


def test_report_end_to_end_never_uses_test_rows(tiny_policy, tmp_path, monkeypatch):
    data = _fake_alpaca(tmp_path)
    rows = load_train_rows(data, n_instructions=100)
    assert {r["split"] for r in rows} == {"train"} and not any(r["id"].startswith("test") for r in rows)
    kwargs = {
        "policy": tiny_policy,
        "embedder": str(_embedder_dir(tmp_path)),
        "n_instructions": 2,
        "seed": 3,
        "output_dir": str(tmp_path / "out"),
        "data_dir": str(data),
        "max_length": 700,
        "n_bootstrap": 30,
        "digit_variants": ["few_shot:noref"],
        "likelihood_methods": ["response_gain"],
    }
    report = label_report(**kwargs)
    out = tmp_path / "out"
    assert (out / "signal_report.json").exists() and (out / "signal_report.md").exists()
    assert report["data"]["n_rows"] == 6 and report["data"]["splits_used"] == ["train"]
    assert all(i.startswith("train") for i in report["data"]["instruction_ids"])
    for name in [
        "digits/few_shot/noref/L700/expected",
        "digits/few_shot/noref/L700/argmax",
        "cosine",
        "length_words",
        "likelihood/response_gain/L700/score",
        "likelihood/response_loglik",
    ]:
        assert report["components"][name]["n"] == 6, name
    assert any(k.endswith("| weighted_mean/w=0.5") for k in report["combined"])  # likelihood + cosine
    assert "| component |" in (out / "signal_report.md").read_text()
    saved = json.loads((out / "signal_report.json").read_text())
    assert saved["components"].keys() == report["components"].keys()

    # a rerun is served from the cache: the policy is never loaded again, and the numbers are identical
    from selfj_trl import models

    monkeypatch.setattr(models, "load_policy", lambda *a, **k: pytest.fail("policy reloaded despite the cache"))
    again = label_report(**kwargs)
    assert again["components"]["digits/few_shot/noref/L700/expected"]["spearman"] == pytest.approx(
        report["components"]["digits/few_shot/noref/L700/expected"]["spearman"], nan_ok=True
    )


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(SelfJInputError, match="no AlpacaEval data"):
        load_train_rows(tmp_path / "nowhere", 4)


def _real_data() -> Path | None:
    from selfj_trl.label_report import alpaca_eval_dir

    return alpaca_eval_dir()


@pytest.mark.skipif(_real_data() is None, reason="../shared/data/alpaca_eval_gpt4 is not available on this machine")
def test_report_on_real_train_slice(tiny_policy, tmp_path):
    data = _real_data()
    train_ids = {
        json.loads(line)["id"]
        for line in (data / "instructions.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "train"
    }
    models = ["alpaca-7b", "claude-2", "NullModel"]
    report = label_report(
        policy=tiny_policy,
        embedder=str(_embedder_dir(tmp_path)),
        n_instructions=2,
        models=models,
        output_dir=str(tmp_path / "out"),
        max_length=480,
        max_target_tokens=48,
        n_bootstrap=20,
        digit_variants=["zero_shot_lead:ref"],
        likelihood_methods=["reference_gain"],
    )
    assert set(report["data"]["instruction_ids"]) <= train_ids
    assert report["data"]["n_rows"] == 6 and set(report["data"]["models"]) == set(models)
    assert (tmp_path / "out" / "signal_report.md").exists()
    rows = load_train_rows(data, 2, models=models)
    assert {r["split"] for r in rows} == {"train"} and {r["id"] for r in rows} <= train_ids


def test_recommended_settings_pick_the_best_fixed_weight_label_on_honest_and_within():
    from selfj_trl.label_report import recommended_settings

    def entry(se, label, honest, within, all_rows=0.0):
        return {
            "self_eval": se,
            "label": label,
            "spearman_honest": honest,
            "within_instruction_spearman": within,
            "spearman": all_rows,
            "spearman_ci": [all_rows - 0.1, all_rows + 0.1],
        }

    lik, dig = "likelihood/reference_gain/L768/score", "digits/few_shot/ref/L768/expected"
    report = {
        "components": {
            lik: {"kind": "likelihood", "method": "reference_gain", "max_target_tokens": 128},
            dig: {"kind": "digits", "style": "few_shot"},
        },
        "combined": {
            "a": entry(dig, "weighted_mean/w=0.5", 0.20, 0.10, all_rows=0.9),  # all rows do not count
            "b": entry(lik, "rank_mean/w=0.25", 0.31, 0.25),  # mean 0.28: the best
            "c": entry(lik, "weighted_mean/w=0", 0.40, 0.05),  # best honest, poor within: 0.225
            "d": entry(lik, "fitted/cross-fitted", 0.50, 0.50),  # needs dev data: skipped
            "e": entry(dig, "weighted_mean/w=0", float("nan"), 0.9),
        },
    }
    rec = recommended_settings(report)
    assert rec["label"] == "b" and rec["criterion"] == pytest.approx(0.28)
    assert rec["settings"] == {
        "self_eval_method": "likelihood",
        "likelihood_method": "reference_gain",
        "likelihood_target_tokens": 128,
        "cosine_weight": 0.25,
        "combination": "rank_mean",
    }
    config = LabelingConfig(policy="x", **rec["settings"])  # the settings are valid labeling flags
    assert all(getattr(config, k) == v for k, v in rec["settings"].items())
    report["combined"] = {"e": report["combined"]["e"]}
    assert recommended_settings(report) is None
