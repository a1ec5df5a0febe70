"""Using a published judge: scoring, TRL reward functions and selective instruction following.

A Self-J judge is a plain one-label ``AutoModelForSequenceClassification``, so TRL's GRPO / RLOO / online DPO take
its folder or Hub id as ``reward_funcs`` directly. :class:`SelfJudge` is for everything around those loops: scoring
tables (batched, sorted by length so little compute goes to padding), a reward callable that keeps the judge's own
input format whatever the dataset looks like, and answer-or-decline decisions with a calibrated threshold.

Every number :meth:`SelfJudge.score` returns is the number TRL computes for the same prompt/completion: the views
come from :mod:`selfj_trl.prompts`, tokenized with ``add_special_tokens=False``, right-padded, ``logits[:, 0]``.

CLI: ``selfj-trl score --judge PATH --dataset DS --output_file scores.jsonl``.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import SelfJInputError
from .models import as_dtype, default_device
from .prompts import (
    JUDGE_CONFIG_KEY,
    PLAIN_PROMPT_RE,
    PLAIN_PROMPT_TEMPLATE,
    check_text,
    format_student_view,
    format_teacher_view,
    has_chat_template,
    tokenize_view,
)

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
        self.max_length = max_length if max_length is not None else self._default_max_length()

    # ------------------------------------------------------------------------------------------------------------
    # Loading
    # ------------------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        dtype: Any = None,
        trust_remote_code: bool = False,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> SelfJudge:
        """Load a judge folder / Hub id / offline alias (safetensors weights only; no remote code unless asked).

        ``kwargs`` go to ``AutoModelForSequenceClassification.from_pretrained`` (e.g. ``revision``).
        """
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .models import resolve_model

        if not isinstance(path_or_hub_id, (str, os.PathLike)) or not str(path_or_hub_id):
            raise SelfJInputError(f"`judge` must be a folder or Hub id, got {path_or_hub_id!r}.")
        path = resolve_model(str(path_or_hub_id))
        looks_local = str(path).startswith((".", "/", "~")) or str(path).count("/") >= 2  # Hub ids are "org/name"
        if looks_local and not Path(path).expanduser().exists():
            raise SelfJInputError(f"judge folder {path} does not exist; train one with `selfj-trl train` first.")
        if Path(path).expanduser().is_dir() and not (Path(path).expanduser() / "config.json").exists():
            raise SelfJInputError(
                f"{path} is not a judge folder (no config.json); pass the folder `selfj-trl train` wrote."
            )
        revision = kwargs.get("revision")
        load_kwargs = {"num_labels": 1, "use_safetensors": True, "trust_remote_code": trust_remote_code, **kwargs}
        if dtype is not None:
            load_kwargs["dtype"] = as_dtype(dtype)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
            model = AutoModelForSequenceClassification.from_pretrained(path, **load_kwargs)
        except OSError as err:  # missing files, unknown Hub repo, no network
            if "safetensors" in str(err).lower():
                raise SelfJInputError(
                    f"{path} has no safetensors weights; re-save the judge with `save_pretrained(..., "
                    "safe_serialization=True)` (pickled .bin weights are never loaded)."
                ) from err
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SelfJInputError(f"could not load judge {path!r}: {first_line}") from err
        if not getattr(model.config, JUDGE_CONFIG_KEY, None) and Path(path).is_dir():
            # An adapter-only (unmerged LoRA) judge keeps its format in selfj.json next to the adapter.
            from .hub import read_judge_config

            try:
                setattr(model.config, JUDGE_CONFIG_KEY, read_judge_config(path))
            except SelfJInputError:
                pass  # a plain sequence classifier: format from its tokenizer
        return cls(model, tokenizer, max_length=max_length, device=device or default_device())

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
        texts = []
        for i, (instruction, response) in enumerate(zip(instructions, responses)):
            check_text(instruction, f"instructions[{i}]")
            check_text(response, f"responses[{i}]", allow_empty=True)
            reference = None if refs is None else check_text(refs[i], f"references[{i}]")
            texts.append(self.format(instruction, response, reference))
        return self.score_texts(texts, batch_size=batch_size, show_progress=show_progress)

    def score_texts(
        self, texts: Sequence[str] | str, *, batch_size: int = 16, show_progress: bool | None = None
    ) -> list[float]:
        """Scores for already formatted full texts (e.g. an OpenRLHF query, or TRL's ``prompt + completion``)."""
        texts = _as_text_list(texts, "texts")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SelfJInputError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        ids = []
        for i, text in enumerate(texts):
            check_text(text, f"texts[{i}]")
            ids.append(tokenize_view(self.tokenizer, text, self.max_length))
        return self._score_ids(ids, batch_size=batch_size, show_progress=show_progress)

    def _score_ids(self, ids: list[list[int]], *, batch_size: int, show_progress: bool | None) -> list[float]:
        # Longest first: similar lengths share a batch (little padding) and an out-of-memory error shows up at once.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        if show_progress is None:
            show_progress = len(batches) >= _PROGRESS_MIN_BATCHES
        scores = [0.0] * len(ids)
        pad_id = self.tokenizer.pad_token_id
        device = self.device
        from tqdm.auto import tqdm

        with torch.inference_mode():
            for batch in tqdm(batches, desc="judge", unit="batch", disable=not show_progress, file=sys.stderr):
                width = len(ids[batch[0]])
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, index in enumerate(batch):  # right padding, as TRL's reward-model calls
                    seq = ids[index]
                    input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                    attention_mask[row, : len(seq)] = 1
                logits = self.model(
                    input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)
                ).logits[:, 0]
                for index, value in zip(batch, logits.float().cpu().tolist()):
                    scores[index] = value
        return scores

    # ------------------------------------------------------------------------------------------------------------
    # TRL reward function
    # ------------------------------------------------------------------------------------------------------------
    def as_reward_func(self, *, batch_size: int = 16, name: str = "selfj_judge") -> Callable[..., list[float]]:
        """A ``reward_funcs`` entry for TRL's GRPO / RLOO / online DPO that always feeds the judge its own format.

        * conversational rows (lists of messages): a chat judge reads ``chat_template(prompt + completion)`` exactly
          as TRL would; a plain judge reads the plain view of the last user turn and the completion;
        * plain strings written with :data:`~selfj_trl.prompts.PLAIN_PROMPT_TEMPLATE`: the instruction is recovered
          and formatted the judge's way (so a chat judge still gets its chat view);
        * any other plain string: ``prompt + completion``, as TRL hands it to a reward model.

        Unlike a reward model given by path, long texts are cut to the judge's ``max_length`` (keeping their end)
        instead of failing, and batches are sorted by length.
        """

        def reward(prompts: list, completions: list, **kwargs: Any) -> list[float]:
            return self._reward(prompts, completions, batch_size=batch_size)

        reward.__name__ = name
        reward.__qualname__ = name
        return reward

    def _reward(self, prompts: list, completions: list, *, batch_size: int) -> list[float]:
        from trl.data_utils import apply_chat_template, is_conversational

        prompts = _as_text_list(prompts, "prompts")
        completions = _as_text_list(completions, "completions")
        _check_same_length(prompts, "prompts", completions, "completions")
        if not prompts:
            return []
        if is_conversational({"prompt": prompts[0]}):
            if self.chat:
                texts = [
                    apply_chat_template({"messages": list(p) + list(c)}, self.tokenizer)["text"]
                    for p, c in zip(prompts, completions)
                ]
                return self.score_texts(texts, batch_size=batch_size, show_progress=False)
            instructions = [_last_user_turn(p, i) for i, p in enumerate(prompts)]
            responses = [_message_text(c) for c in completions]
            return self.score(instructions, responses, batch_size=batch_size, show_progress=False)
        scores: list[float | None] = [None] * len(prompts)
        pairs, raw = [], []
        for i, (prompt, completion) in enumerate(zip(prompts, completions)):
            check_text(prompt, f"prompts[{i}]")
            check_text(completion, f"completions[{i}]", allow_empty=True)
            match = PLAIN_PROMPT_RE.match(prompt)
            (pairs if match else raw).append((i, match.group("instruction") if match else prompt, completion))
        if pairs:
            values = self.score(
                [p[1] for p in pairs], [p[2] for p in pairs], batch_size=batch_size, show_progress=False
            )
            for (i, _, _), value in zip(pairs, values):
                scores[i] = value
        if raw:
            values = self.score_texts([p + c for _, p, c in raw], batch_size=batch_size, show_progress=False)
            for (i, _, _), value in zip(raw, values):
                scores[i] = value
        return [float(s) for s in scores]

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
        return [r if d["decision"] == "answer" else decline_message for r, d in zip(list(response), decisions)]

    def __repr__(self) -> str:
        name = getattr(self.model.config, "_name_or_path", type(self.model).__name__)
        return f"SelfJudge({name!r}, format={'chat' if self.chat else 'plain'}, max_length={self.max_length})"


def _message_text(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    parts = []
    for message in messages:
        content = message.get("content", "") if isinstance(message, dict) else message
        if isinstance(content, list):  # multimodal-style content blocks: keep the text ones
            content = "".join(block.get("text", "") for block in content if isinstance(block, dict))
        parts.append(content or "")
    return "".join(parts)


def _last_user_turn(messages: Any, index: int) -> str:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise SelfJInputError(f"`prompts[{index}]` has no user message; conversational prompts need one.")
    return _message_text([users[-1]])


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise SelfJInputError(f"`threshold` must be a number, got {threshold!r}; pick one with calibrate_threshold().")
    return float(threshold)


# ----------------------------------------------------------------------------------------------------------------
# Threshold calibration
# ----------------------------------------------------------------------------------------------------------------
def _finite_floats(values: Any, field_name: str) -> list[float]:
    if values is None or isinstance(values, str) or not hasattr(values, "__iter__"):
        raise SelfJInputError(f"`{field_name}` must be a list of numbers, got {type(values).__name__}.")
    out = []
    for i, v in enumerate(values):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise SelfJInputError(f"`{field_name}[{i}]` is not a number: {v!r}.") from None
        if not math.isfinite(f):
            raise SelfJInputError(f"`{field_name}[{i}]` is {f}; drop rows without a finite value.")
        out.append(f)
    return out


def calibrate_threshold(
    scores: Sequence[float],
    qualities: Sequence[float] | None = None,
    *,
    target_coverage: float | None = None,
    target_quality: float | None = None,
) -> float:
    """The answer/decline threshold, chosen on held-out scored data (answer when score >= threshold).

    * ``target_coverage`` (0 < c <= 1): the highest threshold that still answers at least that fraction of rows
      (ties at the threshold are all kept, so coverage can come out a little higher);
    * ``target_quality`` (with ``qualities``, e.g. GPT-4 grades): the lowest threshold whose answered rows have a
      mean quality >= the target, i.e. the most coverage that meets the quality bar.
    """
    if (target_coverage is None) == (target_quality is None):
        raise SelfJInputError("pass exactly one of `target_coverage` or `target_quality`.")
    values = _finite_floats(scores, "scores")
    if not values:
        raise SelfJInputError("`scores` is empty; calibrate on a held-out set of scored rows.")
    ranked = sorted(values, reverse=True)
    if target_coverage is not None:
        if isinstance(target_coverage, bool) or not isinstance(target_coverage, (int, float)) or not (
            0 < target_coverage <= 1
        ):
            raise SelfJInputError(f"`target_coverage` must be in (0, 1], got {target_coverage!r}.")
        keep = max(1, math.ceil(target_coverage * len(ranked) - 1e-9))
        return ranked[keep - 1]

    if qualities is None:
        raise SelfJInputError("`target_quality` needs `qualities` (one quality grade per score).")
    quality = _finite_floats(qualities, "qualities")
    if len(quality) != len(values):
        raise SelfJInputError(f"`qualities` has {len(quality)} items but `scores` has {len(values)}; pass one per row.")
    if isinstance(target_quality, bool) or not isinstance(target_quality, (int, float)) or math.isnan(target_quality):
        raise SelfJInputError(f"`target_quality` must be a number, got {target_quality!r}.")
    pairs = sorted(zip(values, quality), key=lambda p: p[0], reverse=True)
    best: float | None = None
    best_mean = -math.inf
    total = 0.0
    for k, (score, q) in enumerate(pairs, start=1):
        total += q
        if k < len(pairs) and pairs[k][0] == score:
            continue  # a threshold keeps every row tied with it: only cut after the last of a tie group
        mean = total / k
        best_mean = max(best_mean, mean)
        if mean >= target_quality:
            best = score  # later cuts are lower thresholds with more coverage
    if best is None:
        raise SelfJInputError(
            f"no threshold reaches mean quality {target_quality}; the best any threshold gives is {best_mean:.4g}. "
            "Lower `target_quality`."
        )
    return best


# ----------------------------------------------------------------------------------------------------------------
# Glue for the TRL recipes (recipes/grpo, rloo, online_dpo): prompts in the policy's format, the judge as reward
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class JudgeRecipeArguments:
    """What every judge-in-the-loop recipe needs besides the TRL trainer's own config."""

    policy: str = field(default="smollm2-135m-instruct", metadata={"help": "Policy folder, Hub id or offline alias."})
    judge: str = field(default="outputs/quickstart/judge", metadata={"help": "Judge folder or Hub id."})
    dataset: str = field(
        default="selfj_trl/data/instructions.jsonl",
        metadata={"help": "Prompts: JSONL/CSV/Parquet file, save_to_disk folder or Hub id."},
    )
    split: str = field(default="train", metadata={"help": "Split of a Hub dataset or DatasetDict folder."})
    prompt_column: str = field(default="instruction", metadata={"help": "Column holding the instructions."})
    max_prompts: int | None = field(default=None, metadata={"help": "Use only the first N prompts."})
    judge_as: str = field(
        default="path",
        metadata={"help": "'path': TRL loads the judge (from_pretrained); 'callable': SelfJudge.as_reward_func."},
    )


def prompt_dataset(
    source: Any,
    tokenizer: Any,
    *,
    prompt_column: str = "instruction",
    split: str = "train",
    conversational: bool | None = None,
    max_prompts: int | None = None,
) -> Any:
    """A ``prompt``-only dataset in the policy's format for TRL's online trainers.

    Chat policies get ``[{"role": "user", ...}]`` (TRL applies their template), base policies the plain prompt
    format, so that TRL's ``prompt + completion`` is exactly the judge's plain student view.
    """
    from datasets import Dataset

    from .io import load_table, require_columns

    table = load_table(source, split)
    require_columns(table, [prompt_column], "prompt dataset", "Map yours with --prompt_column.")
    instructions = table[prompt_column]
    if max_prompts is not None:
        instructions = instructions[:max_prompts]
    for i, text in enumerate(instructions):
        check_text(text, f"{prompt_column}[{i}]")
    if conversational is None:
        conversational = has_chat_template(tokenizer)
    if conversational:
        prompts: list = [[{"role": "user", "content": text}] for text in instructions]
    else:
        prompts = [PLAIN_PROMPT_TEMPLATE.format(instruction=text) for text in instructions]
    return Dataset.from_dict({"prompt": prompts})


def judge_format(path_or_hub_id: str) -> str | None:
    """``"chat"`` / ``"plain"`` from a judge's ``config.selfj``, or None when it has no such section."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path_or_hub_id)
    return (getattr(config, JUDGE_CONFIG_KEY, None) or {}).get("format")


def judge_reward_funcs(judge: str, *, conversational: bool, judge_as: str = "path") -> list:
    """``reward_funcs`` for a TRL trainer: the judge's path (TRL calls ``from_pretrained``) or our callable.

    A judge given by path is fed ``prompt + completion`` by TRL, so its training format must match the prompts':
    a chat judge needs conversational prompts and a plain judge plain ones. We check that here rather than let
    the run train on quietly wrong rewards.
    """
    from .models import resolve_model

    path = resolve_model(judge)
    if judge_as == "callable":
        return [SelfJudge.from_pretrained(path).as_reward_func()]
    if judge_as != "path":
        raise SelfJInputError(f"`judge_as` must be 'path' or 'callable', got {judge_as!r}.")
    fmt = judge_format(path)
    if fmt is not None and (fmt == "chat") != conversational:
        prompts = "conversational" if conversational else "plain-text"
        raise SelfJInputError(
            f"the judge at {judge} was trained on {fmt} inputs but the policy's prompts are {prompts}; TRL would feed "
            "it a format it never saw. Use `--judge_as callable` (SelfJudge reformats) or a matching policy."
        )
    return [path]


# ----------------------------------------------------------------------------------------------------------------
# CLI: selfj-trl score
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ScoreConfig:
    """``selfj-trl score``: add a judge score column to a table of (instruction, response) rows."""

    judge: str = field(metadata={"help": "Judge folder, Hub id or offline alias."})
    dataset: str = field(metadata={"help": "Rows to score: a JSONL/CSV/Parquet file, save_to_disk folder or Hub id."})
    output_file: str = field(metadata={"help": "Where to write the rows with their scores (JSONL)."})
    split: str = field(default="train", metadata={"help": "Split of a Hub dataset or DatasetDict folder."})
    instruction_column: str = field(default="instruction", metadata={"help": "Column holding the instructions."})
    response_column: str = field(default="response", metadata={"help": "Column holding the responses."})
    reference_column: str | None = field(
        default=None, metadata={"help": "Optional reference column: scores the teacher view instead of the student."}
    )
    score_column: str = field(default="score", metadata={"help": "Name of the column the scores go to."})
    batch_size: int = field(default=16, metadata={"help": "Pairs per forward pass."})
    max_length: int | None = field(default=None, metadata={"help": "Token cap per view (default: the model's)."})
    max_rows: int | None = field(default=None, metadata={"help": "Score only the first N rows (smoke runs)."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: best available)."})
    dtype: str | None = field(default=None, metadata={"help": "Weights dtype, e.g. float32 or bfloat16."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})


def run_score(config: ScoreConfig) -> Path:
    """Score ``config.dataset`` with ``config.judge`` and write JSONL; returns the output path."""
    from .io import load_table, require_columns

    # The judge first: a wrong judge path fails at once instead of after the dataset is read.
    judge = SelfJudge.from_pretrained(
        config.judge, device=config.device, dtype=config.dtype, trust_remote_code=config.trust_remote_code,
        max_length=config.max_length,
    )
    table = load_table(config.dataset, config.split)
    if config.max_rows is not None:
        table = table.select(range(min(config.max_rows, len(table))))
    columns = [config.instruction_column, config.response_column]
    if config.reference_column:
        columns.append(config.reference_column)
    require_columns(
        table, columns, f"dataset {config.dataset}",
        "Map yours with --instruction_column / --response_column / --reference_column.",
    )
    scores = judge.score(
        table[config.instruction_column],
        table[config.response_column],
        references=table[config.reference_column] if config.reference_column else None,
        batch_size=config.batch_size,
        show_progress=True,
    )
    if config.score_column in table.column_names:
        table = table.remove_columns(config.score_column)
    table = table.add_column(config.score_column, scores)
    out = Path(config.output_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_json(str(out), lines=True, force_ascii=False)
    mean = sum(scores) / len(scores)
    print(f"scored {len(scores)} rows with {config.judge} (mean {mean:.4f}) -> {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    parser = TrlParser((ScoreConfig,), prog="selfj-trl score", description=ScoreConfig.__doc__)
    (config,) = parser.parse_args_and_config(argv)
    run_score(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
