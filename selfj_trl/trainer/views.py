"""From a labeled table to the trainer's rows: validation, the two tokenized views, pairs, and the collator.

Every labeled row becomes a **student view** (instruction + response, what TRL's online trainers feed a reward
model) and a **teacher view** (the same plus the gold reference); the formats themselves live in
:mod:`selfj_trl.judge_views`, and both are cut to the judge's ``max_length`` by :func:`selfj_trl.judge_views.build_views`,
the rule :class:`~selfj_trl.judge.SelfJudge` applies in use. Pairwise training then turns rows into (chosen, rejected) pairs of the same instruction.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers.data.data_collator import DataCollatorMixin
from trl.trainer.utils import pad

from ..errors import SelfJInputError
from ..judge_views import CUT_FIELDS, build_views
from ..prompts import check_text
from ..tables import require_columns
from .config import JUDGE_FORMATS, SelfJRewardConfig


POINTWISE_COLUMNS = ("student_ids", "teacher_ids")
PAIRWISE_COLUMNS = ("chosen_student_ids", "rejected_student_ids", "chosen_teacher_ids", "rejected_teacher_ids")


def is_prepared(dataset: Dataset) -> bool:
    """Whether ``dataset`` already holds tokenized views (``RewardTrainer.evaluate`` prepares its dataset again)."""
    columns = dataset.column_names
    return all(c in columns for c in POINTWISE_COLUMNS) or all(c in columns for c in PAIRWISE_COLUMNS)


def validate_labeled_dataset(dataset: Dataset, args: SelfJRewardConfig, what: str = "train dataset") -> None:
    """Raise a one-line :class:`SelfJInputError` naming the column, the row and the fix for any unusable row.

    Checked before tokenizing so that a bad row fails in seconds, not after an hour of training on garbage.
    """
    text_columns = [args.instruction_column, args.response_column, args.reference_column]
    require_columns(
        dataset,
        [*text_columns, args.label_column],
        what,
        hint="Produce it with `selfj-trl label`, or name your columns with --instruction_column, "
        "--response_column, --reference_column and --label_column.",
    )
    for column in text_columns:
        for i, value in enumerate(dataset[column]):
            try:
                check_text(value, column)
            except SelfJInputError as err:  # the same error, told which row
                raise SelfJInputError(f"{what} row {i}: {err}") from None
    raw = dataset[args.label_column]
    try:
        labels = np.asarray([np.nan if v is None or isinstance(v, bool) else v for v in raw], dtype=float)
    except (TypeError, ValueError):
        bad = next(i for i, v in enumerate(raw) if not isinstance(v, (int, float)) or isinstance(v, bool))
        raise SelfJInputError(
            f"{what} row {bad}: `{args.label_column}` must be a number, got {raw[bad]!r}; fix or drop the row."
        ) from None
    if labels.size and not np.isfinite(labels).all():
        bad = int(np.flatnonzero(~np.isfinite(labels))[0])
        raise SelfJInputError(
            f"{what} row {bad}: `{args.label_column}` is {raw[bad]!r} (missing, NaN or inf); drop the row or relabel."
        )
    outside = np.flatnonzero((labels < 0) | (labels > args.label_max))
    if outside.size:
        bad = int(outside[0])
        raise SelfJInputError(
            f"{what} row {bad}: `{args.label_column}`={labels[bad]:g} is outside [0, {args.label_max:g}]; "
            f"rescale the labels or set --label_max ({outside.size} row(s) outside)."
        )


def tokenize_views(
    example: dict, tokenizer: Any, args: SelfJRewardConfig, chat: bool | None, max_length: int | None
) -> dict:
    """One labeled row -> its student and teacher token ids, its target ``label / label_max`` and what was cut.

    Both views are cut by the ONE rule :class:`~selfj_trl.judge.SelfJudge` also uses (see
    :func:`selfj_trl.judge_views.build_views`), so the judge scores at use time exactly the views it trained on.
    """
    views = build_views(
        tokenizer,
        example[args.instruction_column],
        example[args.response_column],
        example[args.reference_column],
        chat=chat,
        max_length=max_length,
    )
    return {
        "student_ids": views.student,
        "teacher_ids": views.teacher,
        "target": float(example[args.label_column]) / args.label_max,
        "words": len(example[args.response_column].split()),
        **{name: getattr(views, name) for name in CUT_FIELDS},
    }


def count_cuts(views: Dataset) -> dict[str, int]:
    """``{"rows": n, "instruction_cut": .., "response_cut": .., "reference_cut": ..}`` of a tokenized table."""
    return {"rows": len(views), **{name: int(sum(views[name])) for name in CUT_FIELDS}}


def build_pairs(labels: list[float], groups: list[Any], min_gap: float = 0.0) -> list[tuple[int, int]]:
    """Every (chosen, rejected) pair of rows of the same group whose labels differ by more than ``min_gap``.

    Ties carry no preference, so they are skipped rather than turned into arbitrary orderings.
    """
    by_group: dict[Any, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    pairs = []
    for rows in by_group.values():
        for a_pos, a in enumerate(rows):
            for b in rows[a_pos + 1 :]:
                if abs(labels[a] - labels[b]) > min_gap:
                    pairs.append((a, b) if labels[a] > labels[b] else (b, a))
    return pairs


def length_residual_labels(
    labels: list[float], words: list[int], groups: list[Any], label_max: float
) -> tuple[list[float], float]:
    """Labels without their within-instruction linear trend in log(1 + words), and the slope taken out.

    One slope, fitted on every instruction's deviations from its own means (a fixed-effects fit), so that an
    instruction with two answers does not get a slope of its own; each instruction keeps its mean label, so the
    level across instructions, which length does not explain within one, is left alone. Clipped to the label's
    range, which the pointwise target needs.
    """
    x = np.log1p(np.asarray(words, dtype=float))
    y = np.asarray(labels, dtype=float)
    codes = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)[1]
    counts = np.bincount(codes)
    dx = x - (np.bincount(codes, weights=x) / counts)[codes]
    dy = y - (np.bincount(codes, weights=y) / counts)[codes]
    spread = float(dx @ dx)
    slope = float(dx @ dy) / spread if spread > 0 else 0.0
    return np.clip(y - slope * dx, 0.0, label_max).tolist(), slope


def log_length_gaps(chosen_words: list[int], rejected_words: list[int]) -> np.ndarray:
    """Each pair's log(1 + chosen words) - log(1 + rejected words): the length difference both pair controls use."""
    return np.log1p(np.asarray(chosen_words, dtype=float)) - np.log1p(np.asarray(rejected_words, dtype=float))


def length_expert_slope(chosen_words: list[int], rejected_words: list[int]) -> float:
    """The slope of a length-only preference model, ``P(chosen wins) = sigmoid(slope * (log(1 + chosen words) -
    log(1 + rejected words)))``, fitted on the pairs by maximum likelihood (Newton's method on one parameter).

    It is the bias expert of a product of experts (Clark et al., 2019; He et al., 2019): trained beside it, the judge
    is asked only for what this length model does not already explain, and at use the judge scores alone. A tiny
    ridge keeps the fit finite when every pair's chosen answer is the longer.
    """
    d = log_length_gaps(chosen_words, rejected_words)
    slope, ridge = 0.0, 1e-3 * max(len(d), 1)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-slope * d))
        grad = float(d @ (1.0 - p)) - ridge * slope
        hess = float((d * d) @ (p * (1.0 - p))) + ridge
        step = grad / hess
        slope += step
        if abs(step) < 1e-10:
            break
    return float(slope)


def length_matched_pairs(pairs: list[tuple[int, int]], words: list[int], ratio: float) -> list[tuple[int, int]]:
    """The pairs whose two answers are within ``ratio`` of each other in (words + 1).

    In such a pair the longer answer is not much longer, so the order the label gives it cannot be learnt as "longer
    wins"; the judge sees length vary only between pairs it cannot use it to order.
    """
    return [(c, r) for c, r in pairs if max(words[c], words[r]) + 1 <= ratio * (min(words[c], words[r]) + 1)]


def prepare_labeled_dataset(
    dataset: Dataset, tokenizer: Any, args: SelfJRewardConfig, max_length: int | None, what: str
) -> tuple[Dataset, dict[str, int], dict[str, float]]:
    """Validate a labeled table and turn it into the trainer's rows (both views per row, or both views per pair),
    with the count of rows whose instruction, response or reference had to be cut (see :func:`count_cuts`) and the
    record of what length control took out (``{"slope": ..}`` for ``residual`` and ``explained``, ``{"pairs_kept":
    .., "pairs": ..}`` for ``matched``; empty for ``none``)."""
    from trl.trainer.utils import global_then_local_main_first

    validate_labeled_dataset(dataset, args, what)
    columns = dataset.column_names
    with global_then_local_main_first():
        views = dataset.map(
            tokenize_views,
            fn_kwargs={
                "tokenizer": tokenizer,
                "args": args,
                "chat": JUDGE_FORMATS[args.judge_format],
                "max_length": max_length,
            },
            remove_columns=columns,
            num_proc=args.dataset_num_proc,
            desc=f"Tokenizing {what} (two views)",
        )
    cuts = count_cuts(views)
    views = views.remove_columns(list(CUT_FIELDS))
    groups = dataset[args.group_column] if args.group_column in columns else dataset[args.instruction_column]
    labels, record = [float(v) for v in dataset[args.label_column]], {}
    if args.length_control == "residual":
        labels, slope = length_residual_labels(labels, views["words"], groups, args.label_max)
        views = views.remove_columns("target").add_column("target", [v / args.label_max for v in labels])
        record = {"slope": slope}
    if args.loss_type == "pointwise":
        views = views.add_column("group", [str(g) for g in groups])
        return views.map(view_lengths, desc=f"Counting {what} tokens"), cuts, record
    pairs = build_pairs(labels, groups, args.min_label_gap)
    if pairs and args.length_control == "matched":
        kept = length_matched_pairs(pairs, views["words"], args.length_match_ratio)
        if not kept:
            raise SelfJInputError(
                f"{what}: none of the {len(pairs)} pairs has answers within length_match_ratio="
                f"{args.length_match_ratio:g} of each other in word count; raise --length_match_ratio or use "
                "--length_control none."
            )
        record, pairs = {"pairs_kept": len(kept), "pairs": len(pairs)}, kept
    if not pairs:
        raise SelfJInputError(
            f"{what}: no pair of responses to the same instruction has different labels; pairwise training "
            "needs several labeled samples per instruction (label with num_samples > 1) or use "
            "`loss_type=pointwise`."
        )
    student, teacher, target, words = views["student_ids"], views["teacher_ids"], views["target"], views["words"]
    data = {
        "chosen_student_ids": [student[c] for c, _ in pairs],
        "rejected_student_ids": [student[r] for _, r in pairs],
        "chosen_teacher_ids": [teacher[c] for c, _ in pairs],
        "rejected_teacher_ids": [teacher[r] for _, r in pairs],
        "chosen_words": [words[c] for c, _ in pairs],
        "rejected_words": [words[r] for _, r in pairs],
        "group": [str(groups[c]) for c, _ in pairs],
    }
    if args.use_margin:  # targets are already label / label_max
        data["margin"] = [target[c] - target[r] for c, r in pairs]
    if args.length_control == "explained":
        slope = length_expert_slope(data["chosen_words"], data["rejected_words"])
        data["length_offset"] = (slope * log_length_gaps(data["chosen_words"], data["rejected_words"])).tolist()
        record = {"slope": slope}
    if args.length_control == "decorrelated":
        data["length_gap"] = log_length_gaps(data["chosen_words"], data["rejected_words"]).tolist()
    return Dataset.from_dict(data).map(view_lengths, desc=f"Counting {what} tokens"), cuts, record


def view_max_length(max_length: int | None, model_config: Any) -> int | None:
    """``max_length`` capped by the model's position limit (a BERT judge cannot read past 512 tokens).

    The result is THE judge's length: recorded in ``config.selfj["max_length"]`` and used by every consumer.
    """
    limit = None
    if model_config is not None:
        text_config = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
        limit = getattr(text_config, "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 0:
        return limit if max_length is None else min(max_length, limit)
    return max_length


def view_lengths(example: dict) -> dict:
    """The tokens a prepared row puts through the judge (all its views): what ``group_by_length`` sorts by."""
    keys = POINTWISE_COLUMNS if POINTWISE_COLUMNS[0] in example else PAIRWISE_COLUMNS
    return {"length": sum(len(example[key]) for key in keys)}


@dataclass
class SelfJDataCollator(DataCollatorMixin):
    """Right-pads the student views and the teacher views of a batch separately: the student tensor is as wide as its
    longest student view, not as the teacher's (which carries the reference as well), so no forward pays for padding
    that only the other view needs.

    ``input_ids``/``attention_mask`` hold the student views, ``teacher_input_ids``/``teacher_attention_mask`` the
    teacher's; in pairwise mode each is ``[chosen..., rejected...]`` (the layout of TRL's
    ``DataCollatorForPreference``). ``pad_token_id`` is filled in by the trainer once the tokenizer's pad token is
    settled.
    """

    pad_token_id: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def pad_views(self, seqs: list[torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        masks = [torch.ones_like(s) for s in seqs]
        return {
            f"{prefix}input_ids": pad(seqs, self.pad_token_id, "right", self.pad_to_multiple_of),
            f"{prefix}attention_mask": pad(masks, 0, "right", self.pad_to_multiple_of),
        }

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.pad_token_id is None:
            raise ValueError("SelfJDataCollator.pad_token_id is not set.")
        keys = POINTWISE_COLUMNS if POINTWISE_COLUMNS[0] in examples[0] else PAIRWISE_COLUMNS
        student_keys = [k for k in keys if "student" in k]
        teacher_keys = [k for k in keys if "teacher" in k]
        views = {
            prefix: [torch.tensor(ex[key], dtype=torch.long) for key in view_keys for ex in examples]
            for prefix, view_keys in (("", student_keys), ("teacher_", teacher_keys))
        }
        out = {**self.pad_views(views[""], ""), **self.pad_views(views["teacher_"], "teacher_")}
        for key in ("target", "margin", "length_offset", "length_gap"):
            if key in examples[0]:
                out[key] = torch.tensor([ex[key] for ex in examples], dtype=torch.float)
        return out
