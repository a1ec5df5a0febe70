"""``likelihood``: no rating at all. How much the answer and the reference raise each other's likelihood under the
policy, in nats per token, mapped onto the 0-9 label scale by ``9 * sigmoid(gain / scale)``.

``reference_gain``: log p(reference | instruction + the answer as a draft) - log p(reference | instruction).
``response_gain``: log p(answer | instruction + reference) - log p(answer | instruction).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from .. import prompts
from ..errors import SelfJInputError
from ..io import content_hash
from ..labels import LABEL_MAX
from . import register_signal
from .prefix import forward_group, rows_by_group


#: A likelihood gain of g nats per token becomes the score 9 * sigmoid(g / scale): 0 (the response tells the policy
#: nothing about the reference, or the reverse) -> 4.5, one scale above -> 6.6, one below -> 2.4. The scales are about
#: one standard deviation of each gain on AlpacaEval train rows for both offline policies, so labels spread over the
#: scale. Monotone: ranks (and Spearman) are those of the raw gain; the scale only matters inside a weighted mean.
LIKELIHOOD_SCALES = {"response_gain": 0.2, "reference_gain": 0.08}
#: The variant used when none is named (recipes/<policy>/README.md says how the two measured).
DEFAULT_LIKELIHOOD_METHOD = "reference_gain"
#: Tokens of the target (reference or answer) that are scored.
MAX_TARGET_TOKENS = 256


def cut_to_tokens(tokenizer: Any, text: str, n_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= n_tokens else tokenizer.decode(ids[: max(n_tokens, 0)], skip_special_tokens=True)


def likelihood_gains(
    model: Any,
    tokenizer: Any,
    instructions: list[str],
    responses: list[str],
    references: list[str],
    *,
    method: str = DEFAULT_LIKELIHOOD_METHOD,
    groups: list[Any] | None = None,
    use_chat_template: bool | None = None,
    max_length: int | None = 1024,
    max_target_tokens: int = MAX_TARGET_TOKENS,
    on_group: Callable[[list[int], list[dict]], None] | None = None,
    skip: set[int] | None = None,
    show_progress: bool = False,
) -> list[dict | None]:
    """Per row: mean log-likelihood (nats/token) of the target after the conditioned and the baseline context.

    See :func:`~selfj_trl.prompts.likelihood_views` for the two methods. The target is cut to its first
    ``max_target_tokens`` tokens and the text inside the conditioned context (reference or response) is cut so the
    whole sequence fits ``max_length``; both contexts score the very same target tokens. ``gain = cond - base``.
    """
    if not (len(instructions) == len(responses) == len(references)):
        raise SelfJInputError("instructions, responses and references must have the same length.")
    chat = prompts.uses_chat(tokenizer, use_chat_template)
    special = not chat
    groups = groups if groups is not None else instructions
    results: list[dict | None] = [None] * len(responses)
    for _, idx in tqdm(
        list(rows_by_group(groups).items()), desc=f"likelihood {method}", disable=not show_progress, leave=False
    ):
        idx = [i for i in idx if not skip or i not in skip]
        if not idx:
            continue
        cond_seqs, cond_starts, base_seqs, base_starts = [], [], [], []
        for i in idx:
            ins, resp, ref = instructions[i], responses[i], references[i]
            target = resp if method == "response_gain" else ref
            tgt = tokenizer(target, add_special_tokens=False)["input_ids"][:max_target_tokens]
            cond_empty = prompts.likelihood_views(tokenizer, ins, "", "", method=method, use_chat_template=chat)[0]
            fixed = len(tokenizer(cond_empty, add_special_tokens=special)["input_ids"])
            budget = (max_length or 10**9) - len(tgt) - fixed
            if budget < 0:  # instruction too long for max_length: shorten the target, keep the context empty
                tgt = tgt[: max(len(tgt) + budget, 0)]
                budget = 0
            inner = ref if method == "response_gain" else resp
            inner = cut_to_tokens(tokenizer, inner, budget)
            resp_in, ref_in = (resp, inner) if method == "response_gain" else (inner, ref)
            cond_ctx, base_ctx, _ = prompts.likelihood_views(
                tokenizer, ins, resp_in, ref_in, method=method, use_chat_template=chat
            )
            cond_ids = tokenizer(cond_ctx, add_special_tokens=special)["input_ids"]
            base_ids = tokenizer(base_ctx, add_special_tokens=special)["input_ids"]
            cond_seqs.append(cond_ids + tgt)
            cond_starts.append(len(cond_ids))
            base_seqs.append(base_ids + tgt)
            base_starts.append(len(base_ids))
        cond = forward_group(model, cond_seqs, span_starts=cond_starts)
        # reference_gain's baseline (instruction -> reference) is the same for every response: score it once
        unique: dict[tuple, int] = {}
        for k, s in enumerate(base_seqs):
            unique.setdefault(tuple(s), k)
        firsts = list(unique.values())
        base_unique = forward_group(
            model, [base_seqs[k] for k in firsts], span_starts=[base_starts[k] for k in firsts]
        )
        base_map = {tuple(base_seqs[k]): v for k, v in zip(firsts, base_unique, strict=True)}
        for i, (cond_sum, n), s in zip(idx, cond, base_seqs, strict=True):
            base_sum, _ = base_map[tuple(s)]
            cond_mean, base_mean = (cond_sum / n, base_sum / n) if n else (0.0, 0.0)
            results[i] = {"cond": cond_mean, "base": base_mean, "gain": cond_mean - base_mean, "n_tokens": n}
        if on_group is not None:
            on_group(idx, [results[i] for i in idx])
    return results


def gain_to_score(gain: float, method: str = DEFAULT_LIKELIHOOD_METHOD) -> float:
    """Map a likelihood gain (nats/token) onto the 0-9 label scale (see :data:`LIKELIHOOD_SCALES`)."""
    if not math.isfinite(gain):
        return math.nan
    z = max(min(gain / LIKELIHOOD_SCALES[method], 50.0), -50.0)
    return LABEL_MAX / (1.0 + math.exp(-z))


def likelihood_self_eval(
    model: Any,
    tokenizer: Any,
    instructions: list[str],
    responses: list[str],
    references: list[str],
    *,
    use_chat_template: bool | None = None,
    method: str = DEFAULT_LIKELIHOOD_METHOD,
    max_length: int | None = 1024,
    max_target_tokens: int = MAX_TARGET_TOKENS,
) -> list[float]:
    """Likelihood self-evaluation of each row on the 0-9 label scale (``9 * sigmoid(gain / scale)``)."""
    raw = likelihood_gains(
        model,
        tokenizer,
        instructions,
        responses,
        references,
        method=method,
        use_chat_template=use_chat_template,
        max_length=max_length,
        max_target_tokens=max_target_tokens,
    )
    return [gain_to_score(r["gain"], method) if r is not None else LABEL_MAX / 2 for r in raw]


def fingerprint(max_target_tokens: int = MAX_TARGET_TOKENS) -> str:
    return content_hash(*prompts.likelihood_prompt_parts(), max_target_tokens)


@register_signal(
    "likelihood",
    kind="self_eval",
    settings=("likelihood_method", "likelihood_target_tokens"),
    fingerprint=fingerprint,
    describe=lambda settings: (
        f"likelihood, {settings.likelihood_method}, first {settings.likelihood_target_tokens} target tokens"
    ),
    prompt_text=lambda settings: prompts.self_eval_prompt_text(
        "likelihood", likelihood_method=settings.likelihood_method
    ),
)
def score(
    models: Any,
    instructions: list[str],
    responses: list[str],
    references: list[str] | None,
    settings: Any,
    stats: Counter | None = None,
) -> list[float]:
    if references is None:
        raise SelfJInputError("the likelihood self-evaluation compares the answer with a reference; none was given.")
    return likelihood_self_eval(
        models.policy,
        models.tokenizer,
        instructions,
        responses,
        references,
        method=settings.likelihood_method,
        use_chat_template=settings.use_chat_template,
        max_length=settings.max_length,
        max_target_tokens=settings.likelihood_target_tokens,
    )
