"""Best-of-n: samples n answers, keeps the judge's argmax, and DPO pairs respect the score gap."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, load_from_disk

from selfj_trl.best_of_n import best_of_n, build_dpo_pairs, main, summarize
from selfj_trl.errors import SelfJInputError
from selfj_trl.io import check_complete
from selfj_trl.judge import SelfJudge
from selfj_trl.models import load_policy
from selfj_trl.prompts import PLAIN_PROMPT_TEMPLATE


PROMPTS = ["write a short poem about the sea", "what is two plus two ?", "hello world"]
GEN = {"max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0}


@pytest.fixture(scope="module")
def judge(tiny_judge):
    return SelfJudge.from_pretrained(tiny_judge, device="cpu")


@pytest.fixture(scope="module")
def policy(tiny_policy):
    return load_policy(tiny_policy, device="cpu")


class FixedJudge:
    """Scores from a table, so which answer is best is known in advance."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = []

    def score(self, instructions, responses, **kwargs):
        self.calls.append((list(instructions), list(responses)))
        return self.values[: len(responses)]


def test_best_is_the_judges_argmax(policy, judge):
    model, tokenizer = policy
    table = best_of_n(model, tokenizer, judge, PROMPTS, 4, GEN, batch_size=2, seed=0)
    assert len(table) == len(PROMPTS)
    assert table["prompt"] == PROMPTS
    for row in table:
        assert len(row["responses"]) == len(row["scores"]) == 4
        rescored = judge.score([row["prompt"]] * 4, row["responses"])
        assert row["scores"] == pytest.approx(rescored, abs=1e-5)
        best = max(range(4), key=lambda k: row["scores"][k])
        worst = min(range(4), key=lambda k: row["scores"][k])
        assert (row["best_response"], row["best_score"]) == (row["responses"][best], row["scores"][best])
        assert (row["worst_response"], row["worst_score"]) == (row["responses"][worst], row["scores"][worst])
        assert (row["first_response"], row["first_score"]) == (row["responses"][0], row["scores"][0])
        assert row["prompt_text"] == tokenizer.apply_chat_template(
            [{"role": "user", "content": row["prompt"]}], tokenize=False, add_generation_prompt=True
        )
    summary = summarize(table)
    assert summary["mean_best_score"] >= summary["mean_first_score"] >= summary["mean_worst_score"]
    assert summary["best_of_n_gain"] == pytest.approx(summary["mean_best_score"] - summary["mean_first_score"])
    assert summary["note"].startswith("judge scores, not quality")  # never read as a self-graded quality gain


def test_sampling_is_seedable(policy, judge):
    model, tokenizer = policy
    first = best_of_n(model, tokenizer, judge, PROMPTS, 3, GEN, batch_size=3, seed=7)
    again = best_of_n(model, tokenizer, judge, PROMPTS, 3, GEN, batch_size=3, seed=7)
    assert first["responses"] == again["responses"]
    for a, b in zip(first["scores"], again["scores"], strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    other = best_of_n(model, tokenizer, judge, PROMPTS, 3, GEN, batch_size=3, seed=8)
    assert other["responses"] != first["responses"]


def test_ties_pick_the_first_answer_and_scores_follow_responses(policy):
    model, tokenizer = policy
    stub = FixedJudge([0.5, 2.0, 2.0, -1.0])
    table = best_of_n(model, tokenizer, stub, PROMPTS[:1], 4, GEN, seed=0)
    row = table[0]
    assert row["scores"] == [0.5, 2.0, 2.0, -1.0]
    assert row["best_response"] == row["responses"][1] and row["best_score"] == 2.0
    assert row["worst_response"] == row["responses"][3] and row["worst_score"] == -1.0
    assert stub.calls[0][0] == [PROMPTS[0]] * 4  # the judge sees the instruction, not the policy's chat text


def test_plain_policy_uses_the_plain_prompt(tiny_plain_policy, judge):
    model, tokenizer = load_policy(tiny_plain_policy, device="cpu")
    table = best_of_n(model, tokenizer, judge, PROMPTS[:2], 2, GEN, seed=0)
    assert table["prompt_text"] == [PLAIN_PROMPT_TEMPLATE.format(instruction=p) for p in PROMPTS[:2]]


def test_best_of_n_rejects_bad_arguments(policy, judge):
    model, tokenizer = policy
    with pytest.raises(SelfJInputError, match="`n`"):
        best_of_n(model, tokenizer, judge, PROMPTS, 0, GEN)
    with pytest.raises(SelfJInputError, match="sampling"):
        best_of_n(model, tokenizer, judge, PROMPTS, 2, {"do_sample": False, "max_new_tokens": 2})
    with pytest.raises(SelfJInputError, match=r"prompts\[1\]"):
        best_of_n(model, tokenizer, judge, ["hello world", None], 2, GEN)
    with pytest.raises(SelfJInputError, match="empty"):
        best_of_n(model, tokenizer, judge, [], 2, GEN)


def _table(gaps, same=()):
    rows = []
    for i, gap in enumerate(gaps):
        best, worst = f"best {i}", (f"best {i}" if i in same else f"worst {i}")
        rows.append(
            {
                "prompt": f"q{i}",
                "prompt_text": PLAIN_PROMPT_TEMPLATE.format(instruction=f"q{i}"),
                "best_response": best,
                "best_score": 1.0 + gap,
                "worst_response": worst,
                "worst_score": 1.0,
            }
        )
    return Dataset.from_list(rows)


def test_dpo_pairs_respect_the_gap():
    gaps = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0]
    table = _table(gaps, same={5})
    pairs = build_dpo_pairs(table, min_gap=0.25)
    kept = [g for i, g in enumerate(gaps) if g >= 0.25 and i != 5]
    assert len(pairs) == len(kept)
    assert all(c - r >= 0.25 - 1e-9 for c, r in zip(pairs["score_chosen"], pairs["score_rejected"], strict=True))
    assert pairs["chosen"] == ["best 2", "best 3", "best 4"]
    assert pairs["rejected"] == ["worst 2", "worst 3", "worst 4"]
    assert pairs["prompt"][0] == PLAIN_PROMPT_TEMPLATE.format(instruction="q2")  # plain policy: its exact prompt
    # min_gap=0 still drops pairs with nothing to learn (equal scores or identical answers)
    assert len(build_dpo_pairs(table)) == len(gaps) - 2


def test_dpo_pairs_conversational_for_chat_policies(policy, judge):
    model, tokenizer = policy
    table = best_of_n(model, tokenizer, judge, PROMPTS, 3, GEN, seed=0)
    pairs = build_dpo_pairs(table)
    assert pairs[0]["prompt"][0]["role"] == "user"
    assert pairs[0]["chosen"][0]["role"] == "assistant"
    assert set(pairs.column_names) == {"prompt", "chosen", "rejected", "score_chosen", "score_rejected"}
    assert all(c >= r for c, r in zip(pairs["score_chosen"], pairs["score_rejected"], strict=True))


@pytest.mark.parametrize(
    ("table", "min_gap", "match"),
    [
        (_table([0.1]), -1.0, "min_gap"),
        (_table([0.1]), 0.5, "no row"),
        (Dataset.from_list([{"prompt": "q", "chosen": "a"}]), 0.0, "best_response"),
    ],
)
def test_dpo_pairs_errors(table, min_gap, match):
    with pytest.raises(SelfJInputError, match=match):
        build_dpo_pairs(table, min_gap)


def test_cli_writes_table_jsonl_summary_and_pairs(tiny_policy, tiny_judge, tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"question": p}) + "\n" for p in PROMPTS))
    out, pairs_dir = tmp_path / "bon", tmp_path / "pairs"
    argv = [
        "--policy",
        tiny_policy,
        "--judge",
        tiny_judge,
        "--dataset",
        str(data),
        "--prompt_column",
        "question",
        "--output_dir",
        str(out),
        "--n",
        "3",
        "--max_new_tokens",
        "4",
        "--device",
        "cpu",
        "--dpo_pairs_dir",
        str(pairs_dir),
        "--max_prompts",
        "2",
    ]
    assert main(argv) == 0
    table = load_from_disk(str(out))
    assert table["prompt"] == PROMPTS[:2]
    lines = (out / "best_of_n.jsonl").read_text().splitlines()
    assert [json.loads(line)["best_score"] for line in lines] == pytest.approx(list(table["best_score"]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompts"] == 2 and summary["n"] == 3
    assert summary["mean_best_score"] == pytest.approx(sum(table["best_score"]) / 2)
    assert set(load_from_disk(str(pairs_dir)).column_names) >= {"prompt", "chosen", "rejected"}
    assert check_complete(out) == [] and check_complete(pairs_dir) == []  # both published with their marker last
    assert not list(tmp_path.glob(".bon.tmp*")) and not list(tmp_path.glob(".pairs.tmp*"))  # no staging left
