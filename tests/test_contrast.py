"""Contrast answers (``--contrast_answers``): answers of known construction beside an instruction's own, built
deterministically from its answers and labeled by the same Self-J label as every row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfj_trl.errors import SelfJInputError
from selfj_trl.labeling import LabelingConfig, label_dataset, prepare_rows, score_signals
from selfj_trl.labeling.contrast import add_contrast_answers, first_third
from selfj_trl.signals import ModelSet
from selfj_trl.tables import load_table
from selfj_trl.testing import make_tiny_embedder


INSTRUCTIONS = [  # instruction, reference, given answers
    ("name a colour", "red is a colour", ["blue", "green is a colour of leaves"]),
    ("add two and two", "two and two make four", ["four", "it is four because two plus two is four"]),
    ("say hello", "hello there friend", ["hi"]),
]


def _rows(given: bool = True) -> list[dict]:
    return [
        {"instruction_id": i, "instruction": ins, "reference": ref}
        | ({"given": [{"response": a, "model": f"m{k}", "source_row": i} for k, a in enumerate(ans)]} if given else {})
        for i, (ins, ref, ans) in enumerate(INSTRUCTIONS)
    ]


def test_first_third_cuts_at_a_word_end():
    assert first_third("one two three four five six") == "one two"
    assert first_third("one two") == "one"
    assert first_third("  lone ") is None


def test_each_kind_is_built_from_the_instructions_own_answer():
    kinds = ["reference", "other_instruction", "cut", "repeated", "padded"]
    rows = add_contrast_answers(_rows(), kinds, seed=3)
    sources = []
    for row, (_, ref, answers) in zip(rows, INSTRUCTIONS, strict=True):
        built = {c["model"]: c["response"] for c in row["contrast"]}
        # the source answer is one of the row's own given answers, said twice in "repeated"
        source = built["repeated"].split("\n\n")[0]
        assert source in answers and built["repeated"] == f"{source}\n\n{source}"
        sources.append(source)
        assert all(c["built_from"] == source for c in row["contrast"])  # each names the answer it was built from
        assert built["reference"] == ref
        assert built["padded"] == f"{source}\n\n{built['other_instruction']}"
        if len(source.split()) >= 2:
            assert source.startswith(built["cut"]) and len(built["cut"]) < len(source)
        else:
            assert "cut" not in built  # a one-word answer has no shorter cut
        assert [c["model"] for c in row["contrast"]] == [k for k in kinds if k in built]
        assert row["given"] == next(r for r in _rows() if r["instruction"] == row["instruction"])["given"]
    for i, row in enumerate(rows):  # another instruction's source answer, never this one's
        other = next(c["response"] for c in row["contrast"] if c["model"] == "other_instruction")
        assert other in sources[:i] + sources[i + 1 :] and other != sources[i]
    # deterministic in the seed and the rows (a resumed or multi-process run builds the same answers)
    assert add_contrast_answers(_rows(), kinds, seed=3) == rows
    assert any(add_contrast_answers(_rows(), kinds, seed=s) != rows for s in range(4, 12))


def test_without_given_answers_the_reference_is_the_source():
    rows = add_contrast_answers(_rows(given=False), ["repeated", "cut"], seed=0)
    for row in rows:
        built = {c["model"]: c["response"] for c in row["contrast"]}
        assert built["repeated"] == f"{row['reference']}\n\n{row['reference']}"
        assert built["cut"] == first_third(row["reference"])


def test_contrast_answers_are_labeled_like_every_row(tmp_path, tiny_policy):
    path = tmp_path / "given.jsonl"
    path.write_text(
        "".join(
            json.dumps({"instruction": ins, "reference": ref, "response": a, "model": f"m{k}"}) + "\n"
            for ins, ref, answers in INSTRUCTIONS
            for k, a in enumerate(answers)
        )
    )
    cfg = LabelingConfig(
        dataset_name=str(path),
        output_dir=str(tmp_path / "out"),
        policy=tiny_policy,
        embedder=str(make_tiny_embedder(tmp_path / "tiny_embedder")),
        chunk_size=2,
        max_length=400,
        response_column="response",
        response_model_column="model",
        contrast_answers=["repeated", "padded"],
        dtype="float32",
    )
    table = label_dataset(cfg)
    contrast = [r for r in table.to_list() if r["source"] == "contrast"]
    assert len(contrast) == 2 * len(INSTRUCTIONS) and {r["model"] for r in contrast} == {"repeated", "padded"}
    # the answers the labeler built are the ones add_contrast_answers builds from the same rows and seed
    rows, _ = prepare_rows(load_table(str(path), "train"), cfg)
    expected = [
        (r["instruction"], c["model"], c["response"])
        for r in add_contrast_answers(rows, cfg.contrast_answers, cfg.seed)
        for c in r["contrast"]
    ]
    assert [(r["instruction"], r["model"], r["response"]) for r in contrast] == expected
    # the same signals as a direct scoring of those texts: nothing about them was assigned by hand
    s, _, c = score_signals(
        cfg,
        ModelSet(cfg.policy, cfg.embedder, dtype="float32"),
        [r["instruction"] for r in contrast],
        [r["response"] for r in contrast],
        [r["reference"] for r in contrast],
        with_noref=False,
    )
    assert [r["self_eval_score"] for r in contrast] == pytest.approx(s, abs=1e-5)
    assert [r["cosine_similarity"] for r in contrast] == pytest.approx(c, abs=1e-5)
    card = (Path(cfg.output_dir) / "README.md").read_text()
    assert "5 given responses, 0 policy samples, 6 contrast answers" in card
    assert "| contrast answers (built per instruction" in card and "repeated, padded" in card
    # other contrast kinds make other rows: a resumed run with them is refused, not mixed
    cfg.contrast_answers = ["repeated"]
    with pytest.raises(SelfJInputError, match="different settings"):
        label_dataset(cfg)
