"""Using a published judge: scoring, a TRL reward callable, answer-or-decline thresholds.

A Self-J judge is a plain one-label ``AutoModelForSequenceClassification``, so TRL's GRPO / RLOO / online DPO take
its folder or Hub id as ``reward_funcs`` directly (:mod:`selfj_trl.rewards` builds those and the prompt datasets).
:class:`SelfJudge` is for everything around those loops: scoring tables (batched, sorted by length so little compute
goes to padding), a reward callable that keeps the judge's own input format whatever the dataset looks like, and
answer-or-decline decisions with a threshold from :func:`calibrate_threshold`.

Every number :meth:`SelfJudge.score` returns is the number TRL computes for the same prompt/completion: the views
come from :mod:`selfj_trl.judge_views`, tokenized with ``add_special_tokens=False``, right-padded, ``logits[:, 0]``.
Views longer than the judge's ONE ``max_length`` (recorded in ``config.selfj`` at training) are cut by the rule
training used (:func:`selfj_trl.judge_views.build_views`), where TRL would pass them whole.

CLI: ``selfj-trl score`` (:mod:`selfj_trl.score`).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .errors import SelfJInputError, first_line
from .hub import find_judge_config, require_complete_judge
from .io import is_hub_id
from .judge_views import (
    build_views,
    format_student_view,
    format_teacher_view,
    is_single_turn,
    last_user_turn,
    message_text,
    parse_plain_view,
    recorded_reward_stats,
    standardize,
    tokenize_view,
    view_settings,
)
from .models import compute_dtype, default_device, load_model_config, load_tokenizer, resolve_model, weights_error
from .prompts import JUDGE_CONFIG_KEY, PLAIN_PROMPT_RE, check_text, has_chat_template
from .thresholds import calibrate_threshold


__all__ = ["DEFAULT_DECLINE_MESSAGE", "SelfJudge", "calibrate_threshold"]


#: Lists longer than this many batches get a progress bar when ``show_progress`` is left to us.
_PROGRESS_MIN_BATCHES = 8

#: What :meth:`SelfJudge.follow` says instead of an answer it does not trust.
DEFAULT_DECLINE_MESSAGE = "I am not confident I can answer this well, so I would rather not answer."


def _as_text_list(values: Any, field_name: str) -> list:
    """A list from a list-like; a single string becomes a one-item list (never a list of its characters)."""
    if values is None:
        raise SelfJInputError(f"`{field_name}` is None; pass a list of strings.")
    if isinstance(values, str):
        return [values]
    if not isinstance(values, Sequence) and not hasattr(values, "__iter__"):
        raise SelfJInputError(f"`{field_name}` must be a list of strings, got {type(values).__name__}.")
    return list(values)


def _check_same_length(first: list, first_name: str, other: list, other_name: str) -> None:
    if len(first) != len(other):
        raise SelfJInputError(
            f"`{other_name}` has {len(other)} items but `{first_name}` has {len(first)}; pass one per row."
        )


def check_judge_config(config: Any, path: str) -> None:
    """Refuse a sequence classifier with more than one label: a judge's score is its one logit, and loading it as one
    label would drop (or reshape) its trained head."""
    architectures = getattr(config, "architectures", None) or []
    is_classifier = any(str(a).endswith("ForSequenceClassification") for a in architectures)
    if is_classifier and config.num_labels != 1:
        raise SelfJInputError(
            f"{path} is a classifier with {config.num_labels} labels (num_labels in config.json); a judge has one "
            "label (its score). Train one with `selfj-trl train`."
        )


class SelfJudge:
    """A published Self-J judge, ready to score (instruction, response) pairs.

    Build it with :meth:`from_pretrained` (a folder, a Hub id or an offline alias) or wrap a loaded one-label
    sequence classifier and its tokenizer with ``SelfJudge(model, tokenizer)``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        chat: bool | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if tokenizer.pad_token_id is None:  # as GRPO does: the classifier reads the last non-pad token
            tokenizer.pad_token = tokenizer.eos_token
        if tokenizer.pad_token_id is None:
            raise SelfJInputError(
                "the judge's tokenizer has neither a pad nor an eos token; set `tokenizer.pad_token`."
            )
        model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
        if device is not None:
            model.to(device)
        model.eval()
        self.model = model
        self.tokenizer = tokenizer
        self.format_config: dict = dict(getattr(model.config, JUDGE_CONFIG_KEY, None) or {})
        if chat is None:
            fmt = self.format_config.get("format")
            chat = has_chat_template(tokenizer) if fmt is None else fmt == "chat"
        if chat and not has_chat_template(tokenizer):
            raise SelfJInputError(
                "the judge's config says its inputs are chat-formatted but its tokenizer has no chat template; "
                "save the training tokenizer with the judge or pass `chat=False`."
            )
        self.chat = bool(chat)
        # ONE length: the one the judge was trained at (config.selfj), else the model's position limit.
        recorded = self.format_config.get("max_length")
        if max_length is None:
            max_length = recorded if isinstance(recorded, int) and recorded > 0 else self._default_max_length()
        self.max_length = max_length
        self.view_settings = view_settings(self.format_config)

    # ------------------------------------------------------------------------------------------------------------
    # Loading
    # ------------------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        dtype: Any = "auto",
        trust_remote_code: bool = False,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> SelfJudge:
        """Load a judge folder / Hub id / offline alias (safetensors weights only; no remote code unless asked).

        ``kwargs`` go to ``AutoModelForSequenceClassification.from_pretrained`` (e.g. ``revision``).
        """
        from safetensors import SafetensorError
        from transformers import AutoModelForSequenceClassification

        if not isinstance(path_or_hub_id, (str, os.PathLike)) or not str(path_or_hub_id):
            raise SelfJInputError(f"`judge` must be a folder or Hub id, got {path_or_hub_id!r}.")
        path = resolve_model(str(path_or_hub_id))
        folder = Path(path).expanduser()
        if not folder.exists() and not is_hub_id(path):
            raise SelfJInputError(
                f"judge folder {path} does not exist (and is not a Hub id `org/name`); train one with "
                "`selfj-trl train` first."
            )
        if folder.is_dir() and not (folder / "config.json").exists():
            raise SelfJInputError(
                f"{path} is not a judge folder (no config.json); pass the folder `selfj-trl train` wrote."
            )
        if folder.is_dir():
            require_complete_judge(folder)  # a half-written judge (killed save) would load and score garbage
        revision = kwargs.get("revision")
        check_judge_config(
            load_model_config(path, "judge", trust_remote_code=trust_remote_code, revision=revision), path
        )
        load_kwargs = {"num_labels": 1, "use_safetensors": True, "trust_remote_code": trust_remote_code, **kwargs}
        device = device or default_device()
        load_kwargs["dtype"] = compute_dtype(dtype, device)
        try:
            tokenizer = load_tokenizer(path, "judge", trust_remote_code=trust_remote_code, revision=revision)
            model = AutoModelForSequenceClassification.from_pretrained(path, **load_kwargs)
        except SafetensorError as err:
            raise weights_error("judge", path, err) from err
        except OSError as err:  # missing files, unknown Hub repo, no network
            if "safetensors" in str(err).lower():
                raise SelfJInputError(
                    f"{path} has no safetensors weights; re-save the judge with `save_pretrained(..., "
                    "safe_serialization=True)` (pickled .bin weights are never loaded)."
                ) from err
            raise SelfJInputError(f"could not load judge {path!r}: {first_line(err)}") from err
        if not getattr(model.config, JUDGE_CONFIG_KEY, None) and folder.is_dir():
            # An adapter-only (unmerged LoRA) judge keeps its format in selfj.json next to the adapter; a plain
            # sequence classifier has neither, and its format comes from its tokenizer.
            judge_config = find_judge_config(folder)
            if judge_config is not None:
                setattr(model.config, JUDGE_CONFIG_KEY, judge_config)
        return cls(model, tokenizer, max_length=max_length, device=device)

    def _default_max_length(self) -> int | None:
        text_config = self.model.config.get_text_config()
        for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
            value = getattr(text_config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        value = getattr(self.tokenizer, "model_max_length", None)
        return value if isinstance(value, int) and 0 < value < 1_000_000 else None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------------------------------------------
    # Scoring
    # ------------------------------------------------------------------------------------------------------------
    def format(self, instruction: str, response: str, reference: str | None = None) -> str:
        """The text the judge reads for one pair: the student view, or the teacher view given a reference."""
        if reference is None:
            return format_student_view(self.tokenizer, instruction, response, chat=self.chat)
        return format_teacher_view(self.tokenizer, instruction, response, reference, chat=self.chat)

    def score(
        self,
        instructions: Sequence[str] | str,
        responses: Sequence[str] | str,
        *,
        references: Sequence[str] | str | None = None,
        batch_size: int = 16,
        show_progress: bool | None = None,
    ) -> list[float]:
        """Judge scores for (instruction, response) pairs, in input order.

        With ``references`` the teacher view is scored (the reference-aware view the judge was distilled from);
        without, the student view, which is what a reward model sees inside TRL. Empty responses are valid (they are
        scored, usually low); empty instructions are not.
        """
        instructions = _as_text_list(instructions, "instructions")
        responses = _as_text_list(responses, "responses")
        _check_same_length(instructions, "instructions", responses, "responses")
        refs = None if references is None else _as_text_list(references, "references")
        if refs is not None:
            _check_same_length(instructions, "instructions", refs, "references")
        ids = []
        for i, (instruction, response) in enumerate(zip(instructions, responses, strict=True)):
            check_text(instruction, f"instructions[{i}]")
            check_text(response, f"responses[{i}]", allow_empty=True)
            reference = None if refs is None else check_text(refs[i], f"references[{i}]")
            ids.append(self.view_ids(instruction, response, reference))
        return self._score_ids(ids, batch_size=batch_size, show_progress=show_progress)

    def view_ids(self, instruction: str, response: str, reference: str | None = None) -> list[int]:
        """Token ids of the view :meth:`score` reads, cut to ``max_length`` by the training rule."""
        views = build_views(
            self.tokenizer,
            instruction,
            response,
            reference,
            chat=self.chat,
            max_length=self.max_length,
            **self.view_settings,
        )
        return views.student if reference is None else views.teacher

    def score_texts(
        self, texts: Sequence[str] | str, *, batch_size: int = 16, show_progress: bool | None = None
    ) -> list[float]:
        """Scores for already formatted full texts (e.g. an OpenRLHF query, or TRL's ``prompt + completion``).

        A plain judge's texts in its own student or teacher format are split back into their parts and cut by the
        training rule; any other text keeps its start (:func:`~selfj_trl.judge_views.tokenize_view`).
        """
        texts = _as_text_list(texts, "texts")
        ids = []
        for i, text in enumerate(texts):
            check_text(text, f"texts[{i}]")
            parts = None if self.chat else parse_plain_view(text)
            ids.append(
                tokenize_view(self.tokenizer, text, self.max_length) if parts is None else self.view_ids(*parts)
            )
        return self._score_ids(ids, batch_size=batch_size, show_progress=show_progress)

    def _score_ids(self, ids: list[list[int]], *, batch_size: int, show_progress: bool | None) -> list[float]:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SelfJInputError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        # Longest first: similar lengths share a batch (little padding) and an out-of-memory error shows up at once.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        if show_progress is None:
            show_progress = len(batches) >= _PROGRESS_MIN_BATCHES
        scores = [0.0] * len(ids)
        pad_id = self.tokenizer.pad_token_id
        device = self.device
        with torch.inference_mode():
            for batch in tqdm(batches, desc="judge", unit="batch", disable=not show_progress, file=sys.stderr):
                width = len(ids[batch[0]])
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, index in enumerate(batch):  # right padding, as TRL's reward-model calls
                    seq = ids[index]
                    input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                    attention_mask[row, : len(seq)] = 1
                logits = self.model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits[
                    :, 0
                ]
                for index, value in zip(batch, logits.float().cpu().tolist(), strict=True):
                    scores[index] = value
        return scores

    # ------------------------------------------------------------------------------------------------------------
    # TRL's prompt/completion rows
    # ------------------------------------------------------------------------------------------------------------
    def score_completions(self, prompts: list, completions: list, *, batch_size: int = 16) -> list[float]:
        """Scores for TRL's ``prompts`` / ``completions``, always in the judge's own input format.

        * conversational rows (lists of messages): a chat judge reads ``chat_template(prompt + completion)`` exactly
          as TRL would; a plain judge reads the plain view of the last user turn and the completion;
        * plain strings written with :data:`~selfj_trl.prompts.PLAIN_PROMPT_TEMPLATE`: the instruction is recovered
          and formatted the judge's way (so a chat judge still gets its chat view);
        * any other plain string: ``prompt + completion``, as TRL hands it to a reward model.

        Unlike a reward model given by path, long texts are cut to the judge's ``max_length`` by the training rule
        (keeping the start) instead of failing, and batches are sorted by length.
        """
        from trl.data_utils import apply_chat_template, is_conversational

        prompts = _as_text_list(prompts, "prompts")
        completions = _as_text_list(completions, "completions")
        _check_same_length(prompts, "prompts", completions, "completions")
        if not prompts:
            return []
        if is_conversational({"prompt": prompts[0]}):
            if self.chat and all(is_single_turn(p, c) for p, c in zip(prompts, completions, strict=True)):
                # [user] + [assistant] formats to the student view: cut it by the training rule.
                return self.score(
                    [p[0]["content"] for p in prompts],
                    [c[0]["content"] for c in completions],
                    batch_size=batch_size,
                    show_progress=False,
                )
            if self.chat:
                texts = [
                    apply_chat_template({"messages": list(p) + list(c)}, self.tokenizer)["text"]
                    for p, c in zip(prompts, completions, strict=True)
                ]
                return self.score_texts(texts, batch_size=batch_size, show_progress=False)
            instructions = [last_user_turn(p, i) for i, p in enumerate(prompts)]
            responses = [message_text(c) for c in completions]
            return self.score(instructions, responses, batch_size=batch_size, show_progress=False)
        scores: list[float | None] = [None] * len(prompts)
        pairs, raw = [], []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            check_text(prompt, f"prompts[{i}]")
            check_text(completion, f"completions[{i}]", allow_empty=True)
            match = PLAIN_PROMPT_RE.match(prompt)
            (pairs if match else raw).append((i, match.group("instruction") if match else prompt, completion))
        if pairs:
            values = self.score(
                [p[1] for p in pairs], [p[2] for p in pairs], batch_size=batch_size, show_progress=False
            )
            for (i, _, _), value in zip(pairs, values, strict=True):
                scores[i] = value
        if raw:
            values = self.score_texts([p + c for _, p, c in raw], batch_size=batch_size, show_progress=False)
            for (i, _, _), value in zip(raw, values, strict=True):
                scores[i] = value
        return [float(s) for s in scores]

    @property
    def reward_stats(self) -> dict | None:
        """Mean and std of the judge's scores on its reference set (``config.selfj.reward_stats``), or None."""
        return recorded_reward_stats(self.format_config)

    def as_reward_func(
        self, *, batch_size: int = 16, name: str = "selfj_judge", normalize: bool = False
    ) -> Callable[..., list[float]]:
        """A ``reward_funcs`` entry for TRL's GRPO / RLOO / online DPO: :meth:`score_completions` under ``name``.

        ``normalize=True`` standardises by the recorded :attr:`reward_stats`, so that a judge's rewards have the
        same spread as OpenRLHF's ``normalize_reward`` gives them whatever the judge's loss made of its scale.
        """
        stats = self.reward_stats
        if normalize and stats is None:
            raise SelfJInputError(
                "normalize=True needs the judge's reward stats (config.selfj.reward_stats); it has none."
            )

        def reward(prompts: list, completions: list, **trl_kwargs: Any) -> list[float]:
            scores = self.score_completions(prompts, completions, batch_size=batch_size)
            return standardize(scores, stats) if normalize else scores

        reward.__name__ = name
        reward.__qualname__ = name
        return reward

    # ------------------------------------------------------------------------------------------------------------
    # Selective instruction following
    # ------------------------------------------------------------------------------------------------------------
    def decide(
        self, instruction: str | Sequence[str], response: str | Sequence[str], threshold: float
    ) -> dict | list[dict]:
        """``{"decision": "answer" | "decline", "score", "threshold"}``: answer only when the score >= threshold.

        Lists of instructions and responses give a list of decisions (scored in batches).
        """
        threshold = _check_threshold(threshold)
        single = isinstance(instruction, str) and isinstance(response, str)
        scores = self.score(instruction, response)
        decisions = [
            {"decision": "answer" if s >= threshold else "decline", "score": s, "threshold": threshold} for s in scores
        ]
        return decisions[0] if single else decisions

    def follow(
        self,
        instruction: str | Sequence[str],
        response: str | Sequence[str],
        threshold: float,
        *,
        decline_message: str = DEFAULT_DECLINE_MESSAGE,
    ) -> str | list[str]:
        """The response when the judge trusts it (score >= threshold), else ``decline_message``."""
        decisions = self.decide(instruction, response, threshold)
        if isinstance(decisions, dict):
            return response if decisions["decision"] == "answer" else decline_message
        responses = _as_text_list(response, "response")
        return [r if d["decision"] == "answer" else decline_message for r, d in zip(responses, decisions, strict=True)]

    def __repr__(self) -> str:
        name = getattr(self.model.config, "_name_or_path", type(self.model).__name__)
        return f"SelfJudge({name!r}, format={'chat' if self.chat else 'plain'}, max_length={self.max_length})"


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise SelfJInputError(f"`threshold` must be a number, got {threshold!r}; pick one with calibrate_threshold().")
    return float(threshold)
