"""The one sampler: labeling (stage 1) and best-of-n (stage 3) draw answers from the policy through it.

Both stages must prompt the policy the same way (its chat template when it has one, the plain prompt format
otherwise; see :mod:`selfj_trl.prompts`), so one implementation serves both.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import torch

from .errors import SelfJInputError
from .prompts import PLAIN_TURN_MARKER, generation_prompt, uses_chat


logger = logging.getLogger(__name__)

#: Sampling defaults (the policy's own generation config supplies everything else, e.g. its EOS ids).
DEFAULT_GENERATION = {"do_sample": True, "temperature": 0.7, "top_p": 0.95, "max_new_tokens": 256}

#: Added tokens that stand for another modality (Gemma 3's image delimiters and soft token, Gemma 3n's audio ones,
#: the "[multimodal]" placeholder). Text-only checkpoints keep them in the vocabulary as added tokens that are NOT
#: special, so ``skip_special_tokens`` leaves them in a decoded answer; they are never text, so they are never sampled.
#: (A generic strip of non-special added tokens would be wrong: Gemma's also include real text such as ``<table>``.)
NON_TEXT_TOKENS = (
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    "<start_of_audio>",
    "<end_of_audio>",
    "<audio_soft_token>",
    "[multimodal]",
)


def non_text_token_ids(tokenizer: Any) -> list[int]:
    """Ids of this tokenizer's :data:`NON_TEXT_TOKENS` (its own added tokens only: a word-piece that happens to
    spell one is text)."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return sorted(i for i, token in added.items() if getattr(token, "content", str(token)) in NON_TEXT_TOKENS)


def _generation_config(policy: Any, tokenizer: Any, generation_config: Any, n: int):
    from transformers import GenerationConfig

    if isinstance(generation_config, GenerationConfig):
        config = GenerationConfig.from_dict(generation_config.to_dict())
    else:
        if generation_config is not None and not isinstance(generation_config, dict):
            raise SelfJInputError("`generation_config` must be a transformers GenerationConfig or a dict.")
        base = getattr(policy, "generation_config", None)
        config = GenerationConfig.from_dict(base.to_dict()) if base is not None else GenerationConfig()
        config.update(**{**DEFAULT_GENERATION, **(generation_config or {})})
    if n > 1 and not config.do_sample:
        raise SelfJInputError(
            f"{n} samples per prompt need sampling: greedy decoding gives {n} identical answers (set do_sample=True)."
        )
    config.num_return_sequences = n
    if suppress := non_text_token_ids(tokenizer):
        config.suppress_tokens = sorted(set(config.suppress_tokens or []) | set(suppress))
    config.pad_token_id = tokenizer.pad_token_id
    if config.eos_token_id is None:
        config.eos_token_id = tokenizer.eos_token_id
    return config


def cut_at_turn_marker(text: str) -> str:
    """A plain-format answer up to the next turn marker (:data:`~selfj_trl.prompts.PLAIN_TURN_MARKER`).

    The prompt ends with a newline, so a marker at the very start of the answer counts too. What comes after it is
    the policy inventing the next turn, not its answer, and must never be labeled or trained on.
    """
    cut = ("\n" + text).find(PLAIN_TURN_MARKER)
    return text if cut < 0 else text[: max(cut - 1, 0)]


def turn_stop_criteria(tokenizer: Any) -> list:
    """transformers' stop-string criterion for the plain format's turn marker, or ``[]`` when it cannot map this
    tokenizer's vocabulary (some word-level tokenizers): generation then runs to EOS or ``max_new_tokens`` and
    :func:`cut_at_turn_marker` still removes the leak, at the cost of the wasted tokens."""
    from transformers import StopStringCriteria

    try:
        return [StopStringCriteria(tokenizer, [PLAIN_TURN_MARKER])]
    except (ValueError, KeyError, TypeError, IndexError) as err:
        logger.warning(
            "cannot stop generation at %r with this tokenizer (%s); the marker and what follows are cut "
            "after generation instead.",
            PLAIN_TURN_MARKER,
            err,
        )
        return []


# ----------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------
def sample_responses(
    policy: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    n: int,
    generation_config: Any = None,
    *,
    batch_size: int = 8,
    seed: int | None = None,
    show_progress: bool | None = None,
    use_chat_template: bool | None = None,
    desc: str = "sampling",
) -> tuple[list[str], list[list[str]]]:
    """``(prompt_texts, responses)``: the text each prompt became and ``n`` sampled answers per prompt.

    ``batch_size`` counts prompts per ``generate`` call (each makes ``n`` sequences). Chat policies get their chat
    template (which brings its own special tokens) and stop at EOS; base policies get the plain prompt format and
    their BOS, and stop at EOS or at the next turn marker (``"\n### "``), which is cut from the answer with anything
    after it (``use_chat_template`` overrides the choice). Tokens of other modalities (:data:`NON_TEXT_TOKENS`) are
    never drawn. ``seed`` seeds torch once before the first batch, so the samples are reproducible for a given seed
    and batching.
    """
    from tqdm.auto import tqdm
    from transformers import StoppingCriteriaList

    chat = uses_chat(tokenizer, use_chat_template)
    texts = [generation_prompt(tokenizer, p, use_chat_template=chat) for p in prompts]
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = _generation_config(policy, tokenizer, generation_config, n)
    stop = {} if chat else {"stopping_criteria": StoppingCriteriaList(turn_stop_criteria(tokenizer))}
    if seed is not None:
        from transformers import set_seed

        set_seed(seed)
    device = next(policy.parameters()).device
    responses: list[list[str]] = []
    starts = range(0, len(texts), batch_size)
    show = len(starts) > 1 if show_progress is None else show_progress
    for start in tqdm(starts, desc=desc, unit="batch", disable=not show, file=sys.stderr):
        chunk = texts[start : start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=not chat)
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.inference_mode():
            out = policy.generate(**enc, generation_config=config, **stop)
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        if not chat:  # a stop string ends generation after the token that completes it: cut the marker off
            decoded = [cut_at_turn_marker(r) for r in decoded]
        for i in range(len(chunk)):
            responses.append([r.strip() for r in decoded[i * n : (i + 1) * n]])
    return texts, responses
