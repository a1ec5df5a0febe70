"""SelfJRewardTrainer: the loss as written, distillation, pairwise mode, LoRA, the saved judge, input checks and a
two-process ``accelerate launch`` run, all on tiny models built in seconds."""

from __future__ import annotations

import ast
import json
import math
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from selfj_trl.errors import SelfJInputError, TrainingDivergedError
from selfj_trl.judge_views import TEACHER_PREAMBLE, format_teacher_view
from selfj_trl.models import native_bf16
from selfj_trl.prompts import PLAIN_PROMPT_TEMPLATE
from selfj_trl.testing import make_tiny_llama
from selfj_trl.testing import tiny_labeled_rows as labeled_rows
from selfj_trl.trainer import (
    SelfJConfig,
    SelfJRewardConfig,
    SelfJRewardTrainer,
    SelfJScriptArguments,
    build_pairs,
    main,
)


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    """A fresh one-label tiny Llama with a chat template (the judge's base model)."""
    return str(make_tiny_llama(tmp_path_factory.mktemp("judge_base"), kind="seqcls", chat=True, seed=1))


@pytest.fixture(scope="module")
def plain_base(tmp_path_factory) -> str:
    return str(make_tiny_llama(tmp_path_factory.mktemp("judge_base_plain"), kind="seqcls", chat=False, seed=2))


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return Dataset.from_list(labeled_rows())


def make_args(tmp_path, **kw) -> SelfJRewardConfig:
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        max_steps=6,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        disable_tqdm=True,
    )
    return SelfJRewardConfig(**{**defaults, **kw})


def scores_of(model, tokenizer, texts: list[str], bf16: bool = False) -> torch.Tensor:
    """Score texts the way TRL's GRPO does: add_special_tokens=False, right padding, logits[:, 0].

    ``bf16``: under the bf16 autocast that accelerate wraps a trained model's forward in when ``--bf16`` is on."""
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(**enc).logits[:, 0].float()


def student_text(tokenizer, row, chat=True) -> str:
    """The student view written out independently of selfj_trl.prompts: what GRPO builds for this pair."""
    if chat:
        messages = [{"role": "user", "content": row["instruction"]}, {"role": "assistant", "content": row["response"]}]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return PLAIN_PROMPT_TEMPLATE.format(instruction=row["instruction"]) + row["response"]


def teacher_text(tokenizer, row) -> str:
    messages = [
        {"role": "system", "content": TEACHER_PREAMBLE.format(reference=row["reference"])},
        {"role": "user", "content": row["instruction"]},
        {"role": "assistant", "content": row["response"]},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False)


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------
def test_cpu_defaults_and_no_deprecation_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        args = SelfJRewardConfig(output_dir=str(tmp_path))
    if not torch.cuda.is_available():
        # bf16 autocast where the CPU multiplies bf16 in hardware (AMX / AVX512-BF16), fp32 where it would emulate it
        assert args.bf16 is native_bf16("cpu") and args.gradient_checkpointing is False
    explicit = SelfJRewardConfig(output_dir=str(tmp_path), gradient_checkpointing=True, bf16=False)
    assert explicit.gradient_checkpointing is True
    assert (args.teacher_weight, args.student_weight, args.distill_weight) == (1.0, 0.3, 2.0)


def test_old_config_name_is_an_alias_and_script_fields_moved(tmp_path):
    assert SelfJConfig is SelfJRewardConfig
    with pytest.raises(
        SelfJInputError, match="dataset_name, hub_dataset_id moved from SelfJConfig to SelfJScriptArguments"
    ):
        SelfJConfig(output_dir=str(tmp_path), dataset_name="labeled", hub_dataset_id="someone/labels")


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"loss_type": "listwise"}, "loss_type"),
        ({"distill_weight": -1.0}, "distill_weight"),
        ({"label_max": 0.0}, "label_max"),
        ({"use_margin": True}, "use_margin"),
    ],
)
def test_config_rejects_bad_values(tmp_path, kw, field):
    with pytest.raises(SelfJInputError, match=field):
        SelfJRewardConfig(output_dir=str(tmp_path), **kw)


@pytest.mark.parametrize(
    "kw, flag",
    [
        ({"num_train_epochs": -1}, "num_train_epochs"),
        ({"num_train_epochs": 0}, "num_train_epochs"),
        ({"num_train_epochs": math.nan}, "num_train_epochs"),
        ({"num_train_epochs": math.inf}, "num_train_epochs"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 2.5}, "max_steps"),
    ],
)
def test_flags_that_mean_no_training_are_refused_at_parse_time(tmp_path, kw, flag):
    with pytest.raises(SelfJInputError, match=f"--{flag}") as err:
        SelfJRewardConfig(output_dir=str(tmp_path), report_to="none", **kw)
    assert "\n" not in str(err.value)


def test_pickled_config_never_holds_the_hub_token_but_copies_keep_it(tmp_path):
    """Trainer persists its args by pickling them (training_args.bin); a copy in memory must still push."""
    import copy
    import io

    args = SelfJRewardConfig(output_dir=str(tmp_path), report_to="none", hub_token="hf_secret_TEST123")
    buffer = io.BytesIO()
    torch.save(args, buffer)
    assert b"hf_secret_TEST123" not in buffer.getvalue()
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is SelfJRewardConfig and loaded.hub_token is None and loaded.output_dir == args.output_dir
    assert copy.copy(args).hub_token == copy.deepcopy(args).hub_token == "hf_secret_TEST123"
    assert args.hub_token == "hf_secret_TEST123"


def _numeric_cases():
    """Bad values for every flag of the one table of numeric flags (a new flag there is covered here too)."""
    from selfj_trl.trainer.config import NUMERIC_FLAGS

    for name, (kind, low, low_ok, *_) in NUMERIC_FLAGS.items():
        below = low - 1 if low_ok else low
        bad = [below, math.nan, math.inf, -math.inf, "1", True] + ([2.5] if kind is int else [])
        for value in bad:
            yield pytest.param(name, value, id=f"{name}={value!r}")


@pytest.mark.parametrize("name, value", list(_numeric_cases()))
def test_every_numeric_flag_is_checked_at_parse_time(tmp_path, name, value):
    with pytest.raises(SelfJInputError, match=f"`--{name}` must be") as err:
        SelfJRewardConfig(output_dir=str(tmp_path), report_to="none", **{name: value})
    assert "\n" not in str(err.value)


def test_numeric_flags_accept_their_boundaries(tmp_path):
    args = SelfJRewardConfig(
        output_dir=str(tmp_path),
        report_to="none",
        max_length=None,
        max_steps=-1,
        num_train_epochs=0.5,
        weight_decay=0,
        max_grad_norm=0,
        student_weight=0,
        min_label_gap=0,
    )
    assert args.max_length is None and args.max_steps == -1
    assert SelfJRewardConfig(output_dir=str(tmp_path), report_to="none", max_steps=3).max_steps == 3


def test_cli_refuses_negative_epochs_before_training(tmp_path, base, dataset, capsys):
    from selfj_trl.cli import main as cli

    data = tmp_path / "labeled"
    dataset.save_to_disk(str(data))
    out = tmp_path / "judge"
    capsys.readouterr()
    code = cli(
        [
            "train",
            "--model_name_or_path",
            base,
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "-1",
            "--report_to",
            "none",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert err.strip().startswith("selfj-trl train: error: `--num_train_epochs` must be") and "\n" not in err.strip()
    assert not (out / "model.safetensors").exists()


def test_a_run_without_an_optimizer_step_saves_no_judge(tmp_path, base, dataset):
    """A config changed after its parse-time checks (max_steps 0, negative epochs): the run takes no step, so
    train_judge raises a runtime error and publishes nothing, instead of saving the untrained base as a judge."""
    from trl import ModelConfig

    from selfj_trl.errors import SelfJRuntimeError
    from selfj_trl.trainer import train_judge

    data = tmp_path / "labeled"
    dataset.save_to_disk(str(data))
    for name, value in [("max_steps", 0), ("num_train_epochs", -1)]:
        out = tmp_path / f"judge_{name}"
        args = make_args(tmp_path, output_dir=str(out), max_steps=-1, num_train_epochs=1)
        setattr(args, name, value)
        with pytest.raises(SelfJRuntimeError, match="no optimizer step trained the judge") as err:
            train_judge(SelfJScriptArguments(dataset_name=str(data)), args, ModelConfig(model_name_or_path=base))
        assert "\n" not in str(err.value)
        assert not (out / "model.safetensors").exists() and not (out / "README.md").exists(), name


def test_drop_last_with_fewer_rows_than_a_batch_is_an_input_error(tmp_path, base, dataset, capsys):
    """It used to end in a ValueError traceback (epochs) or loop forever on empty epochs (max_steps)."""
    from selfj_trl.cli import main as cli

    data = tmp_path / "labeled"
    dataset.save_to_disk(str(data))
    out = tmp_path / "judge"
    capsys.readouterr()
    code = cli(
        [
            "train",
            "--model_name_or_path",
            base,
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--per_device_train_batch_size",
            str(len(dataset) + 1),
            "--dataloader_drop_last",
            "true",
            "--max_steps",
            "2",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert (
        err.strip().splitlines()[-1].startswith("selfj-trl train: error: `--dataloader_drop_last` drops every batch")
    )
    assert not (out / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "column, value, match",
    [
        ("response", None, "row 2: `response` is None"),
        ("instruction", "   ", "row 2: `instruction` is empty"),
        ("label", float("nan"), "row 2: `label`"),
        ("label", float("inf"), "row 2: `label`"),
        ("label", 9.5, r"row 2: `label`=9.5 is outside \[0, 9\]"),
        ("label", -1.0, "outside"),
    ],
)
def test_bad_rows_are_named(tmp_path, base, column, value, match):
    rows = labeled_rows()
    rows[2][column] = value
    with pytest.raises(SelfJInputError, match=match):
        SelfJRewardTrainer(base, args=make_args(tmp_path), train_dataset=Dataset.from_list(rows))


def test_non_string_text_is_named(tmp_path, base):
    rows = [{**r, "reference": 7} for r in labeled_rows()]  # a column of numbers where text is expected
    with pytest.raises(SelfJInputError, match="row 0: `reference` must be a string"):
        SelfJRewardTrainer(base, args=make_args(tmp_path), train_dataset=Dataset.from_list(rows))


def test_string_labels_are_named(tmp_path, base):
    rows = [{**r, "label": "good"} for r in labeled_rows()]
    with pytest.raises(SelfJInputError, match="row 0: `label` must be a number"):
        SelfJRewardTrainer(base, args=make_args(tmp_path), train_dataset=Dataset.from_list(rows))


def test_missing_column_is_named(tmp_path, base, dataset):
    with pytest.raises(SelfJInputError, match=r"missing column\(s\) \['reference'\].*--reference_column"):
        SelfJRewardTrainer(base, args=make_args(tmp_path), train_dataset=dataset.remove_columns("reference"))


def test_custom_column_names(tmp_path, base, dataset):
    renamed = dataset.rename_columns({"response": "answer", "label": "score"})
    args = make_args(tmp_path, response_column="answer", label_column="score")
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=renamed)
    assert len(trainer.train_dataset) == len(dataset)


# ---------------------------------------------------------------------------------------------------------------
# Pointwise loss
# ---------------------------------------------------------------------------------------------------------------
def test_views_are_what_grpo_feeds_the_reward_model(tmp_path, base, dataset):
    trainer = SelfJRewardTrainer(base, args=make_args(tmp_path), train_dataset=dataset)
    tok = AutoTokenizer.from_pretrained(base)
    for i in (0, 5):
        row, prepared = dataset[i], trainer.train_dataset[i]
        assert prepared["student_ids"] == tok(student_text(tok, row), add_special_tokens=False)["input_ids"]
        assert prepared["teacher_ids"] == tok(teacher_text(tok, row), add_special_tokens=False)["input_ids"]
        assert prepared["target"] == pytest.approx(row["label"] / 9.0)


def test_each_loss_term_recomputed_by_hand(tmp_path, base, dataset):
    trainer = SelfJRewardTrainer(base, args=make_args(tmp_path), train_dataset=dataset)
    idx = [0, 1, 4, 8]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in idx])
    # each view padded to its own longest row: the student tensor is narrower than the teacher's
    assert batch["input_ids"].shape[0] == batch["teacher_input_ids"].shape[0] == len(idx)
    students = [trainer.train_dataset[i]["student_ids"] for i in idx]
    teachers = [trainer.train_dataset[i]["teacher_ids"] for i in idx]
    assert batch["input_ids"].shape[1] == max(map(len, students)) < batch["teacher_input_ids"].shape[1]
    assert batch["teacher_input_ids"].shape[1] == max(map(len, teachers))
    assert trainer.train_dataset[idx[0]]["length"] == len(students[0]) + len(teachers[0])
    trainer.model.train()  # metrics go to the "train" bucket (dropout is disabled by RewardTrainer)
    loss = trainer.compute_loss(trainer.model, dict(batch))

    tok = AutoTokenizer.from_pretrained(base)
    rows = [dataset[i] for i in idx]
    s = scores_of(trainer.model, tok, [student_text(tok, r) for r in rows])
    t = scores_of(trainer.model, tok, [teacher_text(tok, r) for r in rows])
    y = torch.tensor([r["label"] / 9.0 for r in rows])
    by_hand = {
        "loss_teacher": ((t - y) ** 2).mean().item(),
        "loss_student": ((s - y) ** 2).mean().item(),
        "loss_distill": ((s - t) ** 2).mean().item(),
        "student_teacher_gap": (s - t).abs().mean().item(),
    }
    total = 1.0 * by_hand["loss_teacher"] + 0.3 * by_hand["loss_student"] + 2.0 * by_hand["loss_distill"]
    assert loss.item() == pytest.approx(total, rel=1e-4, abs=1e-7)
    for name, value in by_hand.items():
        assert trainer._metrics["train"][name][-1] == pytest.approx(value, rel=1e-4, abs=1e-7), name


def test_loss_goes_down(tmp_path, base, dataset):
    trainer = SelfJRewardTrainer(
        base, args=make_args(tmp_path, max_steps=6), train_dataset=dataset, eval_dataset=dataset
    )
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_loss"] < 0.7 * before
    logged = trainer.state.log_history[0]
    for key in ("loss_teacher", "loss_student", "loss_distill", "student_teacher_gap"):
        assert key in logged and math.isfinite(logged[key])
    assert "eval_student_teacher_gap" in after


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_distill_weight_zero_is_two_independent_views(tmp_path, base, dataset):
    tok = AutoTokenizer.from_pretrained(base)
    idx = [0, 3, 7, 11]
    rows = [dataset[i] for i in idx]
    y = torch.tensor([r["label"] / 9.0 for r in rows])
    results = {}
    for distill in (0.0, 2.0):
        trainer = SelfJRewardTrainer(base, args=make_args(tmp_path, distill_weight=distill), train_dataset=dataset)
        model = trainer.model
        batch = trainer.data_collator([trainer.train_dataset[i] for i in idx])
        model.zero_grad()
        trainer.compute_loss(model, dict(batch)).backward()
        combined = _grads(model)
        # The same model trained on each view on its own: two forwards, two label losses, no coupling.
        model.zero_grad()
        for texts, weight in (
            ([teacher_text(tok, r) for r in rows], 1.0),
            ([student_text(tok, r) for r in rows], 0.3),
        ):
            enc = tok(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
            (weight * F.mse_loss(model(**enc).logits[:, 0], y)).backward()
        separate = _grads(model)
        results[distill] = all(torch.allclose(combined[n], separate[n], rtol=1e-4, atol=1e-7) for n in separate)
        assert combined.keys() == separate.keys()
    assert results[0.0], "distill_weight=0 must give exactly the gradients of the two views trained independently"
    assert not results[2.0], "the distillation term must change the gradients"


def test_without_teacher_loss_or_distillation_the_teacher_is_not_run(tmp_path, base, dataset):
    """teacher_weight=0 and distill_weight=0 leave the teacher's forward without a gradient: it is skipped, and the
    step's gradients are those of the student's label loss alone."""
    trainer = SelfJRewardTrainer(
        base, args=make_args(tmp_path, teacher_weight=0.0, distill_weight=0.0), train_dataset=dataset
    )
    model, idx = trainer.model, [0, 3, 7, 11]
    batch = dict(trainer.data_collator([trainer.train_dataset[i] for i in idx]))
    widths = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: widths.append(kw["input_ids"].shape), with_kwargs=True)
    model.train()
    model.zero_grad()
    trainer.compute_loss(model, batch).backward()
    hook.remove()
    assert widths == [batch["input_ids"].shape]  # one forward, the student's
    combined = _grads(model)
    tok = AutoTokenizer.from_pretrained(base)
    rows = [dataset[i] for i in idx]
    y = torch.tensor([r["label"] / 9.0 for r in rows])
    model.zero_grad()
    enc = tok([student_text(tok, r) for r in rows], return_tensors="pt", padding=True, add_special_tokens=False)
    (0.3 * F.mse_loss(model(**enc).logits[:, 0], y)).backward()
    alone = _grads(model)
    assert all(torch.allclose(combined[n], alone[n], rtol=1e-4, atol=1e-7) for n in alone)
    assert trainer._metrics["train"]["loss_teacher"][-1] == 0.0
    assert "student_teacher_gap" not in trainer._metrics["train"]


def test_distillation_shrinks_student_teacher_gap(tmp_path, base, dataset):
    gaps = {}
    for distill in (0.0, 2.0):
        # Same start for both runs: a score head scaled up so that the two views start far apart.
        model = AutoModelForSequenceClassification.from_pretrained(base)
        with torch.no_grad():
            model.score.weight.mul_(20.0)
        args = make_args(tmp_path / str(distill), distill_weight=distill, max_steps=4)
        trainer = SelfJRewardTrainer(model, args=args, train_dataset=dataset, eval_dataset=dataset)
        trainer.train()
        gaps[distill] = trainer.evaluate()["eval_student_teacher_gap"]
    assert gaps[2.0] < gaps[0.0]


# ---------------------------------------------------------------------------------------------------------------
# Pairwise
# ---------------------------------------------------------------------------------------------------------------
def test_build_pairs_orders_by_label_and_skips_ties():
    labels = [9.0, 4.0, 4.0, 1.0, 8.0]
    groups = [0, 0, 0, 1, 1]
    pairs = build_pairs(labels, groups)
    assert sorted(pairs) == sorted([(0, 1), (0, 2), (4, 3)])
    assert build_pairs(labels, groups, min_gap=6.0) == [(4, 3)]


def test_pairwise_loss_by_hand_and_training(tmp_path, base, dataset):
    args = make_args(tmp_path, loss_type="pairwise", use_margin=True, max_steps=6, learning_rate=1e-3)
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=dataset, eval_dataset=dataset)
    assert len(trainer.train_dataset) == 4 * 3  # three ordered pairs per instruction
    tok = AutoTokenizer.from_pretrained(base)
    pairs = build_pairs(dataset["label"], dataset["instruction_id"])
    idx = [0, 4]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in idx])
    assert batch["input_ids"].shape[0] == batch["teacher_input_ids"].shape[0] == 2 * len(idx)  # chosen, rejected
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))

    chosen = [dataset[pairs[i][0]] for i in idx]
    rejected = [dataset[pairs[i][1]] for i in idx]
    sc, sr = (scores_of(trainer.model, tok, [student_text(tok, r) for r in rs]) for rs in (chosen, rejected))
    tc, tr = (scores_of(trainer.model, tok, [teacher_text(tok, r) for r in rs]) for rs in (chosen, rejected))
    margin = torch.tensor([(c["label"] - r["label"]) / 9.0 for c, r in zip(chosen, rejected, strict=True)])
    lt = -F.logsigmoid(tc - tr - margin).mean()
    ls = -F.logsigmoid(sc - sr - margin).mean()
    ld = ((torch.cat([sc, sr]) - torch.cat([tc, tr])) ** 2).mean()
    assert loss.item() == pytest.approx((lt + 0.3 * ls + 2.0 * ld).item(), rel=1e-4)
    assert trainer._metrics["train"]["loss_distill"][-1] == pytest.approx(ld.item(), rel=1e-4, abs=1e-8)

    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_loss"] < before["eval_loss"]
    assert after["eval_accuracy"] > before["eval_accuracy"]


def test_preference_distillation_by_hand_and_blind_to_a_shared_shift(tmp_path, base, dataset):
    from selfj_trl.trainer.reward_trainer import selfj_loss_terms

    teacher = torch.tensor([2.0, 0.5, -1.0, 1.0])  # chosen (2.0, 0.5), rejected (-1.0, 1.0)
    student = teacher + torch.tensor([3.0, -2.0, 3.0, -2.0])  # each pair shifted by its own constant
    terms = selfj_loss_terms(student, teacher, "pairwise", distill_loss="preference")
    assert terms["loss_distill"].item() == pytest.approx(0.0, abs=1e-6)
    assert selfj_loss_terms(student, teacher, "pairwise")["loss_distill"].item() == pytest.approx(6.5)  # mse sees it
    flipped = torch.tensor([-1.0, 1.0, 2.0, 0.5], requires_grad=True)  # the student prefers each rejected answer
    teacher.requires_grad_(True)
    kl = selfj_loss_terms(flipped, teacher, "pairwise", distill_loss="preference")["loss_distill"]
    p_t = torch.sigmoid(torch.tensor([3.0, -0.5]))
    p_s = torch.sigmoid(torch.tensor([-3.0, 0.5]))
    by_hand = (p_t * (p_t / p_s).log() + (1 - p_t) * ((1 - p_t) / (1 - p_s)).log()).mean()
    assert kl.item() == pytest.approx(by_hand.item(), rel=1e-5)
    kl.backward()
    assert teacher.grad is None and flipped.grad.abs().sum() > 0  # the teacher is detached

    args = make_args(tmp_path, loss_type="pairwise", distill_loss="preference", distill_weight=1.0, max_steps=2)
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=dataset)
    trainer.train()
    assert trainer.judge_config()["distill_loss"] == "preference"
    logged = [h["loss_distill"] for h in trainer.state.log_history if "loss_distill" in h]
    assert len(logged) == 2 and all(v >= -1e-6 for v in logged) and logged[-1] > 0


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"distill_loss": "preference"}, "needs `loss_type=pairwise`"),
        ({"distill_loss": "kl", "loss_type": "pairwise"}, "distill_loss"),
    ],
)
def test_distill_loss_is_checked(tmp_path, kw, match):
    with pytest.raises(SelfJInputError, match=match):
        SelfJRewardConfig(output_dir=str(tmp_path), **kw)


def test_pairs_per_row_sets_the_steps_from_the_labeled_rows(tmp_path, base, dataset):
    """One recipe for any label count: the steps follow the rows (12 rows, 12 pairs here), not a fixed max_steps."""
    args = make_args(
        tmp_path,
        loss_type="pairwise",
        max_steps=-1,
        pairs_per_row=1.0,
        gradient_accumulation_steps=2,
        per_device_train_batch_size=2,
    )
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=dataset)
    trainer.train()
    assert trainer.state.global_step == 3 and args.max_steps == -1  # 12 rows x 1.0 / (2 x 2); the caller's args kept
    assert trainer.judge_config()["pairs_per_row"] == 1.0
    half = SelfJRewardTrainer(
        base,
        args=make_args(tmp_path / "half", loss_type="pairwise", max_steps=-1, pairs_per_row=0.5),
        train_dataset=dataset,
    )
    assert half.args.max_steps == 2  # ceil(12 x 0.5 / 4)
    smoke = make_args(tmp_path / "smoke", loss_type="pairwise", max_steps=1, pairs_per_row=1.0)
    assert smoke.pairs_per_row == 0  # a positive max_steps overrides it, as it overrides num_train_epochs
    assert SelfJRewardTrainer(base, args=smoke, train_dataset=dataset).args.max_steps == 1


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"loss_type": "pointwise", "max_steps": -1}, "only applies to `loss_type=pairwise`"),
        ({"loss_type": "pairwise", "max_steps": -1, "pairs_per_row": -1.0}, "pairs_per_row"),
    ],
)
def test_pairs_per_row_is_refused_where_it_means_nothing(tmp_path, kw, match):
    with pytest.raises(SelfJInputError, match=match):
        make_args(tmp_path, **{"pairs_per_row": 1.0, **kw})
    kw.pop("pairs_per_row", None)
    assert make_args(tmp_path, **{**kw, "pairs_per_row": 0.0}).pairs_per_row == 0  # 0 turns it off anywhere


def test_pairwise_without_pairs_is_a_clear_error(tmp_path, base, dataset):
    single = dataset.filter(lambda r: r["sample_index"] == 0)
    with pytest.raises(SelfJInputError, match="no pair of responses"):
        SelfJRewardTrainer(base, args=make_args(tmp_path, loss_type="pairwise"), train_dataset=single)


# ---------------------------------------------------------------------------------------------------------------
# Non-finite loss
# ---------------------------------------------------------------------------------------------------------------
def test_nan_loss_stops_training_naming_the_step(tmp_path, base, dataset):
    model = AutoModelForSequenceClassification.from_pretrained(base)
    with torch.no_grad():
        model.score.weight.fill_(float("nan"))
    args = make_args(tmp_path)
    trainer = SelfJRewardTrainer(model, args=args, train_dataset=dataset)
    with pytest.raises(TrainingDivergedError, match=r"non-finite loss at training step 1 .*loss_teacher=nan"):
        trainer.train()
    assert not (Path(args.output_dir) / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------------------------
# The published judge
# ---------------------------------------------------------------------------------------------------------------
def test_saved_judge_reloads_and_scores_identically(tmp_path, base, dataset):
    args = make_args(tmp_path, max_steps=4)
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=dataset, dataset_name="someone/selfj-labels")
    trainer.train()
    out = trainer.save_judge(tmp_path / "judge")
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "selfj.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)

    tok = AutoTokenizer.from_pretrained(out)
    reloaded = AutoModelForSequenceClassification.from_pretrained(out)
    texts = [student_text(tok, r) for r in dataset]
    trainer.model.eval()
    saved = reloaded.state_dict()
    assert all(torch.equal(saved[k], v) for k, v in trainer.model.state_dict().items())  # fp32 master weights
    assert torch.allclose(scores_of(reloaded, tok, texts, args.bf16), scores_of(trainer.model, tok, texts), atol=1e-6)
    selfj = reloaded.config.selfj
    assert selfj["format"] == "chat" and selfj["score_scale"] == [0.0, 1.0]
    assert (selfj["teacher_weight"], selfj["student_weight"], selfj["distill_weight"]) == (1.0, 0.3, 2.0)
    assert selfj["loss_type"] == "pointwise" and selfj["lora"] is None and selfj["dataset"] == "someone/selfj-labels"
    assert selfj["training_precision"] == ("bf16" if args.bf16 else "fp32")
    assert reloaded.config.pad_token_id == tok.pad_token_id
    card = (out / "README.md").read_text()
    assert "https://huggingface.co/datasets/someone/selfj-labels" in card and "None" not in card
    assert ("bf16 mixed precision" in card) is args.bf16

    try:
        from selfj_trl.judge import SelfJudge
    except ImportError:  # the judge module is written separately
        return
    judge = SelfJudge.from_pretrained(str(out), device="cpu", dtype="float32")
    ours = judge.score([r["instruction"] for r in dataset], [r["response"] for r in dataset])
    assert torch.allclose(torch.tensor(ours), scores_of(reloaded, tok, texts), atol=1e-5)


@pytest.mark.parametrize("merge", [True, False])
def test_lora_judge_with_and_without_merge(tmp_path, plain_base, dataset, merge):
    from peft import LoraConfig

    peft_config = LoraConfig(
        task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]
    )
    args = make_args(tmp_path, max_steps=4, learning_rate=1e-2, merge_adapter_on_save=merge)
    trainer = SelfJRewardTrainer(plain_base, args=args, train_dataset=dataset, peft_config=peft_config)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any("score" in n for n in trainable)
    trainer.train()
    stale = tmp_path / "judge"  # an earlier save of the other kind in the same folder must not survive
    stale.mkdir()
    (stale / ("adapter_config.json" if merge else "model.safetensors")).write_text("{}")
    out = trainer.save_judge(stale)
    files = {p.name for p in out.iterdir()}
    if merge:
        assert "model.safetensors" in files and "adapter_config.json" not in files
    else:
        assert "adapter_model.safetensors" in files and "config.json" not in files
    selfj = json.loads((out / "selfj.json").read_text())
    assert selfj["format"] == "plain" and selfj["lora"]["r"] == 4 and selfj["lora"]["merged"] is merge

    tok = AutoTokenizer.from_pretrained(out)
    reloaded = AutoModelForSequenceClassification.from_pretrained(out)
    texts = [student_text(tok, r, chat=False) for r in dataset]
    trainer.model.eval()
    ours = scores_of(trainer.model, tok, texts)
    # Under bf16 a merged W + BA rounds once where the adapter's W x + B(A x) rounds twice: a step or two of 2**-11.
    tolerance = 2e-3 if args.bf16 and merge else 1e-5
    assert torch.allclose(scores_of(reloaded, tok, texts, args.bf16), ours, atol=tolerance)
    untrained = AutoModelForSequenceClassification.from_pretrained(plain_base)
    assert not torch.allclose(scores_of(untrained, tok, texts), ours, atol=1e-4)  # the adapter did something
    if merge:
        assert not hasattr(reloaded, "peft_config") and reloaded.config.selfj["lora"]["merged"] is True


# ---------------------------------------------------------------------------------------------------------------
# Script, recipes, accelerate
# ---------------------------------------------------------------------------------------------------------------
TRAIN_RECIPES = sorted((REPO / "recipes").glob("*/train/config_*.yaml"))


def test_train_recipes_live_with_their_model():
    assert {p.parent.parent.name for p in TRAIN_RECIPES} == {
        "all-minilm-l6-v2",
        "gemma-3-270m",
        "qwen2.5-7b-instruct",
        "smollm2-135m-instruct",
    }


def test_the_qlora_recipe_is_refused_in_one_line_without_cuda(capsys):
    from selfj_trl.cli import main as cli

    if torch.cuda.is_available():
        pytest.skip("this machine could run it")
    recipe = REPO / "recipes/qwen2.5-7b-instruct/train/config_judge_qlora.yaml"
    assert cli(["train", "--config", str(recipe)]) == 2  # before any download of the 7B model
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert "--load_in_4bit needs a CUDA device" in line


@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=lambda p: p.parent.parent.name)
def test_train_recipes_parse(recipe):
    from trl import ModelConfig, TrlParser

    parser = TrlParser((SelfJScriptArguments, SelfJRewardConfig, ModelConfig))
    script_args, args, model_args = parser.parse_args_and_config(["--config", str(recipe)])
    assert model_args.model_name_or_path and script_args.dataset_name
    assert args.loss_type in ("pointwise", "pairwise") and args.report_to in ([], ["none"], "none")


def test_main_requires_a_dataset(tmp_path, base):
    with pytest.raises(SelfJInputError, match="--dataset_name"):
        main(["--model_name_or_path", base, "--output_dir", str(tmp_path)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("launcher", ["accelerate launch", "selfj-trl train --accelerate_config"])
def test_two_process_accelerate_launch(tmp_path, base, dataset, launcher):
    data = tmp_path / "labeled.jsonl"
    dataset.to_json(str(data))
    out = tmp_path / "judge"
    config = str(REPO / "recipes/accelerate_configs/multi_cpu_2proc.yaml")
    if launcher == "accelerate launch":
        accelerate = Path(sys.executable).with_name("accelerate")
        port = ["--main_process_port", str(_free_port())]
        start = [str(accelerate), "launch", "--config_file", config, *port, "-m", "selfj_trl.trainer"]
    else:  # as TRL's own CLI: the command launches itself, and hands accelerate the flags the stage does not know
        start = [str(Path(sys.executable).with_name("selfj-trl")), "train", "--accelerate_config", config]
        start += ["--main_process_port", str(_free_port())]
    cmd = [
        *start,
        "--model_name_or_path",
        base,
        "--dataset_name",
        str(data),
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--logging_steps",
        "1",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("judge saved to") == 1  # only the main process reports
    logs = [ast.literal_eval(line[line.index("{") :]) for line in proc.stdout.splitlines() if "'loss_distill'" in line]
    # 12 rows, 2 per process per step: one step covers 4 rows, a third of an epoch, only if both processes train.
    assert float(logs[0]["epoch"]) == pytest.approx(1 / 3, abs=0.01)
    reloaded = AutoModelForSequenceClassification.from_pretrained(out)
    assert reloaded.config.selfj["loss_type"] == "pointwise"
    assert (out / "README.md").exists()


@pytest.mark.slow
def test_minilm_recipe_trains(tmp_path, dataset):
    data = tmp_path / "labeled.jsonl"
    dataset.to_json(str(data))
    out = tmp_path / "judge"
    assert (
        main(
            [
                "--config",
                str(REPO / "recipes/all-minilm-l6-v2/train/config_judge.yaml"),
                "--dataset_name",
                str(data),
                "--output_dir",
                str(out),
                "--max_steps",
                "2",
                "--per_device_train_batch_size",
                "4",
            ]
        )
        == 0
    )
    reloaded = AutoModelForSequenceClassification.from_pretrained(out)
    assert reloaded.config.model_type == "bert" and reloaded.config.selfj["format"] == "plain"
    assert reloaded.config.selfj["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"


# ---------------------------------------------------------------------------------------------------------------
# Views within one token budget, and the same length in use
# ---------------------------------------------------------------------------------------------------------------
ALPACA = REPO.parent / "shared" / "data" / "alpaca_eval_gpt4"


def _contains(seq: list[int], sub: list[int]) -> bool:
    return any(seq[k : k + len(sub)] == sub for k in range(len(seq) - len(sub) + 1))


@pytest.mark.slow
@pytest.mark.skipif(not (ALPACA / "responses.jsonl").exists(), reason="needs /work/shared/data (AlpacaEval)")
def test_minilm_teacher_views_of_real_rows_keep_reference_opening_and_whole_instruction(tmp_path):
    """AlpacaEval TRAIN rows (the longest answer to each instruction), MiniLM at max_length 384.

    Before the fix the views kept their END: most teacher views lost the reference's opening, and position 0 (what
    BERT's pooler reads; TRL adds no [CLS]) was whatever token happened to be there.
    """
    instructions = {
        r["id"]: r for r in map(json.loads, (ALPACA / "instructions.jsonl").open()) if r["split"] == "train"
    }
    longest: dict = {}
    for r in map(json.loads, (ALPACA / "responses.jsonl").open()):
        if r["id"] in instructions and len(r["response"]) > len(longest.get(r["id"], {}).get("response", "")):
            longest[r["id"]] = r
    rows = [
        {
            "instruction": instructions[i]["instruction"],
            "reference": instructions[i]["reference"],
            "response": r["response"],
            "label": 4.5,
        }
        for i, r in sorted(longest.items())
    ]
    trainer = SelfJRewardTrainer(
        "all-minilm-l6-v2",
        args=make_args(tmp_path, max_length=384, judge_format="plain"),
        train_dataset=Dataset.from_list(rows),
    )
    tok = trainer.processing_class
    prepared = trainer.train_dataset
    students, teachers = prepared["student_ids"], prepared["teacher_ids"]
    assert len({s[0] for s in students}) == 1 and len({t[0] for t in teachers}) == 1  # a stable pooled token
    room = 384 - len(tok(format_teacher_view(tok, "", "", "", chat=False), add_special_tokens=False)["input_ids"])
    whole = 0
    for row, student, teacher in zip(rows, students, teachers, strict=True):
        assert len(student) <= 384 and len(teacher) <= 384
        reference = tok(row["reference"], add_special_tokens=False, verbose=False)["input_ids"]
        assert _contains(teacher, reference[:16]), row["instruction"][:60]
        instruction = tok(row["instruction"], add_special_tokens=False)["input_ids"]
        if len(instruction) <= room // 2:  # longer ones (a handful) are cut from their tail to leave room
            assert _contains(teacher, instruction) and _contains(student, instruction)
            whole += 1
        response = tok(row["response"], add_special_tokens=False, verbose=False)["input_ids"]
        assert _contains(student, response[:16]) and _contains(teacher, response[:16])
    assert whole >= 0.98 * len(rows)
    cuts = trainer.view_cuts["train"]
    assert cuts["rows"] == len(rows) and cuts["reference_cut"] > 0.5 * len(rows) and cuts["response_cut"] > 0


def test_view_cuts_are_logged_and_recorded_and_the_judge_scores_at_its_training_length(
    tmp_path, base, dataset, caplog
):
    """One max_length: recorded at training, used by SelfJudge (before the fix it used the 512 position limit)."""
    from transformers.utils import logging as hf_logging

    from selfj_trl.judge import SelfJudge

    rows = [{**r, "response": " ".join([r["response"]] * 12)} for r in labeled_rows()]
    hf_logging.enable_propagation()
    with caplog.at_level("WARNING"):
        trainer = SelfJRewardTrainer(
            base, args=make_args(tmp_path, max_steps=1, max_length=48), train_dataset=Dataset.from_list(rows)
        )
    assert "responses" in caplog.text and "references" in caplog.text and "max_length=48" in caplog.text
    trainer.train()
    out = trainer.save_judge(tmp_path / "judge")
    selfj = json.loads((out / "selfj.json").read_text())
    assert selfj["max_length"] == 48 and selfj["view_cuts"]["train"]["rows"] == len(rows)
    assert selfj["view_cuts"]["train"]["response_cut"] > 0
    assert "cut to fit (train)" in (out / "README.md").read_text()
    judge = SelfJudge.from_pretrained(str(out), device="cpu", dtype="float32")
    assert judge.max_length == 48
    for i in (0, 5):
        row, prepared = rows[i], trainer.train_dataset[i]
        assert judge.view_ids(row["instruction"], row["response"]) == prepared["student_ids"]
        assert judge.view_ids(row["instruction"], row["response"], row["reference"]) == prepared["teacher_ids"]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([trainer.train_dataset[0]["student_ids"]])).logits[0, 0].item()
    assert judge.score([rows[0]["instruction"]], [rows[0]["response"]])[0] == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Distillation warm-up
# ---------------------------------------------------------------------------------------------------------------
def test_distill_weight_ramps_in_linearly():
    from selfj_trl.trainer import distill_weight_at

    assert [distill_weight_at(s, 10, 2.0, 0.0) for s in (0, 5)] == [2.0, 2.0]
    assert [distill_weight_at(s, 10, 2.0, 0.4) for s in (0, 1, 2, 4, 9)] == [0.0, 0.5, 1.0, 2.0, 2.0]


@pytest.mark.parametrize("ratio", [-0.1, 1.0, float("nan"), True])
def test_distill_warmup_ratio_is_checked_at_parse_time(tmp_path, ratio):
    with pytest.raises(SelfJInputError, match="distill_warmup_ratio"):
        SelfJRewardConfig(output_dir=str(tmp_path), distill_warmup_ratio=ratio)


def test_distill_warmup_is_applied_logged_and_recorded(tmp_path, base, dataset):
    args = make_args(tmp_path, max_steps=4, distill_warmup_ratio=0.5)
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=dataset)
    trainer.model.train()
    batch = dict(trainer.data_collator([trainer.train_dataset[i] for i in (0, 1, 4, 8)]))
    loss = trainer.compute_loss(trainer.model, batch)  # step 0: no distillation yet
    metrics = trainer._metrics["train"]
    no_distill = 1.0 * metrics["loss_teacher"][-1] + 0.3 * metrics["loss_student"][-1]
    assert metrics["loss_distill"][-1] > 0 and loss.item() == pytest.approx(no_distill, rel=1e-5)
    trainer._metrics["train"].clear()
    trainer.train()
    logged = [h["distill_weight"] for h in trainer.state.log_history if "distill_weight" in h]
    assert logged == pytest.approx([0.0, 1.0, 2.0, 2.0])
    assert trainer.judge_config()["distill_warmup_ratio"] == 0.5


def test_centring_is_trls_pair_sum_term_and_is_refused_for_pointwise(tmp_path, base, dataset):
    from selfj_trl.trainer.reward_trainer import pair_centring

    student = torch.tensor([5.0, 1.0, -5.0, 2.0])  # pairs (5, -5) and (1, 2)
    teacher = torch.tensor([0.5, -3.0, 0.5, 3.0])  # pairs (0.5, 0.5) and (-3, 3)
    # TRL: mean((chosen + rejected) ** 2) per view; a pair that sums to 0 costs nothing however large its scores
    assert pair_centring(student, teacher).item() == pytest.approx((0 + 9 + 1 + 0) / 4)
    assert pair_centring(torch.tensor([4.0, -4.0]), torch.tensor([-1.0, 1.0])).item() == 0.0
    with pytest.raises(SelfJInputError, match="center_rewards_coefficient"):
        make_args(tmp_path, center_rewards_coefficient=0.01)  # pointwise: the label fixes the level

    args = make_args(tmp_path, loss_type="pairwise", center_rewards_coefficient=0.5, max_steps=1)
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=dataset)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.model.eval()
    with torch.no_grad():
        with_term = trainer.compute_loss(trainer.model, batch).item()
        trainer.args.center_rewards_coefficient = None
        without = trainer.compute_loss(trainer.model, batch).item()
        student, teacher = (
            trainer.model(input_ids=batch[f"{v}input_ids"], attention_mask=batch[f"{v}attention_mask"]).logits[:, 0]
            for v in ("", "teacher_")
        )
    assert with_term - without == pytest.approx(0.5 * pair_centring(student, teacher).item(), rel=1e-4)


def test_quantization_flags_reach_the_trainer_or_are_refused_in_one_line(tmp_path, base, monkeypatch, capsys):
    """QLoRA's flags (TRL's ModelConfig) are honoured on CUDA and refused elsewhere: never parsed and dropped."""
    from selfj_trl import models
    from selfj_trl.cli import main as cli
    from selfj_trl.trainer import script

    labeled = tmp_path / "labeled"
    Dataset.from_list(labeled_rows()).save_to_disk(str(labeled))
    argv = ["train", "--model_name_or_path", base, "--dataset_name", str(labeled), "--output_dir", str(tmp_path / "j")]
    seen = {}

    class Captured(Exception):
        pass

    def capture(**kwargs):
        seen.update(kwargs)
        raise Captured

    monkeypatch.setattr(script, "SelfJRewardTrainer", lambda *a, **k: capture(**k))
    if not torch.cuda.is_available():
        assert cli([*argv, "--load_in_4bit", "true", "--use_peft", "true"]) == 2
        (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
        assert "--load_in_4bit needs a CUDA device" in line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(models, "has_bitsandbytes", lambda: False)
    assert cli([*argv, "--load_in_4bit", "true", "--use_peft", "true"]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert "--load_in_4bit needs bitsandbytes" in line and "selfj-trl[gpu]" in line
    monkeypatch.setattr(models, "has_bitsandbytes", lambda: True)
    assert cli([*argv, "--load_in_8bit", "true"]) == 2
    assert "--use_peft true` (QLoRA)" in capsys.readouterr().err
    with pytest.raises(Captured):
        script.main([*argv[1:], "--load_in_4bit", "true", "--use_peft", "true", "--bnb_4bit_quant_type", "nf4"])
    config = seen["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert seen["peft_config"].task_type == "SEQ_CLS"


def test_accelerate_config_names_trls_configs_and_refuses_an_unknown_one(tmp_path, capsys, monkeypatch):
    import selfj_trl.launch as launch
    from selfj_trl.cli import main as cli

    argv = ["--dataset_name", "d", "--accelerate_config", "zero3", "--main_process_port", "1234", "--seed", "3"]
    args = launch.launch_arguments("selfj_trl.labeling", argv)
    assert args[:2] == ["--config_file", args[1]] and args[1].endswith("zero3.yaml") and Path(args[1]).is_file()
    assert args[2:] == [
        "--main_process_port",
        "1234",
        "-m",
        "selfj_trl.labeling",
        "--dataset_name",
        "d",
        "--seed",
        "3",
    ]
    seen = []
    monkeypatch.setattr(launch, "launch_command", seen.append, raising=False)
    assert cli(["train", "--accelerate_config", "no-such-config", "--output_dir", str(tmp_path)]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert "no-such-config" in line and "selfj-trl train: error:" in line and not seen


def test_saved_judge_records_reward_stats_of_its_eval_scores(base, dataset, tmp_path):
    train, held = dataset.select(range(9)), dataset.select(range(9, len(dataset)))
    args = make_args(tmp_path, bf16=False)
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=train, eval_dataset=held)
    trainer.train()
    trainer.save_model()
    out = Path(args.output_dir)
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(out)
    scores = scores_of(model, tokenizer, [student_text(tokenizer, row) for row in held])
    stats = model.config.selfj["reward_stats"]
    assert stats["set"] == "eval" and stats["n"] == stats["rows"] == len(held)
    assert stats["mean"] == pytest.approx(scores.mean().item(), abs=1e-5)
    assert stats["std"] == pytest.approx(scores.std().item(), rel=1e-4)
    assert (model.config.mean, model.config.std) == (stats["mean"], stats["std"])
    assert json.loads((out / "selfj.json").read_text())["reward_stats"] == stats
    card = (out / "README.md").read_text()
    assert f"mean {stats['mean']:.4f}, std {stats['std']:.4f}" in card and "eval set (3 scores)" in card
    # the length lean: within-instruction Spearman of those scores with the answers' word counts
    from selfj_trl.stats import mean_within_group_spearman

    words = [len(row["response"].split()) for row in held]
    expected = mean_within_group_spearman(scores.tolist(), words, [row["instruction_id"] for row in held])
    assert stats["length_lean"] == pytest.approx(expected) and f"| length lean | {expected:+.3f}" in card


def test_pairwise_judge_without_eval_set_records_train_stats(base, dataset, tmp_path):
    args = make_args(tmp_path, loss_type="pairwise", max_steps=2, bf16=False)
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=dataset)
    trainer.train()
    trainer.save_model()
    config = json.loads((Path(args.output_dir) / "config.json").read_text())
    stats = config["selfj"]["reward_stats"]
    pairs = len(trainer.train_dataset)
    answers = {tuple(ids) for c in ("chosen_student_ids", "rejected_student_ids") for ids in trainer.train_dataset[c]}
    # each answer scored once, however many pairs it is in
    assert stats["set"] == "train" and stats["rows"] == pairs and stats["n"] == len(answers) < 2 * pairs
    assert -1.0 <= stats["length_lean"] <= 1.0
    assert (config["mean"], config["std"]) == (stats["mean"], stats["std"]) and stats["std"] > 0


def test_length_residual_recovers_the_slope_and_keeps_each_instructions_mean():
    """A label built as level + 1.5 x log(1 + words) + noise: the fixed-effects fit finds the 1.5 and the residual
    labels keep every instruction's mean but no longer rise with length inside one."""
    from selfj_trl.stats import mean_within_group_spearman
    from selfj_trl.trainer.views import length_residual_labels

    rng = np.random.default_rng(0)
    groups = [g for g in range(40) for _ in range(6)]
    level = rng.uniform(3.5, 5.5, size=40)
    words = rng.integers(5, 300, size=len(groups)).tolist()
    labels = [level[g] + 1.5 * (np.log1p(w) - 3.75) + rng.normal(0, 0.3) for g, w in zip(groups, words, strict=True)]
    assert 0 < min(labels) and max(labels) < 9  # inside the scale, so that no clipping moves a mean
    adjusted, slope = length_residual_labels(labels, words, groups, label_max=9.0)
    assert slope == pytest.approx(1.5, abs=0.1)
    assert mean_within_group_spearman(labels, words, groups) > 0.8
    assert abs(mean_within_group_spearman(adjusted, words, groups)) < 0.15
    for g in range(40):
        rows = [i for i, gg in enumerate(groups) if gg == g]
        assert np.mean([adjusted[i] for i in rows]) == pytest.approx(np.mean([labels[i] for i in rows]), abs=0.05)
    assert min(adjusted) >= 0 and max(adjusted) <= 9
    same, zero = length_residual_labels([3.0, 5.0], [10, 10], ["a", "a"], label_max=9.0)  # no spread: no slope
    assert (same, zero) == ([3.0, 5.0], 0.0)


def test_length_matched_pairs_keep_only_pairs_close_in_length():
    from selfj_trl.trainer.views import length_matched_pairs

    words = [9, 5, 2, 14, 0]  # + 1: 10, 6, 3, 15, 1
    pairs = [(0, 1), (1, 0), (0, 3), (1, 2), (2, 4), (3, 0)]
    assert length_matched_pairs(pairs, words, 1.5) == [(0, 3), (3, 0)]  # 15 <= 1.5 x 10; 10 > 1.5 x 6
    assert length_matched_pairs(pairs, words, 2.0) == [(0, 1), (1, 0), (0, 3), (1, 2), (3, 0)]  # 6 <= 2 x 3
    assert length_matched_pairs(pairs, words, 3.0) == pairs
    assert length_matched_pairs(pairs, [3, 3, 3, 3, 3], 1.0) == pairs  # equal lengths pass the tightest ratio


def test_length_control_matched_trains_on_close_pairs_only_and_is_recorded(base, dataset, tmp_path):
    args = make_args(tmp_path, loss_type="pairwise", max_steps=1, bf16=False, length_control="matched")
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=dataset)
    words = trainer.train_dataset["chosen_words"], trainer.train_dataset["rejected_words"]
    # 12 pairs of differently labeled answers (3 per instruction); the 6-word reference against a 2- or 3-word
    # answer and the 4-word one against the 2-word one are more than 1.5x apart in words + 1: 9 pairs are left
    assert len(trainer.train_dataset) == 9
    assert all(max(a, b) + 1 <= 1.5 * (min(a, b) + 1) for a, b in zip(*words, strict=True))
    trainer.train()
    trainer.save_model()
    selfj = json.loads((Path(args.output_dir) / "config.json").read_text())["selfj"]
    assert selfj["length_control"] == {
        "method": "matched",
        "slope": {},
        "ratio": 1.5,
        "pairs_kept": {"train": [9, 12]},
    }
    card = (Path(args.output_dir) / "README.md").read_text()
    assert "within 1.5x of each other in word count + 1 (9 of 12 pairs on train)" in card
    lone = dataset.filter(lambda r: r["instruction_id"] == 0)  # 7, 4 and 3 words + 1: no two equal
    strict = make_args(tmp_path, loss_type="pairwise", length_control="matched", length_match_ratio=1.0)
    with pytest.raises(SelfJInputError, match="none of the 3 pairs .* length_match_ratio=1"):
        SelfJRewardTrainer(base, args=strict, train_dataset=lone)
    with pytest.raises(SelfJInputError, match="needs `loss_type=pairwise`"):
        make_args(tmp_path, loss_type="pointwise", length_control="matched")


def test_length_expert_slope_recovers_the_slope_that_drew_the_pairs():
    from selfj_trl.trainer.views import length_expert_slope

    rng = np.random.default_rng(0)
    longer, shorter = rng.integers(5, 400, 20_000), rng.integers(5, 400, 20_000)
    gap = np.log1p(longer) - np.log1p(shorter)
    first_wins = rng.random(gap.size) < 1 / (1 + np.exp(-1.5 * gap))
    chosen, rejected = np.where(first_wins, longer, shorter), np.where(first_wins, shorter, longer)
    assert length_expert_slope(chosen.tolist(), rejected.tolist()) == pytest.approx(1.5, abs=0.1)
    coin = rng.random(gap.size) < 0.5
    assert (
        abs(length_expert_slope(np.where(coin, longer, shorter).tolist(), np.where(coin, shorter, longer).tolist()))
        < 0.05
    )
    separable = length_expert_slope([10, 20, 30], [5, 8, 12])  # every chosen answer is the longer: finite, positive
    assert 0 < separable < 1e4 and math.isfinite(separable)


def test_length_control_explained_adds_the_fixed_length_model_to_each_pair_and_is_recorded(base, dataset, tmp_path):
    from selfj_trl.trainer.reward_trainer import selfj_loss_terms
    from selfj_trl.trainer.views import length_expert_slope

    args = make_args(
        tmp_path, loss_type="pairwise", max_steps=1, bf16=False, length_control="explained", distill_weight=0.0
    )
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=dataset)
    chosen, rejected = trainer.train_dataset["chosen_words"], trainer.train_dataset["rejected_words"]
    slope = length_expert_slope(chosen, rejected)
    expected = [slope * (math.log1p(c) - math.log1p(r)) for c, r in zip(chosen, rejected, strict=True)]
    assert slope > 0 and trainer.train_dataset["length_offset"] == pytest.approx(expected)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    assert batch["length_offset"].tolist() == pytest.approx(expected[:4])
    # the label loss is Bradley-Terry on (judge difference + length log-odds): a pair whose order length already
    # explains costs the judge less, one it contradicts more
    scores, offset = torch.tensor([0.3, -0.2, 0.1, 0.4]), torch.tensor([2.0, -1.0])
    terms = selfj_loss_terms(scores, scores, "pairwise", length_offset=offset)
    by_hand = -F.logsigmoid(scores[:2] - scores[2:] + offset).mean()
    assert terms["loss_student"].item() == pytest.approx(by_hand.item())
    assert terms["loss_teacher"].item() == pytest.approx(by_hand.item())
    with torch.no_grad():  # the trainer's loss reads it: a length model sure of every pair leaves nothing to learn
        plain_loss = trainer.compute_loss(trainer.model, {k: v for k, v in batch.items() if k != "length_offset"})
        sure = trainer.compute_loss(trainer.model, {**batch, "length_offset": torch.full((4,), 50.0)})
    assert plain_loss.item() > 0.1 and sure.item() < 1e-6
    trainer.train()
    trainer.save_model()
    selfj = json.loads((Path(args.output_dir) / "config.json").read_text())["selfj"]
    assert selfj["length_control"] == {"method": "explained", "slope": {"train": pytest.approx(slope)}}
    card = (Path(args.output_dir) / "README.md").read_text()
    assert f"plus {slope:.3f} x its difference in log word count" in card
    assert (
        "length_offset"
        not in SelfJRewardTrainer(
            base,
            args=make_args(tmp_path / "plain", loss_type="pairwise", max_steps=1, bf16=False),
            train_dataset=dataset,
        ).train_dataset.column_names
    )
    with pytest.raises(SelfJInputError, match="explained. works on pairs: it needs `loss_type=pairwise`"):
        make_args(tmp_path, loss_type="pointwise", length_control="explained")


def test_length_correlation_ignores_which_answer_of_a_pair_comes_first():
    from selfj_trl.trainer.reward_trainer import length_correlation

    gap = torch.tensor([0.5, -1.0, 2.0])
    scores = torch.tensor([1.0, 0.0, 3.0, 0.0, 2.0, 2.0])  # differences 1, -2, 1
    corr = length_correlation(scores, gap)
    assert corr.item() == pytest.approx((0.5 + 2.0 + 2.0) / math.sqrt(6.0 * 5.25))
    swapped = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 2.0])  # the second pair's answers swapped: -2 -> +2
    assert length_correlation(swapped, torch.tensor([0.5, 1.0, 2.0])).item() == pytest.approx(corr.item())
    proportional = torch.tensor([1.0, -2.0, 4.0, 0.0, 0.0, 0.0])
    assert length_correlation(proportional, gap).item() == pytest.approx(1.0)


def test_length_control_decorrelated_penalises_the_batch_length_correlation_and_is_recorded(base, dataset, tmp_path):
    from selfj_trl.trainer.reward_trainer import length_correlation

    args = make_args(
        tmp_path,
        loss_type="pairwise",
        max_steps=1,
        bf16=False,
        length_control="decorrelated",
        length_decorrelation_weight=3.0,
    )
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=dataset)
    chosen, rejected = trainer.train_dataset["chosen_words"], trainer.train_dataset["rejected_words"]
    gaps = [math.log1p(c) - math.log1p(r) for c, r in zip(chosen, rejected, strict=True)]
    assert trainer.train_dataset["length_gap"] == pytest.approx(gaps)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        penalised = trainer.compute_loss(trainer.model, batch)
        plain = trainer.compute_loss(trainer.model, {k: v for k, v in batch.items() if k != "length_gap"})
        scores = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    corr = length_correlation(scores.squeeze(-1).float(), batch["length_gap"])
    assert abs(corr.item()) > 0.01
    assert (penalised - plain).item() == pytest.approx(3.0 * corr.item() ** 2, rel=1e-4)
    trainer.train()
    trainer.save_model()
    selfj = json.loads((Path(args.output_dir) / "config.json").read_text())["selfj"]
    assert selfj["length_control"] == {"method": "decorrelated", "slope": {}, "weight": 3.0}
    card = (Path(args.output_dir) / "README.md").read_text()
    assert "a penalty in training, 3 x the squared correlation over each batch" in card
    with pytest.raises(SelfJInputError, match="decorrelated. works on pairs"):
        make_args(tmp_path, loss_type="pointwise", length_control="decorrelated")


@pytest.mark.parametrize("loss_type", ["pointwise", "pairwise"])
def test_length_control_residual_trains_on_the_adjusted_labels_and_is_recorded(base, dataset, tmp_path, loss_type):
    from selfj_trl.trainer.views import length_residual_labels

    args = make_args(tmp_path, loss_type=loss_type, max_steps=1, bf16=False, length_control="residual")
    trainer = SelfJRewardTrainer(base, args=args, train_dataset=dataset)
    words = [len(r.split()) for r in dataset["response"]]
    adjusted, slope = length_residual_labels(dataset["label"], words, dataset["instruction_id"], args.label_max)
    if loss_type == "pointwise":
        assert trainer.train_dataset["target"] == pytest.approx([a / args.label_max for a in adjusted])
    else:  # pairs ordered by the adjusted labels
        from selfj_trl.trainer.views import build_pairs

        assert len(trainer.train_dataset) == len(build_pairs(adjusted, dataset["instruction_id"]))
    trainer.train()
    trainer.save_model()
    selfj = json.loads((Path(args.output_dir) / "config.json").read_text())["selfj"]
    assert selfj["length_control"] == {"method": "residual", "slope": {"train": pytest.approx(slope)}}
    card = (Path(args.output_dir) / "README.md").read_text()
    assert f"slope {slope:+.3f} label points per log word on train" in card
    plain = make_args(tmp_path / "plain", max_steps=1, bf16=False)
    assert SelfJRewardTrainer(base, args=plain, train_dataset=dataset).train_dataset["target"] == pytest.approx(
        [v / plain.label_max for v in dataset["label"]]
    )
