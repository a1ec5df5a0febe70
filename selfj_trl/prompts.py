"""Every text the models see, in one place.

Labeling (the policy judging its own samples), training (the judge's teacher and student views) and use (scoring,
serving, GRPO) all format their inputs here. A reward model that was trained on one format and is fed another at use
time quietly gives wrong rewards, so nothing else in the package builds a prompt by hand.

The student view is byte-for-byte what TRL's online trainers (GRPO, RLOO, online DPO) build before they call a
reward model: ``prompt + completion`` for plain text, and the tokenizer's chat template over
``[user, assistant]`` for conversations; it is tokenized with ``add_special_tokens=False`` as they do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import SelfJInputError

DIGITS = "0123456789"

#: Plain prompt for policies and judges without a chat template (e.g. the base Gemma 3 270M, BERT-style encoders).
PLAIN_PROMPT_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"

#: Prepended to the student view to make the teacher view (a preamble turn for chat judges).
TEACHER_PREAMBLE = "A reference answer written by an expert:\n{reference}\n\nJudge the answer below against it."

#: Key under which a judge's ``config.json`` records how its inputs are formatted (see :func:`judge_format_config`).
JUDGE_CONFIG_KEY = "selfj"

#: Reference-guided self-evaluation prompt (stage 1). ``{reference_block}`` is empty for the reference-free baseline.
JUDGE_PROMPT_TEMPLATE = (
    "Rate how well the answer follows the instruction{ref_hint}. "
    "Use one digit from 0 (useless or wrong) to 9 (excellent, complete and correct).\n\n"
    "### Instruction:\n{instruction}\n\n"
    "{reference_block}"
    "### Answer:\n{response}\n\n"
    "### Rating (0-9):"
)
_REFERENCE_BLOCK = "### Reference answer:\n{reference}\n\n"
_REF_HINT = ", comparing it with the reference answer"


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def check_text(value: Any, field: str, *, allow_empty: bool = False) -> str:
    """Return ``value`` if it is a usable string, else raise an error naming the field."""
    if value is None:
        raise SelfJInputError(f"`{field}` is None; every row needs a string there (drop or fill the row).")
    if not isinstance(value, str):
        raise SelfJInputError(f"`{field}` must be a string, got {type(value).__name__}: {str(value)[:60]!r}.")
    if not allow_empty and not value.strip():
        raise SelfJInputError(f"`{field}` is empty; every row needs non-empty text there (drop the row).")
    return value


# ---------------------------------------------------------------------------------------------------------------
# Generation prompts (stage 1: the policy answers an instruction)
# ---------------------------------------------------------------------------------------------------------------
def generation_prompt(tokenizer: Any, instruction: str, use_chat_template: bool | None = None) -> str:
    """The text the policy continues to answer ``instruction``."""
    if use_chat_template is None:
        use_chat_template = has_chat_template(tokenizer)
    if use_chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
        )
    return PLAIN_PROMPT_TEMPLATE.format(instruction=instruction)


# ---------------------------------------------------------------------------------------------------------------
# Judging prompt (stage 1: the policy rates a response, optionally against the reference)
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class JudgePrompt:
    text: str
    response_truncated: bool = False
    reference_truncated: bool = False


def _judge_text(tokenizer: Any, instruction: str, response: str, reference: str | None, chat: bool) -> str:
    body = JUDGE_PROMPT_TEMPLATE.format(
        instruction=instruction,
        response=response,
        ref_hint=_REF_HINT if reference is not None else "",
        reference_block=_REFERENCE_BLOCK.format(reference=reference) if reference is not None else "",
    )
    if not chat:
        return body
    # Chat policies: the rating request is the user turn and the answer starts right after the generation prompt,
    # so the next token is where the digit goes.
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
    )


def _n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _truncate_tokens(tokenizer: Any, text: str, n_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[: max(n_tokens, 0)], skip_special_tokens=True)


def build_judge_prompt(
    tokenizer: Any,
    instruction: str,
    response: str,
    reference: str | None = None,
    *,
    use_chat_template: bool | None = None,
    max_length: int | None = None,
) -> JudgePrompt:
    """The self-evaluation prompt, cut to ``max_length`` tokens without ever cutting the instruction.

    The response is shortened first (its opening says most about its quality), then the reference. If the
    instruction and the rating request alone do not fit, the row cannot be judged honestly and we raise.
    """
    check_text(instruction, "instruction")
    check_text(response, "response", allow_empty=True)
    if reference is not None:
        check_text(reference, "reference")
    chat = has_chat_template(tokenizer) if use_chat_template is None else use_chat_template
    text = _judge_text(tokenizer, instruction, response, reference, chat)
    if max_length is None or _n_tokens(tokenizer, text) <= max_length:
        return JudgePrompt(text)

    fixed = _n_tokens(tokenizer, _judge_text(tokenizer, instruction, "", "" if reference is not None else None, chat))
    budget = max_length - fixed
    if budget <= 0:
        raise SelfJInputError(
            f"the instruction alone takes {fixed} tokens with the judging prompt, over max_length={max_length}; "
            "raise `max_length` or drop over-long instructions."
        )
    resp_tokens = _n_tokens(tokenizer, response)
    ref_tokens = _n_tokens(tokenizer, reference) if reference is not None else 0
    # Keep at least a quarter of the budget for the reference so the comparison still has something to compare to.
    ref_keep = min(ref_tokens, budget // 4) if reference is not None else 0
    resp_keep = min(resp_tokens, budget - ref_keep)
    ref_keep = min(ref_tokens, budget - resp_keep)
    new_response = _truncate_tokens(tokenizer, response, resp_keep) if resp_keep < resp_tokens else response
    new_reference = reference
    if reference is not None and ref_keep < ref_tokens:
        new_reference = _truncate_tokens(tokenizer, reference, ref_keep)
    text = _judge_text(tokenizer, instruction, new_response, new_reference, chat)
    # Decoding and re-encoding can merge or split tokens at the cut; trim the response until it truly fits.
    while _n_tokens(tokenizer, text) > max_length and resp_keep > 0:
        resp_keep = max(resp_keep - 8, 0)
        new_response = _truncate_tokens(tokenizer, response, resp_keep)
        text = _judge_text(tokenizer, instruction, new_response, new_reference, chat)
    return JudgePrompt(
        text,
        response_truncated=new_response != response,
        reference_truncated=reference is not None and new_reference != reference,
    )


def digit_token_ids(tokenizer: Any) -> list[list[int]]:
    """For each digit 0-9, every token id that decodes to exactly that digit (with or without a space marker).

    SentencePiece and byte-level BPE vocabularies often hold "7" and "▁7" (or "Ġ7") as separate ids; a score read
    from only one of them silently drops probability mass.
    """
    ids: list[list[int]] = [[] for _ in DIGITS]
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False).strip()
        if len(text) == 1 and text in DIGITS:
            ids[int(text)].append(token_id)
    missing = [d for d, group in zip(DIGITS, ids) if not group]
    if missing:
        raise SelfJInputError(
            f"the policy's tokenizer has no token for digit(s) {', '.join(missing)}; digit self-evaluation needs all "
            "ten. Use a policy whose vocabulary holds the digits 0-9, or `self_eval_method=likelihood`."
        )
    return ids


# ---------------------------------------------------------------------------------------------------------------
# Judge views (stage 2 training, stage 3 use)
# ---------------------------------------------------------------------------------------------------------------
def student_messages(instruction: str, response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]


def format_student_view(tokenizer: Any, instruction: str, response: str, chat: bool | None = None) -> str:
    """The exact text TRL's online trainers hand to a reward model for this prompt/completion."""
    if chat is None:
        chat = has_chat_template(tokenizer)
    if chat:
        from trl.data_utils import apply_chat_template

        return apply_chat_template({"messages": student_messages(instruction, response)}, tokenizer)["text"]
    return PLAIN_PROMPT_TEMPLATE.format(instruction=instruction) + response


def format_teacher_view(
    tokenizer: Any, instruction: str, response: str, reference: str, chat: bool | None = None
) -> str:
    """The student view plus the gold reference, in a system turn (or a preamble for plain text)."""
    if chat is None:
        chat = has_chat_template(tokenizer)
    preamble = TEACHER_PREAMBLE.format(reference=reference)
    if not chat:
        return preamble + "\n\n" + format_student_view(tokenizer, instruction, response, chat=False)
    from trl.data_utils import apply_chat_template

    messages = [{"role": "system", "content": preamble}, *student_messages(instruction, response)]
    try:
        return apply_chat_template({"messages": messages}, tokenizer)["text"]
    except Exception:  # some templates refuse a system turn: fold the preamble into the user turn instead
        folded = student_messages(preamble + "\n\n" + instruction, response)
        return apply_chat_template({"messages": folded}, tokenizer)["text"]


def tokenize_view(tokenizer: Any, text: str, max_length: int | None = None) -> list[int]:
    """Token ids of a view, exactly as TRL's online trainers tokenize reward-model inputs.

    Over-long views keep their end (where the response and the score position are) and lose the start.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if max_length is not None and len(ids) > max_length:
        ids = ids[len(ids) - max_length :]
    return ids


def judge_format_config(tokenizer: Any, chat: bool | None = None, score_scale: tuple[float, float] = (0.0, 1.0)) -> dict:
    """What a judge's ``config.json`` records so that every consumer formats inputs the same way."""
    return {
        "format": "chat" if (has_chat_template(tokenizer) if chat is None else chat) else "plain",
        "plain_prompt_template": PLAIN_PROMPT_TEMPLATE,
        "teacher_preamble": TEACHER_PREAMBLE,
        "score_scale": list(score_scale),
        "tokenize": {"add_special_tokens": False, "padding_side": "right"},
    }
