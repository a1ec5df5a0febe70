"""TRL glue: prompt datasets in the policy's format, and reward_funcs that refuse a judge in the wrong format."""

from __future__ import annotations

import json

import pytest

from selfj_trl.errors import SelfJInputError
from selfj_trl.prompts import PLAIN_PROMPT_TEMPLATE
from selfj_trl.rewards import judge_format, judge_reward_funcs, prompt_dataset
from selfj_trl.testing import make_tokenizer, tiny_instruction_rows


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in tiny_instruction_rows(4)))
    return str(path)


def test_prompt_dataset_follows_the_policy_format(prompts_file):
    rows = tiny_instruction_rows(4)
    chat = prompt_dataset(prompts_file, make_tokenizer(chat=True), max_prompts=3)
    assert chat["prompt"] == [[{"role": "user", "content": r["instruction"]}] for r in rows[:3]]
    plain = prompt_dataset(prompts_file, make_tokenizer(chat=False))
    assert plain["prompt"] == [PLAIN_PROMPT_TEMPLATE.format(instruction=r["instruction"]) for r in rows]
    with pytest.raises(SelfJInputError, match="--prompt_column"):
        prompt_dataset(prompts_file, make_tokenizer(chat=False), prompt_column="question")


def test_judge_reward_funcs_by_path_checks_the_format(tiny_judge):
    assert judge_format(tiny_judge) == "chat"
    assert judge_reward_funcs(tiny_judge, conversational=True) == [tiny_judge]
    with pytest.raises(SelfJInputError, match="judge_as callable"):
        judge_reward_funcs(tiny_judge, conversational=False)
    (reward,) = judge_reward_funcs(tiny_judge, conversational=False, judge_as="callable")
    assert reward.__name__ == "selfj_judge"
    with pytest.raises(SelfJInputError, match="judge_as"):
        judge_reward_funcs(tiny_judge, conversational=True, judge_as="module")


def test_absolute_position_limit_tells_encoders_from_rotary_decoders():
    """TRL passes reward models given by path the whole text: only a position TABLE can overflow."""
    from transformers import BertConfig, GPT2Config, LlamaConfig

    from selfj_trl.rewards import absolute_position_limit

    assert absolute_position_limit(BertConfig(max_position_embeddings=512)) == 512
    assert absolute_position_limit(GPT2Config(n_positions=1024)) == 1024
    assert absolute_position_limit(LlamaConfig()) is None
