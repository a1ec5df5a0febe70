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


def test_a_decoder_judge_read_as_openrlhfs_reward_loader_reads_it_scores_as_selfjudge(tiny_judge):
    """OpenRLHF's PPO reward model (``get_llm_for_sequence_regression``, ``--value_head_prefix score``): the backbone
    under the model's ``base_model_prefix``, a bias-free ``score`` linear over the last hidden states, the value at
    the last attended position, positions counted over the attention mask. Rebuilt here from that description (OpenRLHF is not installed) over a saved judge."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    from selfj_trl.judge import SelfJudge

    judge = SelfJudge.from_pretrained(tiny_judge, device="cpu", dtype="float32")
    config = AutoConfig.from_pretrained(tiny_judge)
    backbone = AutoModel.from_pretrained(tiny_judge).eval()  # the `model.` weights of the judge's checkpoint
    weights = load_file(f"{tiny_judge}/model.safetensors")
    head = torch.nn.Linear(config.hidden_size, 1, bias=False)
    head.weight.data = weights["score.weight"].float()
    texts = [judge.format("what is two plus two ?", r) for r in ("four", "the answer is four , yes")]
    enc = judge.tokenizer(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    mask = enc["attention_mask"]
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
    with torch.no_grad():
        hidden = backbone(enc["input_ids"], attention_mask=mask, position_ids=positions)["last_hidden_state"]
        values = head(hidden).squeeze(-1)
    last = mask.size(1) - 1 - mask.long().fliplr().argmax(dim=1, keepdim=True)
    rewards = values.gather(dim=1, index=last).squeeze(1)
    assert mask[0].sum() < mask[1].sum()  # the first text is padded: the value is read before its padding
    assert rewards.tolist() == pytest.approx(judge.score_texts(texts), abs=1e-5)
