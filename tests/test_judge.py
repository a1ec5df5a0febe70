"""SelfJudge: same numbers as the raw model, batch-invariant, TRL-compatible reward callable, selective following."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from selfj_trl.errors import SelfJInputError
from selfj_trl.io import write_manifest
from selfj_trl.judge import SelfJudge
from selfj_trl.judge_views import format_student_view, format_teacher_view, judge_format_config, tokenize_view
from selfj_trl.prompts import PLAIN_PROMPT_TEMPLATE
from selfj_trl.testing import make_tiny_llama


INSTRUCTIONS = [
    "write a short poem about the sea",
    "what is two plus two ?",
    "hello world",
    "rate the answer from 0 to 9",
    "one two three",
    "what is the answer ?",
    "a b c d e f g h i j k l m n o p",
]
RESPONSES = [
    "the sea is blue and deep . the sea is blue and deep . the sea is blue",
    "four",
    "",
    "rating : 7",
    "four five six seven eight nine ten",
    "the answer is good",
    "q r s t u v w x y z",
]


@pytest.fixture(scope="module")
def judge(tiny_judge):
    return SelfJudge.from_pretrained(tiny_judge, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def raw(tiny_judge):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_judge, num_labels=1).eval()
    return model, AutoTokenizer.from_pretrained(tiny_judge)


@pytest.fixture(scope="module")
def plain_judge_path(tmp_path_factory):
    path = make_tiny_llama(tmp_path_factory.mktemp("plain_judge"), kind="seqcls", chat=False, seed=1)
    config = AutoConfig.from_pretrained(path)
    config.selfj = judge_format_config(AutoTokenizer.from_pretrained(path))
    config.save_pretrained(path)
    write_manifest(path)
    return str(path)


def _raw_logit(raw, text: str, max_length: int | None = None) -> float:
    model, tokenizer = raw
    ids = tokenize_view(tokenizer, text, max_length)
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


def test_score_equals_raw_model_logit(judge, raw):
    scores = judge.score(INSTRUCTIONS, RESPONSES, batch_size=4)
    _, tokenizer = raw
    for instruction, response, score in zip(INSTRUCTIONS, RESPONSES, scores, strict=True):
        expected = _raw_logit(raw, format_student_view(tokenizer, instruction, response))
        assert score == pytest.approx(expected, abs=1e-5)


def test_references_score_the_teacher_view(judge, raw):
    refs = ["the sea is blue"] * len(INSTRUCTIONS)
    with_ref = judge.score(INSTRUCTIONS, RESPONSES, references=refs)
    _, tokenizer = raw
    for i, score in enumerate(with_ref):
        expected = _raw_logit(raw, format_teacher_view(tokenizer, INSTRUCTIONS[i], RESPONSES[i], refs[i]))
        assert score == pytest.approx(expected, abs=1e-5)
    assert with_ref != judge.score(INSTRUCTIONS, RESPONSES)


#: bf16 keeps 8 significant bits: a score near 0.1 moves in steps of 2**-11 (~0.0005). Batching and padding may
#: change one rounding step or two; the bf16 weights themselves move a score by about 1% of its size.
BF16_BATCH_TOLERANCE = 1e-3
BF16_VS_FP32_TOLERANCE = 5e-3


def test_auto_dtype_is_bf16_on_a_bf16_cpu_and_stays_batch_invariant_within_a_rounding_step(tiny_judge, judge):
    from selfj_trl.models import native_bf16

    auto = SelfJudge.from_pretrained(tiny_judge, device="cpu")
    assert auto.model.dtype == (torch.bfloat16 if native_bf16("cpu") else torch.float32)
    bf16 = SelfJudge.from_pretrained(tiny_judge, device="cpu", dtype="bfloat16")
    assert bf16.model.dtype == torch.bfloat16
    reference = bf16.score(INSTRUCTIONS, RESPONSES, batch_size=1)
    assert all(isinstance(x, float) for x in reference)
    for batch_size in (2, 3, 16):
        scores = bf16.score(INSTRUCTIONS, RESPONSES, batch_size=batch_size)
        assert scores == pytest.approx(reference, abs=BF16_BATCH_TOLERANCE)
    exact = judge.score(INSTRUCTIONS, RESPONSES, batch_size=1)
    assert reference == pytest.approx(exact, abs=BF16_VS_FP32_TOLERANCE)
    assert reference != exact  # bf16 really ran: the fp32 path is the exact one


def test_batch_size_order_and_padding_do_not_change_scores(judge):
    reference = judge.score(INSTRUCTIONS, RESPONSES, batch_size=1)
    for batch_size in (2, 3, 16):
        assert judge.score(INSTRUCTIONS, RESPONSES, batch_size=batch_size) == pytest.approx(reference, abs=1e-5)
    order = list(range(len(INSTRUCTIONS)))
    random.Random(0).shuffle(order)
    shuffled = judge.score([INSTRUCTIONS[i] for i in order], [RESPONSES[i] for i in order], batch_size=3)
    assert shuffled == pytest.approx([reference[i] for i in order], abs=1e-5)
    # A short pair next to a very long one (lots of padding) scores as it does alone.
    long_pair = judge.score([INSTRUCTIONS[0], INSTRUCTIONS[1]], [" ".join(["the sea"] * 100), RESPONSES[1]])
    assert long_pair[1] == pytest.approx(reference[1], abs=1e-5)


def test_score_texts_matches_score_and_keeps_the_start_of_long_texts(tiny_judge, judge, raw):
    # Over-long texts keep their START (the instruction; a BERT judge's pooled position 0), not their end.
    _, tokenizer = raw
    texts = [format_student_view(tokenizer, i, r) for i, r in zip(INSTRUCTIONS, RESPONSES, strict=True)]
    assert judge.score_texts(texts) == pytest.approx(judge.score(INSTRUCTIONS, RESPONSES), abs=1e-6)
    short = SelfJudge.from_pretrained(tiny_judge, device="cpu", max_length=6, dtype="float32")
    assert short.max_length == 6
    assert short.score_texts(texts[:1])[0] == pytest.approx(_raw_logit(raw, texts[0], max_length=6), abs=1e-5)
    start = tokenizer(texts[0], add_special_tokens=False)["input_ids"][:6]
    assert short.score_texts(texts[:1])[0] == pytest.approx(
        raw[0](input_ids=torch.tensor([start])).logits[0, 0].item(), abs=1e-5
    )
    assert judge.max_length == 512  # no recorded max_length: the tiny Llama's max_position_embeddings


def _with_recorded_length(tmp_path, chat: bool, max_length: int) -> str:
    path = make_tiny_llama(tmp_path / f"judge_{chat}_{max_length}", kind="seqcls", chat=chat, seed=1)
    config = AutoConfig.from_pretrained(path)
    config.selfj = judge_format_config(AutoTokenizer.from_pretrained(path), chat=chat) | {"max_length": max_length}
    config.save_pretrained(path)
    write_manifest(path)
    return str(path)


@pytest.mark.parametrize("chat", [True, False])
def test_the_recorded_training_length_is_the_length_every_entry_point_uses(tmp_path, chat):
    """The judge trained at max_length N must score at N (it used the model's position limit, 512)."""
    judge = SelfJudge.from_pretrained(_with_recorded_length(tmp_path, chat, 40), device="cpu")
    assert judge.max_length == 40

    from selfj_trl.judge_views import build_views

    model, tokenizer = judge.model, judge.tokenizer
    long = " ".join(["the sea is blue and deep ."] * 20)
    ref = " ".join(["good hello world one two three"] * 5)
    views = build_views(tokenizer, INSTRUCTIONS[0], long, ref, chat=chat, max_length=40)
    assert views.response_cut and views.reference_cut and len(views.teacher) <= 40

    def logit(ids):
        with torch.inference_mode():
            return model(input_ids=torch.tensor([ids])).logits[0, 0].item()

    assert judge.score([INSTRUCTIONS[0]], [long])[0] == pytest.approx(logit(views.student), abs=1e-5)
    with_ref = judge.score([INSTRUCTIONS[0]], [long], references=[ref])[0]
    assert with_ref == pytest.approx(logit(views.teacher), abs=1e-5)
    # The reward callable, for every prompt shape GRPO hands it, reads the same cut view.
    reward = judge.as_reward_func()
    if chat:
        got = reward([[{"role": "user", "content": INSTRUCTIONS[0]}]], [[{"role": "assistant", "content": long}]])
    else:
        got = reward([PLAIN_PROMPT_TEMPLATE.format(instruction=INSTRUCTIONS[0])], [long])
        # a formatted plain text (OpenRLHF's query, the server's teacher view) is split and cut by the same rule
        assert judge.score_texts([judge.format(INSTRUCTIONS[0], long, ref)])[0] == pytest.approx(with_ref, abs=1e-5)
    assert got[0] == pytest.approx(logit(views.student), abs=1e-5)
    assert SelfJudge.from_pretrained(judge.model.config._name_or_path, max_length=24).max_length == 24


def test_empty_response_is_scored(judge):
    (score,) = judge.score(["hello world"], [""])
    assert math.isfinite(score)


@pytest.mark.parametrize(
    ("instructions", "responses", "references", "field"),
    [
        (["hello world", "one"], ["good"], None, "responses"),
        (["hello world", None], ["good", "bad"], None, "instructions[1]"),
        (["hello world"], [3], None, "responses[0]"),
        ([""], ["good"], None, "instructions[0]"),
        (["hello world"], ["good"], ["a", "b"], "references"),
        (["hello world"], ["good"], [None], "references[0]"),
        (None, ["good"], None, "instructions"),
    ],
)
def test_bad_inputs_raise_naming_the_field(judge, instructions, responses, references, field):
    with pytest.raises(SelfJInputError, match=field.replace("[", r"\[").replace("]", r"\]")):
        judge.score(instructions, responses, references=references)


def test_bad_batch_size_and_missing_judge_raise(judge, tmp_path):
    with pytest.raises(SelfJInputError, match="batch_size"):
        judge.score(["hello world"], ["good"], batch_size=0)
    with pytest.raises(SelfJInputError, match="does not exist"):
        SelfJudge.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(SelfJInputError, match="does not exist"):
        SelfJudge.from_pretrained("outputs/missing/judge")  # a relative path, not an "org/name" Hub id
    with pytest.raises(SelfJInputError, match="no config.json"):
        SelfJudge.from_pretrained(str(tmp_path))


def test_format_comes_from_config_then_template(tiny_judge, plain_judge_path, tmp_path):
    assert SelfJudge.from_pretrained(tiny_judge, device="cpu").chat is True
    plain = SelfJudge.from_pretrained(plain_judge_path, device="cpu")
    assert plain.chat is False
    assert plain.format("hello world", "good") == PLAIN_PROMPT_TEMPLATE.format(instruction="hello world") + "good"
    # a chat tokenizer whose config says "plain" is scored in the plain format
    path = make_tiny_llama(tmp_path / "j", kind="seqcls", chat=True)
    config = AutoConfig.from_pretrained(path)
    config.selfj = judge_format_config(AutoTokenizer.from_pretrained(path), chat=False)
    config.save_pretrained(path)
    write_manifest(path)
    assert SelfJudge.from_pretrained(str(path), device="cpu").chat is False


def test_missing_pad_token_falls_back_to_eos(tiny_judge):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_judge, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_judge)
    tokenizer.pad_token = None
    judge = SelfJudge(model, tokenizer)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == model.config.pad_token_id
    assert len(judge.score(INSTRUCTIONS[:3], RESPONSES[:3], batch_size=3)) == 3


def test_reward_func_matches_score_for_every_prompt_shape(judge, plain_judge_path):
    reward = judge.as_reward_func()
    assert reward.__name__ == "selfj_judge"
    expected = judge.score(INSTRUCTIONS, RESPONSES)
    conversational = reward(
        prompts=[[{"role": "user", "content": i}] for i in INSTRUCTIONS],
        completions=[[{"role": "assistant", "content": r}] for r in RESPONSES],
        completion_ids=None,
        trainer_state=None,
    )
    assert conversational == pytest.approx(expected, abs=1e-5)
    plain_template = reward([PLAIN_PROMPT_TEMPLATE.format(instruction=i) for i in INSTRUCTIONS], RESPONSES)
    assert plain_template == pytest.approx(expected, abs=1e-5)  # the chat judge still gets its chat view
    other = reward(["hello world :", "one two"], [" good", " three"])
    assert other == pytest.approx(judge.score_texts(["hello world : good", "one two three"]), abs=1e-5)
    plain = SelfJudge.from_pretrained(plain_judge_path, device="cpu")
    plain_reward = plain.as_reward_func(name="plain_judge")
    assert plain_reward.__name__ == "plain_judge"
    via_messages = plain_reward(
        [[{"role": "system", "content": "be good"}, {"role": "user", "content": i}] for i in INSTRUCTIONS],
        [[{"role": "assistant", "content": r}] for r in RESPONSES],
    )
    assert via_messages == pytest.approx(plain.score(INSTRUCTIONS, RESPONSES), abs=1e-5)


def test_decide_and_follow(judge):
    (score,) = judge.score(["hello world"], ["good"])
    assert judge.decide("hello world", "good", score - 1e-3) == {
        "decision": "answer",
        "score": pytest.approx(score, abs=1e-6),
        "threshold": score - 1e-3,
    }
    assert judge.decide("hello world", "good", score + 1e-3)["decision"] == "decline"
    assert judge.follow("hello world", "good", score - 1e-3) == "good"
    declined = judge.follow(["hello world", "hello world"], ["good", "good"], score + 1e-3, decline_message="no")
    assert declined == ["no", "no"]
    with pytest.raises(SelfJInputError, match="threshold"):
        judge.decide("hello world", "good", "high")


def test_adapter_style_judge_reads_its_format_from_selfj_json(tmp_path):
    """Judges saved as unmerged LoRA adapters keep config.selfj in selfj.json; SelfJudge must honour it."""
    folder = make_tiny_llama(tmp_path / "judge", kind="seqcls", chat=True)  # tokenizer has a chat template
    (folder / "selfj.json").write_text(json.dumps({"format": "plain", "score_scale": [0, 1]}))
    write_manifest(folder)
    judge = SelfJudge.from_pretrained(str(folder))
    assert judge.chat is False
    assert judge.format("what is two plus two ?", "four").startswith("### Instruction:")


def test_follow_keeps_whole_responses_for_lists(judge):
    (score,) = judge.score(["hello world"], ["good"])
    assert judge.follow(["hello world"], "good", score - 1e-3) == ["good"]  # one response, not its characters
    assert judge.follow(["hello world", "hello world"], ["good", "bad"], -1e9) == ["good", "bad"]


def test_a_bare_name_that_is_neither_a_folder_nor_a_hub_id_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SelfJInputError, match="does not exist"):
        SelfJudge.from_pretrained("my_judge")  # a relative folder name, not an "org/name" Hub id


# ---------------------------------------------------------------------------------------------------------------
# Half-written judges: refused in one line, never loaded
# ---------------------------------------------------------------------------------------------------------------
def _copy(tiny_judge, tmp_path):
    import shutil

    return shutil.copytree(tiny_judge, tmp_path / "judge")


@pytest.mark.parametrize("damage", ["no_tokenizer", "truncated_weights", "no_marker", "torn_config"])
def test_a_half_written_judge_is_refused_in_one_line(tiny_judge, tmp_path, damage):
    folder = _copy(tiny_judge, tmp_path)
    if damage == "no_tokenizer":  # killed before tokenizer.json: every word would become <unk>
        (folder / "tokenizer.json").unlink()
    elif damage == "truncated_weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "no_marker":
        (folder / "selfj_complete.json").unlink()
    else:
        (folder / "config.json").write_text('{"selfj": {"format": ')
    with pytest.raises(SelfJInputError) as err:
        SelfJudge.from_pretrained(str(folder), device="cpu")
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "incomplete" in message and "rerun training" in message
    if damage == "no_tokenizer":
        assert "tokenizer.json is missing" in message
    if damage == "truncated_weights":
        assert "model.safetensors has" in message


def test_a_sequence_classifier_without_a_selfj_section_needs_no_marker(tmp_path):
    folder = make_tiny_llama(tmp_path / "plain_cls", kind="seqcls", chat=True)
    assert not (folder / "selfj_complete.json").exists()
    assert SelfJudge.from_pretrained(str(folder), device="cpu").score(["hello world"], ["good"])


def _save_tiny_judge(stage, selfj_extra=None):
    """What SelfJRewardTrainer.save_judge writes into the staging folder: weights, tokenizer, then the judge files."""
    from selfj_trl.trainer.publish import write_judge_files

    made = make_tiny_llama(stage, kind="seqcls", chat=True, seed=2)
    config = AutoConfig.from_pretrained(made)
    selfj = judge_format_config(AutoTokenizer.from_pretrained(made)) | {
        "base_model": "tiny",
        "lora": None,
        **(selfj_extra or {}),
    }
    config.selfj = selfj
    config.save_pretrained(made)
    write_judge_files(made, selfj, judge_repo=None)


def test_staged_save_swaps_the_judge_in_and_keeps_the_rest_of_output_dir(tmp_path):
    from selfj_trl.trainer.publish import STAGING_NAME, staged_judge

    out = tmp_path / "run"
    (out / "checkpoint-3").mkdir(parents=True)
    (out / "checkpoint-3" / "optimizer.pt").write_bytes(b"state")
    (out / "trainer_state.json").write_text("{}")
    (out / "adapter_model.safetensors").write_bytes(b"stale adapter from an earlier run")
    with staged_judge(out) as stage:
        assert stage.parent == out  # same filesystem: the moves are renames
        _save_tiny_judge(stage)
        assert not (out / "selfj_complete.json").exists()  # nothing in place until the block ends
    assert not (out / STAGING_NAME).exists()
    assert (out / "checkpoint-3" / "optimizer.pt").read_bytes() == b"state" and (out / "trainer_state.json").exists()
    assert not (out / "adapter_model.safetensors").exists()  # the other kind of weights would shadow the judge
    marker = json.loads((out / "selfj_complete.json").read_text())["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "selfj.json"} <= set(marker)
    assert not any(name.startswith(("checkpoint-", "README", "trainer_state")) for name in marker)
    assert SelfJudge.from_pretrained(str(out), device="cpu").score(["hello world"], ["good"])


def test_a_save_killed_at_any_point_leaves_the_old_judge_or_a_refused_folder(tmp_path, monkeypatch):
    """Simulated kills: inside the block (old judge untouched and loadable) and at every rename of the swap."""
    import os as os_module

    from selfj_trl.io import check_complete
    from selfj_trl.trainer.publish import staged_judge

    out = tmp_path / "run"
    with staged_judge(out) as stage:
        _save_tiny_judge(stage)
    old = SelfJudge.from_pretrained(str(out), device="cpu").score(["hello world"], ["good"])

    class Killed(BaseException):
        pass

    with pytest.raises(Killed), staged_judge(out) as stage:
        _save_tiny_judge(stage, {"max_length": 64})
        raise Killed  # killed while writing the new judge
    assert SelfJudge.from_pretrained(str(out), device="cpu").score(["hello world"], ["good"]) == old

    real_replace, outcomes = os_module.replace, []
    for kill_at in range(100):  # every rename of the save (staging writes, the swap, the marker), one kill each
        calls = []

        def replace(src, dst, _kill_at=kill_at, _calls=calls):
            if len(_calls) == _kill_at:
                raise Killed
            _calls.append(dst)
            return real_replace(src, dst)

        monkeypatch.setattr(os_module, "replace", replace)
        try:
            with staged_judge(out) as stage:
                _save_tiny_judge(stage, {"max_length": 64})
        except Killed:
            monkeypatch.setattr(os_module, "replace", real_replace)
            if check_complete(out, "judge"):
                with pytest.raises(SelfJInputError, match="incomplete"):
                    SelfJudge.from_pretrained(str(out), device="cpu")
                outcomes.append("refused")
            else:  # complete: the old judge (killed before the swap) or the new one
                outcomes.append(SelfJudge.from_pretrained(str(out), device="cpu").max_length)
            continue
        monkeypatch.setattr(os_module, "replace", real_replace)
        break
    assert SelfJudge.from_pretrained(str(out), device="cpu").max_length == 64
    assert "refused" in outcomes and 512 in outcomes and len(outcomes) > 5  # both kinds of kill were tried
    with staged_judge(out) as stage:  # and rerunning the save finishes the folder
        _save_tiny_judge(stage, {"max_length": 64})
    assert SelfJudge.from_pretrained(str(out), device="cpu").max_length == 64
