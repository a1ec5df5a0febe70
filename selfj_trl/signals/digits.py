"""``digits``: the Self-J self-evaluation. The policy reads a judging prompt (instruction, reference, answer) and the
score is the expected digit 0-9 of its next token, every token id of each digit counted, from one forward pass.

:func:`digit_logprobs` keeps every digit's log-probability (so the label-quality report can try other readouts at no
cost); :func:`digit_score` turns one row's record into a 0-9 score; :func:`self_evaluate` does both for plain lists.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import prompts
from ..errors import SelfJInputError
from ..io import content_hash
from ..labels import LABEL_MAX
from . import register_signal
from .prefix import forward_group, rows_by_group


DIGIT_READOUTS = ("expected", "argmax", "single_id")


def digit_logprobs(
    model: Any,
    tokenizer: Any,
    instructions: list[str],
    responses: list[str],
    references: list[str] | None = None,
    *,
    groups: list[Any] | None = None,
    prompt_style: str = prompts.DEFAULT_PROMPT_STYLE,
    max_length: int | None = 1024,
    use_chat_template: bool | None = None,
    digit_ids: list[list[int]] | None = None,
    on_group: Callable[[list[int], list[dict]], None] | None = None,
    skip: set[int] | None = None,
    show_progress: bool = False,
    if_too_long: str = "skip",
) -> list[dict | None]:
    """Per row: log p of each digit (all its ids, and one canonical id), the digit mass, and truncation flags.

    Rows sharing a ``groups`` key (default: the instruction) share a prefix, run once. A row whose instruction cannot
    fit ``max_length`` gets ``None`` (``if_too_long="skip"``) or raises (``"raise"``). ``on_group`` is called after
    each group (to cache results as they come); ``skip`` lists rows not to score.
    """
    if len(instructions) != len(responses) or (references is not None and len(references) != len(responses)):
        raise SelfJInputError("instructions, responses and references must have the same length.")
    chat = prompts.uses_chat(tokenizer, use_chat_template)
    digit_ids = digit_ids or prompts.digit_token_ids(tokenizer)
    flat = sorted({i for ids in digit_ids for i in ids})
    pos = {t: k for k, t in enumerate(flat)}
    canonical = []
    for d, ids in enumerate(digit_ids):
        tid = tokenizer.convert_tokens_to_ids(str(d))
        canonical.append(tid if tid in ids else ids[0])
    groups = groups if groups is not None else instructions
    results: list[dict | None] = [None] * len(responses)
    for _, idx in tqdm(
        list(rows_by_group(groups).items()), desc=f"digits {prompt_style}", disable=not show_progress, leave=False
    ):
        idx = [i for i in idx if not skip or i not in skip]
        if not idx:
            continue
        seqs, ok, flags = [], [], []
        for i in idx:
            ref = references[i] if references is not None else None
            judge_prompt = prompts.build_judge_prompt(
                tokenizer,
                instructions[i],
                responses[i],
                ref,
                use_chat_template=chat,
                max_length=max_length,
                prompt_style=prompt_style,
                if_too_long=if_too_long,
            )
            if judge_prompt is None:
                continue
            seqs.append(tokenizer(judge_prompt.text, add_special_tokens=not chat)["input_ids"])
            ok.append(i)
            flags.append((judge_prompt.response_truncated, judge_prompt.reference_truncated))
        for i, lp, (resp_cut, ref_cut) in zip(ok, forward_group(model, seqs, keep_ids=flat), flags, strict=True):
            lp_t = torch.tensor(lp, dtype=torch.float64)
            per_digit = [float(torch.logsumexp(lp_t[[pos[t] for t in ids]], 0)) for ids in digit_ids]
            results[i] = {
                "lp": per_digit,
                "lp_single": [lp[pos[t]] for t in canonical],
                "mass": float(torch.logsumexp(lp_t, 0).exp()),
                "response_truncated": bool(resp_cut),
                "reference_truncated": bool(ref_cut),
            }
        if on_group is not None:
            on_group(idx, [results[i] for i in idx])
    return results


def digit_score(
    value: dict | None, prompt_style: str = prompts.DEFAULT_PROMPT_STYLE, readout: str = "expected"
) -> float:
    """A 0-9 score from :func:`digit_logprobs`' record: the style's digits only, mapped linearly onto 0-9.

    ``expected`` (the labeler's): the expectation over digits, each digit's probability summed over all its ids.
    ``argmax``: the most likely digit. ``single_id``: the expectation reading one id per digit (what code that
    looks up ``tokenizer.convert_tokens_to_ids("7")`` gets; it drops e.g. Gemma's byte-fallback ids).
    """
    if value is None:
        return math.nan
    lo, hi = prompts.PROMPT_STYLE_DIGITS[prompts.check_prompt_style(prompt_style)]
    lp = np.asarray(value["lp_single" if readout == "single_id" else "lp"][lo : hi + 1], dtype=float)
    if readout == "argmax":
        return float(np.argmax(lp)) * LABEL_MAX / (hi - lo)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    return float(w @ np.arange(hi - lo + 1)) * LABEL_MAX / (hi - lo)


def style_digit_mass(value: dict, prompt_style: str = prompts.DEFAULT_PROMPT_STYLE) -> float:
    """Probability the policy put on the style's digits (every id of each) after the judging prompt."""
    lo, hi = prompts.PROMPT_STYLE_DIGITS[prompts.check_prompt_style(prompt_style)]
    return float(np.exp(np.asarray(value["lp"][lo : hi + 1], dtype=float)).sum())


def self_evaluate(
    model: Any,
    tokenizer: Any,
    instructions: list[str],
    responses: list[str],
    references: list[str] | None = None,
    *,
    max_length: int | None = 1024,
    use_chat_template: bool | None = None,
    stats: Counter | None = None,
    digit_ids: list[list[int]] | None = None,
    show_progress: bool = False,
    prompt_style: str = prompts.DEFAULT_PROMPT_STYLE,
) -> list[float]:
    """The policy's own 0-9 rating of each response (with the reference when given), one forward pass per row.

    ``stats`` (optional) counts truncated responses and references and sums the digit mass; ``digit_ids`` skips the
    vocabulary scan when called repeatedly. A style on another scale (``scale_1_5``) reads only its digits and maps
    the expectation linearly onto 0-9. A row whose instruction cannot fit ``max_length`` is an input error.
    """
    records = digit_logprobs(
        model,
        tokenizer,
        instructions,
        responses,
        references,
        prompt_style=prompt_style,
        max_length=max_length,
        use_chat_template=use_chat_template,
        digit_ids=digit_ids,
        show_progress=show_progress,
        if_too_long="raise",
    )
    if stats is not None:
        for record in records:
            stats["response_truncated"] += record["response_truncated"]
            stats["reference_truncated"] += record["reference_truncated"]
            stats["digit_mass_sum"] += style_digit_mass(record, prompt_style)
            stats["digit_mass_rows"] += 1
    return [digit_score(record, prompt_style) for record in records]


def fingerprint() -> str:
    return content_hash(*prompts.digit_prompt_parts())


@register_signal(
    "digits",
    kind="self_eval",
    settings=("prompt_style",),
    fingerprint=fingerprint,
    describe=lambda settings: f"digits, prompt style {settings.prompt_style}",
    prompt_text=lambda settings: prompts.self_eval_prompt_text("digits", settings.prompt_style),
)
def score(
    models: Any,
    instructions: list[str],
    responses: list[str],
    references: list[str] | None,
    settings: Any,
    stats: Counter | None = None,
) -> list[float]:
    return self_evaluate(
        models.policy,
        models.tokenizer,
        instructions,
        responses,
        references,
        stats=stats,
        max_length=settings.max_length,
        use_chat_template=settings.use_chat_template,
        digit_ids=models.digit_ids,
        prompt_style=settings.prompt_style,
    )
