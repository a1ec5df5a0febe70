"""Every text the policy reads, in one place: generation prompts, self-evaluation prompts, likelihood contexts.

Labeling (the policy sampling and judging its own answers), the label report and best-of-n all format their policy
inputs here, and the judge's views (:mod:`selfj_trl.judge_views`) build on the same plain template, so nothing else
in the package builds a prompt by hand: a model fed another format than the one it was measured with quietly gives
other numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import SelfJInputError


DIGITS = "0123456789"

#: Plain prompt for policies and judges without a chat template (e.g. the base Gemma 3 270M, BERT-style encoders).
PLAIN_PROMPT_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
#: Recovers the instruction from a prompt in the plain format (TRL hands reward functions the formatted prompt).
PLAIN_PROMPT_RE = re.compile(
    "^" + re.escape(PLAIN_PROMPT_TEMPLATE).replace(re.escape("{instruction}"), "(?P<instruction>.*)") + "$",
    re.DOTALL,
)


#: Key under which a judge's ``config.json`` records how its inputs are formatted (see :func:`judge_format_config`).
JUDGE_CONFIG_KEY = "selfj"

#: Reference-guided self-evaluation prompt (stage 1), in this project's own wording (the paper's prompt is not
#: reproduced). ``{reference_block}`` is empty for the reference-free baseline.
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

#: The reference placed AFTER the answer (prompt_style="reference_after"): the policy reads the answer unprimed,
#: then the reference right before it rates, so the comparison is the last thing in its context.
JUDGE_PROMPT_TEMPLATE_REFERENCE_AFTER = (
    "Rate how well the answer follows the instruction{ref_hint}. "
    "Use one digit from 0 (useless or wrong) to 9 (excellent, complete and correct).\n\n"
    "### Instruction:\n{instruction}\n\n"
    "### Answer:\n{response}\n\n"
    "{reference_block}"
    "### Rating (0-9):"
)

#: A 1-5 scale (prompt_style="scale_1_5"): fewer, coarser grades. Only digits 1-5 are read; the expectation is
#: mapped linearly onto 0-9 ((s - 1) * 9 / 4) so labels stay comparable (see :data:`PROMPT_STYLE_DIGITS`).
JUDGE_PROMPT_TEMPLATE_SCALE_1_5 = (
    "Rate how well the answer follows the instruction{ref_hint}. "
    "Use one digit from 1 (useless or wrong) to 5 (excellent, complete and correct).\n\n"
    "### Instruction:\n{instruction}\n\n"
    "{reference_block}"
    "### Answer:\n{response}\n\n"
    "### Rating (1-5):"
)

#: Worked examples for prompt_style="few_shot". Written for this project (not taken from any evaluation data): one
#: irrelevant answer, one excellent, one wrong, one correct but incomplete, so the scale's ends and middle are shown.
FEW_SHOT_EXAMPLES: tuple[dict[str, str], ...] = (
    {
        "instruction": "Write a haiku about autumn leaves.",
        "reference": "Crimson leaves let go,\ndrifting on the cooling wind,\nthe branches rest bare.",
        "response": "I like turtles. The stock market closed higher today.",
        "rating": "0",
    },
    {
        "instruction": "Convert 5 kilometres to miles.",
        "reference": "5 kilometres is about 3.11 miles, since 1 km is roughly 0.621 miles.",
        "response": "5 km is roughly 3.1 miles, because one kilometre is about 0.62 miles.",
        "rating": "9",
    },
    {
        "instruction": "What is the capital of Australia?",
        "reference": "The capital of Australia is Canberra.",
        "response": "The capital of Australia is Sydney, its largest city.",
        "rating": "1",
    },
    {
        "instruction": "Give two tips for sleeping better.",
        "reference": "1. Go to bed and wake up at the same time every day.\n2. Avoid screens and caffeine in the hour "
        "before bed.",
        "response": "Try to go to bed at the same time every night.",
        "rating": "5",
    },
)

#: Every judging-prompt variant ``build_judge_prompt(prompt_style=...)`` knows, all written for this project.
#: ``rating_lead`` (the default) starts the answer for the model (see :data:`RATING_LEAD`), so the rating is the very
#: next token, which is where the Self-J method reads it; so do few_shot, reference_after and scale_1_5. ``no_lead``
#: ends at "### Rating (0-9):" and leaves the answer unstarted: kept to measure what the lead buys.
PROMPT_STYLES = ("rating_lead", "no_lead", "few_shot", "reference_after", "scale_1_5")
#: Earlier names, still accepted: "zero_shot" was the no-lead prompt (once the default), "zero_shot_lead" the lead one.
PROMPT_STYLE_ALIASES = {"zero_shot": "no_lead", "zero_shot_lead": "rating_lead"}
DEFAULT_PROMPT_STYLE = "rating_lead"

#: The digits each style asks for (lowest, highest); scores read from them are mapped onto 0-9.
PROMPT_STYLE_DIGITS = {
    "rating_lead": (0, 9),
    "no_lead": (0, 9),
    "few_shot": (0, 9),
    "reference_after": (0, 9),
    "scale_1_5": (1, 5),
}
PROMPT_STYLE_DIGITS.update({old: PROMPT_STYLE_DIGITS[new] for old, new in PROMPT_STYLE_ALIASES.items()})

#: Text placed where the model's answer begins (all styles but "no_lead"). Without it a chat policy's next token is
#: the start of a sentence ("Your answer ...") and a base model's is a space or a newline, so only a few percent of
#: the probability sits on digits and the expectation over them is mostly noise. With it, the digit is next: a
#: plain prompt ends with "### Rating (0-9): " and a chat turn opens with "Rating: ".
RATING_LEAD = {"chat": "Rating: ", "plain": " "}


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def uses_chat(tokenizer: Any, use_chat_template: bool | None = None) -> bool:
    """Whether prompts for this tokenizer go through its chat template (``None``: when it has one)."""
    return has_chat_template(tokenizer) if use_chat_template is None else bool(use_chat_template)


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
#: Where a plain-format answer ends: a base policy given PLAIN_PROMPT_TEMPLATE writes its answer and then, having
#: no end-of-turn token, opens the next turn ("### Instruction: ..."). The sampler stops there and cuts it off.
PLAIN_TURN_MARKER = "\n### "


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


def check_prompt_style(prompt_style: str) -> str:
    """The style's current name (old names are aliases), or an input error listing the styles."""
    prompt_style = PROMPT_STYLE_ALIASES.get(prompt_style, prompt_style)
    if prompt_style not in PROMPT_STYLES:
        raise SelfJInputError(
            f"prompt_style must be one of {PROMPT_STYLES} (or an old name: "
            f"{sorted(PROMPT_STYLE_ALIASES)}), got {prompt_style!r}."
        )
    return prompt_style


def _judge_body(instruction: str, response: str, reference: str | None, prompt_style: str) -> str:
    template = {
        "reference_after": JUDGE_PROMPT_TEMPLATE_REFERENCE_AFTER,
        "scale_1_5": JUDGE_PROMPT_TEMPLATE_SCALE_1_5,
    }.get(prompt_style, JUDGE_PROMPT_TEMPLATE)
    return template.format(
        instruction=instruction,
        response=response,
        ref_hint=_REF_HINT if reference is not None else "",
        reference_block=_REFERENCE_BLOCK.format(reference=reference) if reference is not None else "",
    )


def _judge_text(
    tokenizer: Any,
    instruction: str,
    response: str,
    reference: str | None,
    chat: bool,
    prompt_style: str = DEFAULT_PROMPT_STYLE,
) -> str:
    body = _judge_body(instruction, response, reference, prompt_style)
    # Few-shot: the worked examples come first, in the same format (with a reference only when the row has one),
    # as earlier chat turns for chat policies and as preceding blocks for plain ones.
    shots = []
    if prompt_style == "few_shot":
        for ex in FEW_SHOT_EXAMPLES:
            ex_ref = ex["reference"] if reference is not None else None
            shots.append((_judge_body(ex["instruction"], ex["response"], ex_ref, "no_lead"), ex["rating"]))
    lead = "" if prompt_style == "no_lead" else RATING_LEAD["chat" if chat else "plain"]
    if not chat:
        return "".join(f"{q} {a}\n\n" for q, a in shots) + body + lead
    # Chat policies: the rating request is the user turn and the answer starts right after the generation prompt
    # (plus the lead), so the next token is where the digit goes.
    messages = []
    for q, a in shots:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": lead + a}]
    return (
        tokenizer.apply_chat_template(
            [*messages, {"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
        )
        + lead
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
    prompt_style: str = DEFAULT_PROMPT_STYLE,
    if_too_long: str = "raise",
) -> JudgePrompt | None:
    """The self-evaluation prompt, cut to ``max_length`` tokens without ever cutting the instruction.

    The response is shortened first (its opening says most about its quality), then the reference. If the
    instruction and the rating request alone do not fit, the row cannot be judged honestly: we raise, or return None
    with ``if_too_long="skip"`` (the label-quality report leaves such rows out).
    ``prompt_style`` picks a variant from :data:`PROMPT_STYLES` (default ``rating_lead``: the rating is the next
    token); ``scale_1_5`` asks for digits 1-5 (see :data:`PROMPT_STYLE_DIGITS`).
    """
    prompt_style = check_prompt_style(prompt_style)
    check_text(instruction, "instruction")
    check_text(response, "response", allow_empty=True)
    if reference is not None:
        check_text(reference, "reference")
    chat = has_chat_template(tokenizer) if use_chat_template is None else use_chat_template
    text = _judge_text(tokenizer, instruction, response, reference, chat, prompt_style)
    if max_length is None or _n_tokens(tokenizer, text) <= max_length:
        return JudgePrompt(text)

    fixed = _n_tokens(
        tokenizer, _judge_text(tokenizer, instruction, "", "" if reference is not None else None, chat, prompt_style)
    )
    budget = max_length - fixed
    if budget <= 0:
        if if_too_long == "skip":
            return None
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
    text = _judge_text(tokenizer, instruction, new_response, new_reference, chat, prompt_style)
    # Decoding and re-encoding can merge or split tokens at the cut; trim the response until it truly fits.
    while _n_tokens(tokenizer, text) > max_length and resp_keep > 0:
        resp_keep = max(resp_keep - 8, 0)
        new_response = _truncate_tokens(tokenizer, response, resp_keep)
        text = _judge_text(tokenizer, instruction, new_response, new_reference, chat, prompt_style)
    return JudgePrompt(
        text,
        response_truncated=new_response != response,
        reference_truncated=reference is not None and new_reference != reference,
    )


# ---------------------------------------------------------------------------------------------------------------
# Likelihood self-evaluation (stage 1, ``self_eval_method=likelihood``): contexts whose log-likelihoods are compared
# ---------------------------------------------------------------------------------------------------------------
#: The reference shown before the policy answers (``response_gain``: does seeing it make this response likelier?).
LIKELIHOOD_REFERENCE_CONTEXT = (
    "{instruction}\n\nAn expert answered this as follows:\n{reference}\n\nNow write your own answer."
)
#: A draft shown before the reference (``reference_gain``: does this response make the expert answer likelier?).
LIKELIHOOD_DRAFT_CONTEXT = "{instruction}\n\nA draft answer:\n{response}\n\nNow write the best possible answer."
LIKELIHOOD_METHODS = ("response_gain", "reference_gain")
#: What the conditioned context is compared with (part of the score-cache key: scores made against the bare
#: instruction, before this baseline, must never be reused).
LIKELIHOOD_BASELINE = "the same context with the draft (reference_gain) or the reference (response_gain) empty"


def likelihood_views(
    tokenizer: Any,
    instruction: str,
    response: str,
    reference: str,
    *,
    method: str = "response_gain",
    use_chat_template: bool | None = None,
) -> tuple[str, str, str]:
    """(conditioned context, baseline context, target) for a likelihood self-evaluation.

    The score compares the policy's per-token log-likelihood of ``target`` after each context. ``response_gain``:
    target = the response, conditioned on the instruction plus the reference vs the same context with the reference
    left empty. ``reference_gain``: target = the reference, conditioned on the instruction plus the response (as a
    draft) vs the same context with the draft left empty. The baseline is the very template the conditioned context
    uses, emptied: against the bare instruction the gain would also carry the template's own effect on the target,
    which differs from instruction to instruction and so offsets every row of one instruction against the others.
    Both use the policy's own answer format (chat template or the plain prompt).
    """
    if method not in LIKELIHOOD_METHODS:
        raise SelfJInputError(f"likelihood method must be one of {LIKELIHOOD_METHODS}, got {method!r}.")
    if method == "response_gain":
        template, inner, target = LIKELIHOOD_REFERENCE_CONTEXT, {"reference": reference}, response
    else:
        template, inner, target = LIKELIHOOD_DRAFT_CONTEXT, {"response": response}, reference
    cond_user = template.format(instruction=instruction, **inner)
    base_user = template.format(instruction=instruction, **dict.fromkeys(inner, ""))
    return (
        generation_prompt(tokenizer, cond_user, use_chat_template),
        generation_prompt(tokenizer, base_user, use_chat_template),
        target,
    )


def self_eval_prompt_text(
    method: str, prompt_style: str = DEFAULT_PROMPT_STYLE, likelihood_method: str = "reference_gain"
) -> str:
    """The self-evaluation prompt(s) as the dataset card shows them: what the policy read to make each label."""
    if method == "likelihood":
        if likelihood_method == "response_gain":
            return (
                "score = mean log p(response | context) - mean log p(response | the same context with an empty "
                "reference), context:\n" + LIKELIHOOD_REFERENCE_CONTEXT
            )
        return (
            "score = mean log p(reference | context) - mean log p(reference | the same context with an empty "
            "draft), context:\n" + LIKELIHOOD_DRAFT_CONTEXT
        )
    prompt_style = check_prompt_style(prompt_style)
    template = {
        "reference_after": JUDGE_PROMPT_TEMPLATE_REFERENCE_AFTER,
        "scale_1_5": JUDGE_PROMPT_TEMPLATE_SCALE_1_5,
    }.get(prompt_style, JUDGE_PROMPT_TEMPLATE)
    text = template.replace("{ref_hint}", _REF_HINT).replace("{reference_block}", _REFERENCE_BLOCK)
    if prompt_style != "no_lead":
        text += repr(RATING_LEAD["plain"])[1:-1] + "   (chat policies: the answer turn opens with "
        text += f"{RATING_LEAD['chat']!r})"
    if prompt_style == "few_shot":
        text = (
            f"[{len(FEW_SHOT_EXAMPLES)} worked examples in the same format come first: "
            "selfj_trl.prompts.FEW_SHOT_EXAMPLES]\n\n" + text
        )
    return text


def digit_prompt_parts() -> tuple:
    """Every text a digit self-evaluation prompt is made of (what a score cache must be keyed on)."""
    return (
        JUDGE_PROMPT_TEMPLATE,
        JUDGE_PROMPT_TEMPLATE_REFERENCE_AFTER,
        JUDGE_PROMPT_TEMPLATE_SCALE_1_5,
        FEW_SHOT_EXAMPLES,
        RATING_LEAD,
        _REFERENCE_BLOCK,
        _REF_HINT,
    )


def likelihood_prompt_parts() -> tuple:
    """Every text a likelihood self-evaluation context is made of (what a score cache must be keyed on)."""
    return (LIKELIHOOD_REFERENCE_CONTEXT, LIKELIHOOD_DRAFT_CONTEXT, PLAIN_PROMPT_TEMPLATE, LIKELIHOOD_BASELINE)


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
    missing = [d for d, group in zip(DIGITS, ids, strict=True) if not group]
    if missing:
        raise SelfJInputError(
            f"the policy's tokenizer has no token for digit(s) {', '.join(missing)}; digit self-evaluation needs all "
            "ten. Use a policy whose vocabulary holds the digits 0-9, or `self_eval_method=likelihood`."
        )
    return ids
