"""OpenRLHF's remote reward-model protocol: request parsing, the teacher view, and the scores' scale.

OpenRLHF's client POSTs ``{"query": [...], "prompts": [...], "labels": [...]}`` (``query`` is the prompt plus the
sampled response, already in the policy's template) and reads ``rewards``, ``scores`` and ``extra_logs`` from the JSON
answer. Every malformed request becomes a :class:`RequestError`: an HTTP status and a one-line message naming the
field. Nothing here knows about HTTP servers or threads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SelfJInputError
from ..judge_views import standardize
from ..prompts import PLAIN_PROMPT_RE, check_text, has_chat_template
from .config import ServeConfig


#: The route OpenRLHF's examples and ``openrlhf.cli.serve_rm`` use; point ``--reward.remote_url`` at it.
REWARD_ROUTE = "/get_reward"


class RequestError(Exception):
    """A client mistake: HTTP ``status`` and a one-line message naming the field."""

    def __init__(self, status: int, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field_name


@dataclass
class RewardRequest:
    """A validated request: the texts to score, and the optional per-text prompts and labels."""

    query: list[str]
    prompts: list[str] | None
    labels: list[Any] | None


def _optional_list(payload: dict, key: str, n: int | None) -> list | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise RequestError(400, f"`{key}` must be a JSON list, got {type(value).__name__}.", key)
    if n is not None and len(value) != n:
        raise RequestError(400, f"`{key}` has {len(value)} items but `query` has {n}; send one per query.", key)
    return value


def parse_reward_request(body: bytes, config: ServeConfig) -> RewardRequest:
    """Validate an OpenRLHF reward request body; raise :class:`RequestError` with the field at fault."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise RequestError(400, 'the body is nested too deeply to be a request; send {"query": ["..."]}.') from None
    except ValueError as err:  # not JSON, not UTF-8, or an integer too long for Python to convert
        raise RequestError(400, f'the body is not valid JSON ({err}); send {{"query": ["..."]}}.') from None
    if not isinstance(payload, dict):
        raise RequestError(400, f"the body must be a JSON object with a `query` list, got {type(payload).__name__}.")
    if "query" not in payload:
        raise RequestError(400, "`query` is missing; send the full texts (prompt + response) as a list.", "query")
    query = _optional_list(payload, "query", None)
    if query is None:
        raise RequestError(400, "`query` is null; send the full texts (prompt + response) as a list.", "query")
    if not query:
        raise RequestError(400, "`query` is an empty list; send at least one text.", "query")
    if len(query) > config.max_texts_per_request:
        raise RequestError(
            413,
            f"`query` has {len(query)} texts, over the limit of {config.max_texts_per_request}; split the request.",
            "query",
        )
    for i, text in enumerate(query):
        _check_text_field(text, f"query[{i}]", config, allow_empty=False)
    prompts = _optional_list(payload, "prompts", len(query))
    if prompts is not None:
        for i, text in enumerate(prompts):
            _check_text_field(text, f"prompts[{i}]", config, allow_empty=True)
    labels = _optional_list(payload, "labels", len(query))  # any JSON per item: only non-empty strings are references
    return RewardRequest(query=query, prompts=prompts, labels=labels)


def _check_text_field(value: Any, name: str, config: ServeConfig, *, allow_empty: bool) -> None:
    try:
        check_text(value, name, allow_empty=allow_empty)
    except SelfJInputError as err:
        raise RequestError(400, str(err), name.split("[")[0]) from None
    if len(value) > config.max_chars_per_text:
        raise RequestError(
            413,
            f"`{name}` has {len(value)} characters, over the limit of {config.max_chars_per_text}.",
            name.split("[")[0],
        )


_INSTRUCTION_SENTINEL = "\u2063SELFJ_INSTRUCTION\u2063"


class TeacherViewBuilder:
    """Rebuild (instruction, response) from OpenRLHF's templated prompt and query, to format the teacher view.

    ``query`` is ``prompt`` followed by the response (OpenRLHF decodes the prompt and response tokens together), so the
    response is what follows the prompt. When the prompt carries a chat template the judge also uses (or the plain
    ``### Instruction`` prompt), the instruction is recovered from it; otherwise the prompt is taken as the
    instruction. Rows where the query does not start with the prompt fall back to the student view.
    """

    def __init__(self, judge: Any) -> None:
        self.judge = judge
        tokenizer = judge.tokenizer
        self._chat_affixes: tuple[str, str] | None = None
        if has_chat_template(tokenizer):
            try:
                rendered = tokenizer.apply_chat_template(
                    [{"role": "user", "content": _INSTRUCTION_SENTINEL}], tokenize=False, add_generation_prompt=True
                )
                if isinstance(rendered, str) and rendered.count(_INSTRUCTION_SENTINEL) == 1:
                    prefix, suffix = rendered.split(_INSTRUCTION_SENTINEL)
                    self._chat_affixes = (prefix, suffix)
            except Exception:  # noqa: BLE001 - a template that cannot render a lone user turn: no recovery
                self._chat_affixes = None
        # Special tokens the policy may have emitted at the end (eos, end-of-turn); the judge's template adds its own.
        specials = set(getattr(tokenizer, "all_special_tokens", None) or [])
        specials |= {tokenizer.eos_token, tokenizer.pad_token}
        specials.discard(getattr(tokenizer, "unk_token", None))
        self._end_markers = sorted((t for t in specials if isinstance(t, str) and t.strip()), key=len, reverse=True)

    def instruction(self, prompt: str) -> str:
        match = PLAIN_PROMPT_RE.match(prompt)  # the plain prompt the judge's TRL reward function recognises
        if match:
            return match.group("instruction")
        if self._chat_affixes is not None:
            prefix, suffix = self._chat_affixes
            if len(prompt) >= len(prefix) + len(suffix) and prompt.startswith(prefix) and prompt.endswith(suffix):
                return prompt[len(prefix) : len(prompt) - len(suffix)]
        return prompt

    def response(self, query: str, prompt: str) -> str | None:
        if not prompt or not query.startswith(prompt):
            return None
        response = query[len(prompt) :].rstrip()
        stripped = True
        while stripped:
            stripped = False
            for marker in self._end_markers:
                if response.endswith(marker):
                    response = response[: -len(marker)].rstrip()
                    stripped = True
        return response

    def text(self, query: str, prompt: str, label: Any) -> str | None:
        """The teacher-view text, or None when this row must be scored on its student view."""
        if not isinstance(label, str) or not label.strip():
            return None
        response = self.response(query, prompt)
        instruction = self.instruction(prompt)
        if response is None or not instruction.strip():
            return None
        return self.judge.format(instruction, response, label)


def score_scale(judge: Any) -> tuple[float, float]:
    """The judge's ``(low, high)`` score scale from its ``config.selfj``; (0, 1) when absent or unusable."""
    scale = (getattr(judge, "format_config", None) or {}).get("score_scale") or (0.0, 1.0)
    try:
        low, high = float(scale[0]), float(scale[1])
    except (TypeError, ValueError, IndexError):
        return 0.0, 1.0
    return (low, high) if high > low else (0.0, 1.0)


def unit_scores(rewards: Sequence[float], scale: tuple[float, float], stats: dict | None = None) -> list[float]:
    """OpenRLHF's ``scores`` (dynamic filtering) are in [0, 1].

    With recorded reward stats they are ``sigmoid((score - mean) / std)``: bounded without clipping, so a pairwise
    judge's unbounded logits keep their order instead of piling up at 0 and 1. Without stats, the judge's score
    scale is mapped there and clipped (a pointwise judge's scores estimate label / label_max).
    """
    if stats is not None:
        return [_sigmoid(z) for z in standardize(rewards, stats)]
    low, high = scale
    return [min(1.0, max(0.0, (r - low) / (high - low))) for r in rewards]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def texts_to_score(request: RewardRequest, teacher: TeacherViewBuilder | None) -> tuple[list[str], list[float]]:
    """The text scored for each query (the teacher view when ``teacher`` can build one) and 1.0 where it did."""
    texts, teacher_flags = list(request.query), [0.0] * len(request.query)
    if teacher is not None and request.prompts is not None and request.labels is not None:
        for i, (query, prompt, label) in enumerate(zip(request.query, request.prompts, request.labels, strict=True)):
            view = teacher.text(query, prompt, label)
            if view is not None:
                texts[i], teacher_flags[i] = view, 1.0
    return texts, teacher_flags


def reward_response(
    rewards: list[float],
    scale: tuple[float, float],
    teacher_flags: list[float],
    stats: dict | None = None,
    normalize: bool = False,
) -> dict:
    """The JSON answer OpenRLHF reads: ``rewards`` (standardised by ``stats`` with ``normalize``), ``scores`` in
    [0, 1] (see :func:`unit_scores`) and ``extra_logs``."""
    return {
        "rewards": standardize(rewards, stats) if normalize else rewards,
        "scores": unit_scores(rewards, scale, stats),
        "extra_logs": {"selfj_teacher_view": teacher_flags},
    }
