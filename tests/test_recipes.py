"""The recipes run a step on tiny models, and the reward TRL computes from the judge equals SelfJudge.score.

Each recipe is loaded from ``recipes/<name>/<name>.py`` with its own YAML (so a key TRL does not know fails here)
and CPU-sized flags on top, exactly as ``accelerate launch recipe.py --config recipe.yaml --flag ...`` would. The
last section runs every recipe (label, train, the loops, best-of-n) with its YAML defaults, only the model, judge
and data paths and the step counts overridden, chained as a user runs them (the loops use the judge the train
recipe wrote).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
from pathlib import Path

import pytest
import torch
from datasets import load_from_disk
from transformers import AutoConfig, AutoTokenizer

from selfj_trl.errors import SelfJInputError
from selfj_trl.io import load_script, write_manifest
from selfj_trl.judge import SelfJudge
from selfj_trl.judge_views import judge_format_config
from selfj_trl.prompts import PLAIN_PROMPT_TEMPLATE
from selfj_trl.rewards import JudgeRecipeArguments, prompt_dataset
from selfj_trl.testing import make_tiny_llama, tiny_instruction_rows


os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
CPU_FLAGS = [
    "--use_cpu",
    "true",
    "--bf16",
    "false",
    "--activation_checkpointing",
    "false",
    "--report_to",
    "none",
    "--save_strategy",
    "no",
    "--logging_steps",
    "1",
    "--max_steps",
    "1",
    "--seed",
    "0",
]
ONLINE_FLAGS = [
    "--per_device_train_batch_size",
    "2",
    "--num_generations",
    "2",
    "--max_completion_length",
    "4",
    "--overlong_cache",  # the recipes' 32 is for their 128-token completions
    "2",
    "--max_prompts",
    "4",
]


def load_recipe(name: str):
    return load_script(RECIPES / name / f"{name}.py", f"recipe_{name}")


def parse(name: str, parser_types, argv: list[str]):
    from trl import TrlParser

    return TrlParser(parser_types).parse_args_and_config(["--config", str(RECIPES / name / f"{name}.yaml"), *argv])


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in tiny_instruction_rows(6)))
    return str(path)


@pytest.fixture(scope="module")
def plain_judge(tmp_path_factory):
    path = make_tiny_llama(tmp_path_factory.mktemp("plain_judge"), kind="seqcls", chat=False, seed=3)
    config = AutoConfig.from_pretrained(path)
    config.selfj = judge_format_config(AutoTokenizer.from_pretrained(path))
    config.save_pretrained(path)
    write_manifest(path)
    return str(path)


#: Completion lengths in tokens, per reward computation recorded by ``capture``.
LENGTHS: list[list[int]] = []


def capture(trainer, method: str) -> list:
    """Record (prompts, completions, rewards) every time the trainer computes rewards."""
    seen = []
    original = getattr(trainer, method)

    signature = inspect.signature(original)

    def wrapped(*args, **kwargs):
        rewards = original(*args, **kwargs)
        bound = signature.bind(*args, **kwargs).arguments
        seen.append((list(bound["prompts"]), list(bound["completions"]), rewards.detach().float().cpu().clone()))
        LENGTHS.append([len(ids) for ids in bound["completion_ids_list"]])
        return rewards

    setattr(trainer, method, wrapped)
    return seen


def as_pairs(prompts, completions):
    """(instruction, response) back from TRL's plain or conversational prompt/completion."""
    if isinstance(prompts[0], list):
        return [p[-1]["content"] for p in prompts], [c[-1]["content"] for c in completions]
    head, tail = PLAIN_PROMPT_TEMPLATE.split("{instruction}")
    instructions = []
    for p in prompts:
        assert p.startswith(head) and p.endswith(tail)
        instructions.append(p[len(head) : len(p) - len(tail)])
    return instructions, list(completions)


def assert_rewards_match_selfjudge(seen, judge_path):
    assert seen, "the trainer never computed rewards"
    judge = SelfJudge.from_pretrained(judge_path, device="cpu", dtype="float32")  # TRL loads the judge in fp32
    for prompts, completions, rewards in seen:
        instructions, responses = as_pairs(prompts, completions)
        expected = judge.score(instructions, responses)
        column = rewards[:, 0] if rewards.dim() == 2 else rewards
        assert column.tolist() == pytest.approx(expected, abs=1e-5)


# ------------------------------------------------------------------------------------------------------------------
# GRPO: the reward TRL computes with the judge given by path equals SelfJudge.score (plain and conversational)
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["conversational", "plain"])
def test_grpo_reward_equals_selfjudge_score(
    shape, tiny_policy, tiny_plain_policy, tiny_judge, plain_judge, prompts_file, tmp_path
):
    from trl import GRPOConfig

    grpo = load_recipe("grpo")
    policy, judge = (tiny_policy, tiny_judge) if shape == "conversational" else (tiny_plain_policy, plain_judge)
    script_args, training_args = parse(
        "grpo",
        (JudgeRecipeArguments, GRPOConfig),
        [
            "--policy",
            policy,
            "--judge",
            judge,
            "--dataset",
            prompts_file,
            "--output_dir",
            str(tmp_path),
            *CPU_FLAGS,
            *ONLINE_FLAGS,
        ],
    )
    assert script_args.judge_as == "auto"  # a rotary (Llama) judge has no position table: TRL may load it by path
    trainer = grpo.build_trainer(script_args, training_args)
    assert isinstance(trainer.reward_funcs[0], torch.nn.Module)  # TRL loaded the judge itself
    seen = capture(trainer, "_calculate_rewards")
    trainer.train()
    assert_rewards_match_selfjudge(seen, judge)
    if shape == "conversational":
        assert isinstance(seen[0][0][0], list)
    else:
        assert isinstance(seen[0][0][0], str)


def test_grpo_refuses_a_judge_in_the_wrong_format_unless_reformatting(
    tiny_plain_policy, tiny_judge, prompts_file, tmp_path
):
    from trl import GRPOConfig

    grpo = load_recipe("grpo")
    argv = [
        "--policy",
        tiny_plain_policy,
        "--judge",
        tiny_judge,
        "--dataset",
        prompts_file,
        "--output_dir",
        str(tmp_path),
        *CPU_FLAGS,
        *ONLINE_FLAGS,
    ]
    script_args, training_args = parse("grpo", (JudgeRecipeArguments, GRPOConfig), argv)
    with pytest.raises(SelfJInputError, match="judge_as callable"):
        grpo.build_trainer(script_args, training_args)
    # With the callable, the chat judge gets its chat view of the plain prompts, and GRPO's rewards are its scores.
    types = (JudgeRecipeArguments, GRPOConfig)
    script_args, training_args = parse("grpo", types, [*argv, "--judge_as", "callable", "--judge_dtype", "float32"])
    trainer = grpo.build_trainer(script_args, training_args)
    seen = capture(trainer, "_calculate_rewards")
    trainer.train()
    assert_rewards_match_selfjudge(seen, tiny_judge)


def test_grpo_recipe_main_trains_and_saves(tiny_policy, tiny_judge, prompts_file, tmp_path):
    grpo = load_recipe("grpo")
    argv = [
        "--config",
        str(RECIPES / "grpo" / "grpo.yaml"),
        "--policy",
        tiny_policy,
        "--judge",
        tiny_judge,
        "--dataset",
        prompts_file,
        "--output_dir",
        str(tmp_path / "out"),
        *CPU_FLAGS,
        *ONLINE_FLAGS,
    ]
    assert grpo.main(argv) == 0
    assert (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize("loop", ["grpo", "rloo"])
def test_overlong_punishment_is_a_second_reward_weighed_by_trls_reward_weights(
    loop, tiny_policy, tiny_judge, prompts_file, tmp_path
):
    """--overlong_cache N adds TRL's soft overlong punishment beside the judge; TRL weighs the two by reward_weights."""
    from trl import GRPOConfig, RLOOConfig

    recipe = load_recipe(loop)
    flags = ["--policy", tiny_policy, "--judge", tiny_judge, "--dataset", prompts_file, "--output_dir", str(tmp_path)]
    flags += [*CPU_FLAGS, *ONLINE_FLAGS, "--reward_weights", "1.0", "0.5"]
    script_args, training_args = parse(
        loop, (JudgeRecipeArguments, GRPOConfig if loop == "grpo" else RLOOConfig), flags
    )
    trainer = recipe.build_trainer(script_args, training_args)
    assert len(trainer.reward_funcs) == 2 and trainer.reward_weights.tolist() == [1.0, 0.5]
    LENGTHS.clear()
    seen = capture(trainer, "_calculate_rewards")
    trainer.train()
    judge = SelfJudge.from_pretrained(tiny_judge, device="cpu", dtype="float32")
    for (prompts, completions, rewards), lengths in zip(seen, LENGTHS, strict=True):
        assert rewards.shape[1] == 2
        instructions, responses = as_pairs(prompts, completions)
        assert rewards[:, 0].tolist() == pytest.approx(judge.score(instructions, responses), abs=1e-5)
        # max_completion_length 4, cache 2: 0 up to 2 tokens, -0.5 at 3, -1 at 4
        assert rewards[:, 1].tolist() == [{0: 0.0, 1: 0.0, 2: 0.0, 3: -0.5, 4: -1.0}[n] for n in lengths]
    with pytest.raises(SelfJInputError, match="overlong_cache"):
        recipe.build_trainer(dataclasses.replace(script_args, overlong_cache=9), training_args)


@pytest.mark.parametrize("loop", ["grpo", "rloo"])
def test_reference_cosine_monitor_is_logged_and_never_trained_on(
    loop, tiny_policy, tiny_judge, tiny_embedder, prompts_file, tmp_path
):
    """--monitor_reference_column adds the cosine of each completion to its prompt's reference as a reward of weight
    0: TRL computes and logs it per step (rewards/reference_cosine/mean) beside the trained rewards, whose weights
    the user keeps."""
    from trl import GRPOConfig, RLOOConfig

    from selfj_trl.models import load_embedder
    from selfj_trl.signals.cosine import cosine_similarities

    recipe = load_recipe(loop)
    flags = ["--policy", tiny_policy, "--judge", tiny_judge, "--dataset", prompts_file, "--output_dir", str(tmp_path)]
    flags += [*CPU_FLAGS, *ONLINE_FLAGS, "--reward_weights", "1.0", "0.5"]
    flags += [
        "--monitor_reference_column",
        "reference",
        "--monitor_embedder",
        tiny_embedder,
        "--judge_dtype",
        "float32",
    ]
    config = GRPOConfig if loop == "grpo" else RLOOConfig
    script_args, training_args = parse(loop, (JudgeRecipeArguments, config), flags)
    trainer = recipe.build_trainer(script_args, training_args)
    assert len(trainer.reward_funcs) == 3 and trainer.reward_weights.tolist() == [1.0, 0.5, 0.0]
    seen = capture(trainer, "_calculate_rewards")
    trainer.train()
    reference_of = {r["instruction"]: r["reference"] for r in tiny_instruction_rows(6)}
    embedder = load_embedder(tiny_embedder, dtype="float32")
    for prompts, completions, rewards in seen:
        instructions, responses = as_pairs(prompts, completions)
        expected = cosine_similarities(embedder, responses, [reference_of[i] for i in instructions])
        assert rewards[:, 2].tolist() == pytest.approx(expected, abs=1e-5)
    logged = [e for e in trainer.state.log_history if "rewards/reference_cosine/mean" in e]
    assert logged and all("completions/mean_length" in e for e in logged)
    _, fresh = parse(loop, (JudgeRecipeArguments, config), flags[: flags.index("--reward_weights")] + flags[-6:])
    assert recipe.build_trainer(script_args, fresh).reward_weights.tolist() == [1.0, 1.0, 0.0]
    _, wrong = parse(loop, (JudgeRecipeArguments, config), [*flags, "--reward_weights", "1.0", "0.5", "0.0"])
    with pytest.raises(SelfJInputError, match="reward_weights gives 3 weight"):
        recipe.build_trainer(script_args, wrong)


# ------------------------------------------------------------------------------------------------------------------
# GRPO with an encoder judge (absolute positions) and a 2,000-token completion
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder_judge(tmp_path_factory):
    """A one-layer BERT judge reading at most 64 positions, trained (recorded) at max_length 64, plain format."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = tmp_path_factory.mktemp("encoder_judge")
    words = {w for row in tiny_instruction_rows(6) for w in (row["instruction"] + " " + row["reference"]).split()}
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "#",
        ":",
        ".",
        "?",
        "instruction",
        "response",
        "reference",
        "answer",
        "deep",
        "blue",
        *sorted(words - {"#", ":", ".", "?"}),
    ]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)))
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    tokenizer.save_pretrained(path)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=1,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    model.config.selfj = judge_format_config(tokenizer, chat=False) | {"max_length": 64}
    model.save_pretrained(path, safe_serialization=True)
    write_manifest(path)
    return str(path)


LONG_COMPLETION = " ".join(["the sea is blue and deep ."] * 300)  # 2,100 words and stops


def test_grpo_with_an_encoder_judge_refuses_the_path_and_scores_long_completions_as_callable(
    tiny_plain_policy, encoder_judge, prompts_file, tmp_path
):
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    grpo = load_recipe("grpo")
    types = (JudgeRecipeArguments, GRPOConfig)
    argv = [
        "--policy",
        tiny_plain_policy,
        "--judge",
        encoder_judge,
        "--dataset",
        prompts_file,
        "--output_dir",
        str(tmp_path),
        *CPU_FLAGS,
        *ONLINE_FLAGS,
    ]
    assert len(AutoTokenizer.from_pretrained(encoder_judge)(LONG_COMPLETION)["input_ids"]) > 2000

    def long_completions(trainer, seen):
        original = trainer._calculate_rewards

        def wrapped(inputs, prompts, completions, completion_ids_list):
            rewards = original(inputs, prompts, [LONG_COMPLETION] * len(completions), completion_ids_list)
            seen.append(rewards.detach().clone())
            return rewards

        trainer._calculate_rewards = wrapped

    # What the refusal prevents: TRL feeds a judge given by path the whole text and BERT indexes past 64 positions.
    _, training_args = parse("grpo", types, argv)
    prompts = prompt_dataset(prompts_file, AutoTokenizer.from_pretrained(tiny_plain_policy), max_prompts=4)
    training_args.reward_weights = None  # the judge alone here (the recipe adds a length reward beside it)
    raw = GRPOTrainer(model=tiny_plain_policy, reward_funcs=[encoder_judge], args=training_args, train_dataset=prompts)
    long_completions(raw, [])
    with pytest.raises((IndexError, RuntimeError), match="size|index out of range"):
        raw.train()

    script_args, training_args = parse("grpo", types, [*argv, "--judge_as", "path"])
    with pytest.raises(SelfJInputError, match='reads at most 64 positions.*use `judge_as="callable"`'):
        grpo.build_trainer(script_args, training_args)

    for judge_as in ("auto", "callable"):  # auto (the recipes' default) picks the callable for an encoder judge
        script_args, training_args = parse("grpo", types, [*argv, "--judge_as", judge_as])
        trainer = grpo.build_trainer(script_args, training_args)
        assert not isinstance(trainer.reward_funcs[0], torch.nn.Module)
        seen = []
        long_completions(trainer, seen)
        trainer.train()
        assert seen and torch.isfinite(seen[0]).all()
        judge = SelfJudge.from_pretrained(encoder_judge, device="cpu")
        assert judge.max_length == 64  # the recorded length, not the position limit
        expected = judge.score([tiny_instruction_rows(1)[0]["instruction"]], [LONG_COMPLETION])[0]
        assert math.isfinite(expected)


# ------------------------------------------------------------------------------------------------------------------
# RLOO and online DPO
# ------------------------------------------------------------------------------------------------------------------
def test_rloo_recipe_one_step(tiny_policy, tiny_judge, prompts_file, tmp_path):
    from trl import RLOOConfig

    rloo = load_recipe("rloo")
    script_args, training_args = parse(
        "rloo",
        (JudgeRecipeArguments, RLOOConfig),
        [
            "--policy",
            tiny_policy,
            "--judge",
            tiny_judge,
            "--dataset",
            prompts_file,
            "--output_dir",
            str(tmp_path),
            *CPU_FLAGS,
            *ONLINE_FLAGS,
        ],
    )
    trainer = rloo.build_trainer(script_args, training_args)
    seen = capture(trainer, "_calculate_rewards")
    trainer.train()
    assert trainer.state.global_step == 1
    assert_rewards_match_selfjudge(seen, tiny_judge)


def test_online_dpo_recipe_one_step(tiny_policy, tiny_judge, prompts_file, tmp_path):
    from trl.experimental.online_dpo import OnlineDPOConfig

    online_dpo = load_recipe("online_dpo")
    script_args, training_args = parse(
        "online_dpo",
        (JudgeRecipeArguments, OnlineDPOConfig),
        [
            "--policy",
            tiny_policy,
            "--judge",
            tiny_judge,
            "--dataset",
            prompts_file,
            "--output_dir",
            str(tmp_path),
            "--per_device_train_batch_size",
            "2",
            "--max_new_tokens",
            "4",
            "--max_prompts",
            "4",
            *CPU_FLAGS,
        ],
    )
    with pytest.raises(SelfJInputError, match="are for GRPO and RLOO"):
        online_dpo.build_trainer(dataclasses.replace(script_args, overlong_cache=2), training_args)
    trainer = online_dpo.build_trainer(script_args, training_args)
    seen = capture(trainer, "_calculate_rewards_from_functions")
    trainer.train()
    assert trainer.state.global_step == 1
    assert_rewards_match_selfjudge(seen, tiny_judge)


# ------------------------------------------------------------------------------------------------------------------
# Offline DPO on best-of-n pairs, and best-of-n evaluation
# ------------------------------------------------------------------------------------------------------------------
def test_dpo_recipe_builds_pairs_with_the_judge_and_trains(tiny_policy, tiny_judge, prompts_file, tmp_path):
    from trl import DPOConfig

    dpo = load_recipe("dpo")
    script_args, training_args = parse(
        "dpo",
        (dpo.DPORecipeArguments, DPOConfig),
        [
            "--policy",
            tiny_policy,
            "--judge",
            tiny_judge,
            "--dataset",
            prompts_file,
            "--output_dir",
            str(tmp_path),
            "--n",
            "3",
            "--max_new_tokens",
            "4",
            "--max_prompts",
            "4",
            "--min_gap",
            "0.0",
            "--per_device_train_batch_size",
            "2",
            "--max_length",
            "64",
            *CPU_FLAGS,
        ],
    )
    trainer = dpo.build_trainer(script_args, training_args)
    table = load_from_disk(str(tmp_path / "best_of_n"))
    pairs = load_from_disk(str(tmp_path / "pairs"))
    assert len(table) == 4 and 0 < len(pairs) <= 4
    assert all(c > r for c, r in zip(pairs["score_chosen"], pairs["score_rejected"], strict=True))
    trainer.train()
    assert trainer.state.global_step == 1
    # Re-running on the saved pairs skips sampling.
    script_args.pairs = str(tmp_path / "pairs")
    assert len(dpo.make_pairs(script_args, 0, str(tmp_path / "unused"))) == len(pairs)


def test_best_of_n_recipe(tiny_policy, tiny_judge, prompts_file, tmp_path, capsys):
    recipe = load_recipe("best_of_n")
    argv = [
        "--config",
        str(RECIPES / "best_of_n" / "best_of_n.yaml"),
        "--policy",
        tiny_policy,
        "--judge",
        tiny_judge,
        "--dataset",
        prompts_file,
        "--output_dir",
        str(tmp_path / "bon"),
        "--n",
        "2",
        "--max_new_tokens",
        "4",
        "--max_prompts",
        "3",
        "--device",
        "cpu",
        "--dpo_pairs_dir",
        str(tmp_path / "pairs"),
        "--min_gap",
        "0.0",
    ]
    assert recipe.main(argv) == 0
    summary = json.loads((tmp_path / "bon" / "summary.json").read_text())
    assert summary["prompts"] == 3 and summary["n"] == 2
    assert summary["mean_best_score"] >= summary["mean_first_score"]
    assert "best_of_n_gain" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------------------
# Every recipe with its YAML defaults, as a user runs it on this machine: label -> train -> the loops, overriding
# only the model/judge/dataset paths and step counts (no --bf16/--use_cpu by hand on a CPU machine)
# ------------------------------------------------------------------------------------------------------------------
def test_recipe_parsing_takes_precision_and_device_from_the_machine(tmp_path, monkeypatch):
    from trl import GRPOConfig

    from selfj_trl.models import native_bf16
    from selfj_trl.recipes import hardware_defaults, parse_recipe_args
    from selfj_trl.trainer import config as trainer_config

    argv = ["--config", str(RECIPES / "grpo" / "grpo.yaml"), "--output_dir", str(tmp_path)]
    _, args = parse_recipe_args((JudgeRecipeArguments, GRPOConfig), argv)
    if not trainer_config.accelerator_available(use_cpu=False):
        assert args.use_cpu and not args.activation_checkpointing
        assert args.bf16 is native_bf16("cpu")  # bf16 autocast where the CPU multiplies bf16 in hardware
    _, args = parse_recipe_args((JudgeRecipeArguments, GRPOConfig), [*argv, "--logging_steps", "3"])
    assert args.logging_steps == 3  # the YAML and flags still decide what they set
    monkeypatch.setattr(trainer_config, "accelerator_available", lambda use_cpu: True)
    on_gpu = hardware_defaults()
    assert not on_gpu["use_cpu"] and on_gpu["activation_checkpointing"]
    assert on_gpu["bf16"] == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())


@pytest.mark.parametrize(
    "name, flag, value",
    [
        ("grpo", "--temperature", "-1"),
        ("rloo", "--learning_rate", "nan"),
        ("online_dpo", "--max_prompts", "0"),
        ("dpo", "--seed", "-3"),
        ("grpo", "--judge", ""),
        ("rloo", "--num_train_epochs", "many"),
    ],
)
def test_loop_recipes_refuse_a_bad_flag_in_one_line_with_exit_2(name, flag, value, tmp_path, capsys):
    """The recipes parse through selfj_trl.flags as the commands do: a bad value never reaches a traceback."""
    from selfj_trl.cli import run_main

    recipe = load_recipe(name)
    argv = ["--config", str(RECIPES / name / f"{name}.yaml"), "--output_dir", str(tmp_path / "out"), flag, value]
    assert run_main(recipe.main, argv, prog=name) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag.lstrip("-") in err[0], err


STEPS = ["--max_steps", "1"]


@pytest.fixture(scope="module")
def recipe_data(tmp_path_factory):
    """Prompts in the layout the label recipes read (an AlpacaEval-style file with a split column, and Self-Instruct
    seed tasks with instances), and the tiny models that stand in for the recipes' offline ones."""
    root = tmp_path_factory.mktemp("recipe_defaults")
    rows = tiny_instruction_rows(6)
    alpaca = root / "instructions.jsonl"
    alpaca.write_text("".join(json.dumps({**r, "split": "train"}) + "\n" for r in rows))
    seed = root / "seed_tasks.jsonl"
    seed.write_text(
        "".join(
            json.dumps({"instruction": r["instruction"], "instances": [{"input": "", "output": r["reference"]}]})
            + "\n"
            for r in rows
        )
    )
    from selfj_trl.testing import make_tiny_embedder

    embedder = make_tiny_embedder(root / "embedder")
    return {
        "root": root,
        "alpaca": str(alpaca),
        "seed": str(seed),
        "embedder": str(embedder),
        "policy": str(make_tiny_llama(root / "policy", kind="causal", chat=True)),
        "bert": str(embedder / "bert"),
    }


#: The label recipes that read one file (the pool and fitted ones read the AlpacaEval folder of ../shared/data);
#: the seed-tasks recipes differ only in their policy, so one of them stands for both.
LABEL_RECIPES = [
    ("gemma-3-270m", "config_alpaca_train", "alpaca"),
    ("smollm2-135m-instruct", "config_alpaca_train", "alpaca"),
    ("gemma-3-270m", "config_seed_tasks", "seed"),
]


@pytest.fixture(scope="module")
def labeled(recipe_data):
    """Every label recipe that reads a file, run with its YAML: one labeled folder per recipe."""
    from selfj_trl.labeling import main as label_main

    out = {}
    for model, name, data in LABEL_RECIPES:
        folder = recipe_data["root"] / "labeled" / f"{model}-{name}"
        assert (
            label_main(
                [
                    "--config",
                    str(RECIPES / model / "label" / f"{name}.yaml"),
                    "--dataset_name",
                    recipe_data[data],
                    "--policy",
                    recipe_data["policy"],
                    "--embedder",
                    recipe_data["embedder"],
                    "--output_dir",
                    str(folder),
                ]
            )
            == 0
        )
        out[(model, name)] = folder
    return out


def test_label_recipes_run_with_their_yaml_defaults(labeled):
    for (model, name), folder in labeled.items():
        table = load_from_disk(str(folder))
        assert len(table) == 6 * 2, (model, name)  # 6 instructions x the recipe's num_samples: 2
        assert all(0 <= x <= 9 for x in table["label"])


@pytest.fixture(scope="module")
def trained_judges(recipe_data, labeled):
    """The three train recipes, one optimizer step each, on the labels of the matching label recipe."""
    from selfj_trl.trainer.script import main as train_main

    bases = {
        "all-minilm-l6-v2": recipe_data["bert"],
        "gemma-3-270m": recipe_data["policy"],
        "smollm2-135m-instruct": recipe_data["policy"],
    }
    judges = {}
    for model, base in bases.items():
        data = labeled[("smollm2-135m-instruct" if model == "all-minilm-l6-v2" else model, "config_alpaca_train")]
        out = recipe_data["root"] / "judges" / model
        assert (
            train_main(
                [
                    "--config",
                    str(RECIPES / model / "train" / "config_judge.yaml"),
                    "--model_name_or_path",
                    base,
                    "--dataset_name",
                    str(data),
                    "--output_dir",
                    str(out),
                    *STEPS,
                ]
            )
            == 0
        )
        judges[model] = str(out)
    return judges


def test_train_recipes_run_with_their_yaml_defaults(trained_judges):
    for model, folder in trained_judges.items():
        judge = SelfJudge.from_pretrained(folder, device="cpu")
        scores = judge.score(["what is two plus two ?"], ["the answer is four"])
        assert math.isfinite(scores[0]), model
    assert AutoConfig.from_pretrained(trained_judges["smollm2-135m-instruct"]).selfj["format"] == "chat"


@pytest.mark.parametrize("name", ["grpo", "rloo", "online_dpo", "dpo"])
def test_loop_recipes_run_with_their_yaml_defaults(name, recipe_data, trained_judges, tmp_path):
    """The chat policy of the recipes (SmolLM2's stand-in) with the chat judge its train recipe wrote."""
    recipe = load_recipe(name)
    argv = [
        "--config",
        str(RECIPES / name / f"{name}.yaml"),
        "--policy",
        recipe_data["policy"],
        "--judge",
        trained_judges["smollm2-135m-instruct"],
        "--dataset",
        recipe_data["alpaca"],
        "--output_dir",
        str(tmp_path / "out"),
        *STEPS,
    ]
    assert recipe.main(argv) == 0
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_best_of_n_recipe_runs_with_its_yaml_defaults(recipe_data, trained_judges, tmp_path):
    recipe = load_recipe("best_of_n")
    argv = [
        "--config",
        str(RECIPES / "best_of_n" / "best_of_n.yaml"),
        "--policy",
        recipe_data["policy"],
        "--judge",
        trained_judges["smollm2-135m-instruct"],
        "--dataset",
        recipe_data["alpaca"],
        "--output_dir",
        str(tmp_path / "bon"),
        "--dpo_pairs_dir",
        str(tmp_path / "pairs"),
    ]
    assert recipe.main(argv) == 0
    summary = json.loads((tmp_path / "bon" / "summary.json").read_text())
    assert summary["prompts"] == 6 and summary["n"] == 8  # the YAML's n
