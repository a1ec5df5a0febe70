"""The judge's two views: how a row becomes the text a judge reads, and how both views are cut to ONE token budget.

The **student view** is exactly what TRL's online trainers hand a reward model for a prompt/completion (the chat
template, or :data:`~selfj_trl.prompts.PLAIN_PROMPT_TEMPLATE` + response); the **teacher view** adds the gold
reference in a preamble turn. Training, scoring, the reward callable and the server all build views here, so a
judge is used on exactly the views it trained on.

Why a budget and not a plain cut: the teacher view puts the reference first, so cutting an over-long view from either
end loses either the reference's opening (the part both label signals read, the teacher's only advantage) or the
instruction and the score position. Instead every part is cut from its own tail, in this order of priority:

1. the **instruction** is kept whole unless it alone would take more than ``instruction_share`` of the room;
2. the **response** keeps what is left after the instruction and a reserve of ``reference_share`` of the room for
   the reference, in BOTH views, so that student and teacher judge the same response tokens and differ only by the
   reference (the student's limit does not depend on the reference, which is unknown at use time);
3. the **reference** (teacher view only) takes everything left, at least its reserve.

The room is ``max_length`` minus the teacher view's own frame (template, preamble), so both views of a row always fit.
A view that fits untouched is tokenized exactly as TRL tokenizes reward-model inputs; the start of a view is never
cut, so a BERT-style judge (pooled at position 0, no ``[CLS]`` because TRL passes ``add_special_tokens=False``) always
reads the view's first template token there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .errors import SelfJInputError
from .prompts import PLAIN_PROMPT_TEMPLATE, has_chat_template


#: Prepended to the student view to make the teacher view (a preamble turn for chat judges).
TEACHER_PREAMBLE = "A reference answer written by an expert:\n{reference}\n\nJudge the answer below against it."


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


#: Share of a view's token budget kept for the reference's opening in the teacher view, and the most the instruction
#: may take (it is cut from its tail only past that). Recorded in ``config.selfj["views"]``; see
#: :func:`build_views` for the whole rule.
REFERENCE_SHARE = 0.25
INSTRUCTION_SHARE = 0.5


def tokenize_view(tokenizer: Any, text: str, max_length: int | None = None) -> list[int]:
    """Token ids of a view, exactly as TRL's online trainers tokenize reward-model inputs.

    Over-long texts keep their START and lose their end: the start holds the instruction (and, for a BERT-style
    judge, position 0 is what its pooler reads, so it must be the view's first token, the same in every view).
    Views built from their parts are cut more carefully by :func:`build_views`; this is the
    fallback for texts that come already formatted. The tokenizer's "longer than the maximum" warning is silenced
    because the cut is deliberate.
    """
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if max_length is not None and len(ids) > max_length:
        ids = ids[:max_length]
    return ids


def judge_format_config(
    tokenizer: Any, chat: bool | None = None, score_scale: tuple[float, float] = (0.0, 1.0)
) -> dict:
    """What a judge's ``config.json`` records so that every consumer formats inputs the same way."""
    return {
        "format": "chat" if (has_chat_template(tokenizer) if chat is None else chat) else "plain",
        "plain_prompt_template": PLAIN_PROMPT_TEMPLATE,
        "teacher_preamble": TEACHER_PREAMBLE,
        "score_scale": list(score_scale),
        "tokenize": {"add_special_tokens": False, "padding_side": "right"},
        "views": {
            "truncation": "keep_start",
            "reference_share": REFERENCE_SHARE,
            "instruction_share": INSTRUCTION_SHARE,
        },
    }


#: The cut flags of :class:`JudgeViewIds`, as counted in the training logs and ``config.selfj["view_cuts"]``.
#: Changes whenever the cutting rule changes, so that caches of judge scores made under another rule are not reused.
VIEW_RULE_VERSION = 2

CUT_FIELDS = ("instruction_cut", "response_cut", "reference_cut")


@dataclass
class JudgeViewIds:
    """Token ids of one row's student view (and teacher view when a reference was given), with what was cut."""

    student: list[int]
    teacher: list[int] | None = None
    instruction_cut: bool = False
    response_cut: bool = False
    reference_cut: bool = False


def _heads(tokenizer: Any, text: str) -> tuple[int, Callable[[int], str]]:
    """(number of tokens of ``text`` alone, a function giving the text of its first k tokens).

    Fast tokenizers cut the original string at a character offset (casing and spacing kept); others decode.
    """
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]

        def head(k: int) -> str:
            return text if k >= len(offsets) else (text[: offsets[k - 1][1]] if k > 0 else "")

        return len(offsets), head
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return len(ids), lambda k: text if k >= len(ids) else tokenizer.decode(ids[: max(k, 0)], skip_special_tokens=True)


def _fit(tokenizer: Any, build: Callable[[int], str], keep: int, max_length: int) -> tuple[list[int], int]:
    """Tokenize ``build(keep)``, lowering ``keep`` while re-tokenizing at the cut makes the view overflow."""
    ids = tokenize_view(tokenizer, build(keep))
    while len(ids) > max_length and keep > 0:
        keep = max(keep - (len(ids) - max_length), 0)
        ids = tokenize_view(tokenizer, build(keep))
    return ids[:max_length], keep  # the last resort keeps the start


@lru_cache(maxsize=16)
def _frame_tokens(tokenizer: Any, chat: bool | None) -> int:
    """Tokens of the teacher view with empty parts: its template and preamble (computed once per tokenizer)."""
    return len(tokenize_view(tokenizer, format_teacher_view(tokenizer, "", "", "", chat=chat)))


def build_views(
    tokenizer: Any,
    instruction: str,
    response: str,
    reference: str | None = None,
    *,
    chat: bool | None = None,
    max_length: int | None = None,
    reference_share: float = REFERENCE_SHARE,
    instruction_share: float = INSTRUCTION_SHARE,
) -> JudgeViewIds:
    """The student view (and the teacher view given ``reference``) as token ids of at most ``max_length``.

    See the module docstring for the rule. Without ``max_length`` nothing is cut.
    """
    if max_length is None:
        teacher = (
            None if reference is None else format_teacher_view(tokenizer, instruction, response, reference, chat=chat)
        )
        return JudgeViewIds(
            tokenize_view(tokenizer, format_student_view(tokenizer, instruction, response, chat=chat)),
            None if teacher is None else tokenize_view(tokenizer, teacher),
        )
    frame = _frame_tokens(tokenizer, chat)
    room = max_length - frame
    if room < 4:
        raise SelfJInputError(
            f"max_length={max_length} leaves no room for text: the view's template alone takes {frame} tokens; "
            "raise `max_length`."
        )
    n_instruction, instruction_head = _heads(tokenizer, instruction)
    n_response, response_head = _heads(tokenizer, response)
    instruction_keep = min(n_instruction, int(room * instruction_share))
    reserve = int(room * reference_share)
    response_keep = min(n_response, max(room - reserve - instruction_keep, 0))
    instruction_text = instruction_head(instruction_keep)

    def student_of(keep: int) -> str:
        return format_student_view(tokenizer, instruction_text, response_head(keep), chat=chat)

    student, response_keep = _fit(tokenizer, student_of, response_keep, max_length)
    views = JudgeViewIds(student, None, instruction_keep < n_instruction, response_keep < n_response)
    if reference is None:
        return views
    n_reference, reference_head = _heads(tokenizer, reference)
    response_text = response_head(response_keep)

    def teacher_of(keep: int) -> str:
        return format_teacher_view(tokenizer, instruction_text, response_text, reference_head(keep), chat=chat)

    reference_keep = min(n_reference, max(room - instruction_keep - response_keep, 0))
    views.teacher, reference_keep = _fit(tokenizer, teacher_of, reference_keep, max_length)
    views.reference_cut = reference_keep < n_reference
    return views


def view_settings(selfj: dict | None) -> dict:
    """``reference_share`` / ``instruction_share`` as a judge's ``config.selfj["views"]`` records them (else ours)."""
    recorded = (selfj or {}).get("views") or {}
    return {
        "reference_share": float(recorded.get("reference_share", REFERENCE_SHARE)),
        "instruction_share": float(recorded.get("instruction_share", INSTRUCTION_SHARE)),
    }


_PLAIN_HEAD, _PLAIN_TAIL = PLAIN_PROMPT_TEMPLATE.split("{instruction}")
_PREAMBLE_HEAD, _PREAMBLE_TAIL = TEACHER_PREAMBLE.split("{reference}")


def parse_plain_view(text: str) -> tuple[str, str, str | None] | None:
    """(instruction, response, reference or None) of a text in the plain student or teacher format, else None.

    Lets callers that receive formatted texts (the server, TRL's ``prompt + completion``) cut them by the view rule
    instead of blindly. The first separator wins; the parts format back to ``text`` either way.
    """
    reference = None
    if text.startswith(_PREAMBLE_HEAD):
        cut = text.find(_PREAMBLE_TAIL + "\n\n" + _PLAIN_HEAD, len(_PREAMBLE_HEAD))
        if cut < 0:
            return None
        reference = text[len(_PREAMBLE_HEAD) : cut]
        text = text[cut + len(_PREAMBLE_TAIL) + 2 :]
    if not text.startswith(_PLAIN_HEAD):
        return None
    cut = text.find(_PLAIN_TAIL, len(_PLAIN_HEAD))
    if cut < 0:
        return None
    return text[len(_PLAIN_HEAD) : cut], text[cut + len(_PLAIN_TAIL) :], reference


# TRL's conversational rows
def message_text(messages: Any) -> str:
    """The text of a message list (TRL's conversational prompt or completion); a string is returned as it is."""
    if isinstance(messages, str):
        return messages
    parts = []
    for message in messages:
        content = message.get("content", "") if isinstance(message, dict) else message
        if isinstance(content, list):  # multimodal-style content blocks: keep the text ones
            content = "".join(block.get("text", "") for block in content if isinstance(block, dict))
        parts.append(content or "")
    return "".join(parts)


def is_single_turn(prompt: Any, completion: Any) -> bool:
    """Whether TRL's conversational row is one user turn of text and one assistant turn of text."""
    return (
        isinstance(prompt, list)
        and isinstance(completion, list)
        and len(prompt) == 1
        and len(completion) == 1
        and isinstance(prompt[0], dict)
        and isinstance(completion[0], dict)
        and prompt[0].get("role") == "user"
        and completion[0].get("role") == "assistant"
        and isinstance(prompt[0].get("content"), str)
        and isinstance(completion[0].get("content"), str)
        and bool(prompt[0]["content"].strip())
    )


def last_user_turn(messages: Any, index: int) -> str:
    """The last user turn of ``prompts[index]``: what a plain judge reads as the instruction of a conversation."""
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise SelfJInputError(f"`prompts[{index}]` has no user message; conversational prompts need one.")
    return message_text([users[-1]])


def score_statistics(scores: Sequence[float], reference_set: str) -> dict | None:
    """``config.selfj["reward_stats"]``: mean and sample std of the student-view scores on ``reference_set``.

    The sample std (as OpenRLHF's reward-model trainer computes it) is floored at 1e-8 so that standardising by it
    never divides by zero; fewer than two scores give no spread to record.
    """
    values = [float(s) for s in scores]
    if len(values) < 2:
        return None
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return {"mean": mean, "std": max(std, 1e-8), "n": len(values), "set": reference_set}


def recorded_reward_stats(format_config: dict) -> dict | None:
    """The judge's recorded reward stats, or None when absent or unusable (older judges have none)."""
    stats = (format_config or {}).get("reward_stats")
    try:
        mean, std = float(stats["mean"]), float(stats["std"])
    except (TypeError, KeyError, ValueError):
        return None
    return dict(stats, mean=mean, std=std) if math.isfinite(mean) and math.isfinite(std) and std > 0 else None


def standardize(scores: Sequence[float], stats: dict) -> list[float]:
    """``(score - mean) / std``: what OpenRLHF's ``normalize_reward`` does with ``config.mean`` / ``config.std``."""
    return [(float(s) - stats["mean"]) / stats["std"] for s in scores]
