"""The padding held-out set: AlpacaEval test answers against their repeated, padded and cut versions, built from
honest models' answers to test instructions only, with the answer as written on the preferred side."""

from __future__ import annotations

import json

import numpy as np

from selfj_trl.eval_sets import load_eval_set, registered_sets
from selfj_trl.evaluation import evaluate_pairwise


def _alpaca_folder(tmp_path):
    root = tmp_path / "data"
    folder = root / "alpaca_eval_gpt4"
    folder.mkdir(parents=True)
    instructions = [
        {
            "id": f"t{i}",
            "instruction": f"test question {i}",
            "reference": f"reference {i}",
            "split": "test",
            "subset": "koala",
        }
        for i in range(4)
    ] + [{"id": "r0", "instruction": "train question", "reference": "train ref", "split": "train", "subset": "oasst"}]
    responses = [
        {
            "id": ins["id"],
            "model": model,
            "response": f"{model} answers {ins['id']} in a few words",
            "gpt4_win_prob": 0.5,
        }
        for ins in instructions
        for model in ("m1", "m2", "NullModel", "gpt4_gamed")
    ]
    (folder / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in instructions))
    (folder / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in responses))
    (folder / "leaderboard.csv").write_text(
        "model,win_rate,length_controlled_win_rate\n"
        + "".join(f"{m},50,50\n" for m in ("m1", "m2", "NullModel", "gpt4_gamed"))
    )
    return root, responses


def test_pairs_are_honest_test_answers_against_their_own_contrasts(tmp_path):
    assert "padding" in registered_sets()
    root, responses = _alpaca_folder(tmp_path)
    ds = load_eval_set("padding", data_dir=root)
    honest = {r["response"] for r in responses if r["model"] in ("m1", "m2") and r["id"].startswith("t")}
    assert len(ds) == 3 * 4 and sorted(set(ds.subsets)) == ["cut", "padded", "repeated"]
    assert "train question" not in ds.instructions
    for a, b, label, kind, ins in zip(
        ds.responses_a, ds.responses_b, ds.labels, ds.subsets, ds.instructions, strict=True
    ):
        kept, other = (a, b) if label == "A" else (b, a)
        assert kept in honest and f"t{ins.split()[-1]}" in kept  # an honest answer to this very instruction
        if kind == "repeated":
            assert other == f"{kept}\n\n{kept}"
        elif kind == "padded":
            rest = other[len(kept) + 2 :]
            assert other.startswith(kept + "\n\n") and rest in honest and rest != kept
        else:
            assert kept.startswith(other) and len(other) < len(kept)
    assert {"A", "B"} == set(ds.labels)  # the answer as written is not always on one side
    # response length: never right on the repeated and padded pairs, always on the cut ones
    words_a = np.array([len(t.split()) for t in ds.responses_a], dtype=float)
    words_b = np.array([len(t.split()) for t in ds.responses_b], dtype=float)
    acc = {k: v["accuracy"] for k, v in evaluate_pairwise(ds, words_a, words_b, n_resamples=0)["accuracy"].items()}
    assert acc["repeated"] == acc["padded"] == acc["repeated + padded"] == 0.0 and acc["cut"] == 1.0
    assert load_eval_set("padding", data_dir=root).responses_b == ds.responses_b  # seeded: the same pairs again


def test_the_report_of_a_pair_set_without_llmbar_says_nothing_of_humans_or_llmbar():
    from selfj_trl.evaluation.report import render_report

    def pair_set(subsets):
        return {
            "title": "pairs",
            "n": 2,
            "notes": [],
            "kind": "pairwise",
            "longer_answer_wins": {s: {"accuracy": 0.5, "n": 2} for s in subsets},
            "scorers": {"j": {"accuracy": {s: {"accuracy": 0.5} for s in subsets}}},
        }

    config = {"confidence_level": 0.95, "bootstrap_resamples": 10, "seed": 0}
    padding = render_report({"config": config, "scorers": {}, "eval_sets": {"padding": pair_set(["cut", "all"])}})
    assert "against the set's preferred answer" in padding
    assert "human" not in padding and "LLMBar" not in padding
    human = render_report(
        {"config": config, "scorers": {}, "eval_sets": {"h": pair_set(["llmbar_adv_manual", "all"])}}
    )
    assert "LLMBar Adversarial is built so that" in human
