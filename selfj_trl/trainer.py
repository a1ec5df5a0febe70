"""Stage 2: train a Self-J judge with :class:`SelfJRewardTrainer`, a thin subclass of TRL's ``RewardTrainer``.

Every labeled row is seen twice by the same model, in ONE forward pass per step:

* the **student view** (instruction + response): byte-for-byte what TRL's online trainers feed a reward model, so
  the published judge scores exactly what GRPO / RLOO / online DPO will hand it;
* the **teacher view** (the same, plus the gold reference in a system / preamble turn).

The loss is ``teacher_weight * L(teacher, label) + student_weight * L(student, label)
+ distill_weight * D(student, stopgrad(teacher))`` with ``L`` a pointwise regression on ``label / label_max`` or the
Bradley-Terry loss of RewardTrainer on pairs of responses to the same instruction, and ``D`` the squared distance
between the student's and the detached teacher's scores. Everything else (optimizer, logging, ``peft_config``,
checkpoints, multi-process training) is RewardTrainer's.

CLI: ``selfj-trl train --config recipes/train/judge_minilm.yaml`` or
``accelerate launch --config_file recipes/accelerate/single_cpu.yaml -m selfj_trl.trainer --config ...``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, IterableDataset
from transformers.data.data_collator import DataCollatorMixin
from trl import ModelConfig, RewardConfig, RewardTrainer, TrlParser, get_peft_config
from trl.trainer.utils import pad

from .errors import SelfJInputError
from .prompts import check_text, format_student_view, format_teacher_view, judge_format_config, tokenize_view

LOSS_TYPES = ("pointwise", "pairwise")
JUDGE_FORMATS = {"auto": None, "chat": True, "plain": False}
#: Mirror of ``config.selfj`` written next to every judge: an adapter-only (unmerged LoRA) judge has no config.json.
SELFJ_JSON = "selfj.json"
_POINTWISE_COLUMNS = ("student_ids", "teacher_ids")
_PAIRWISE_COLUMNS = ("chosen_student_ids", "rejected_student_ids", "chosen_teacher_ids", "rejected_teacher_ids")


def _accelerator_available(use_cpu: bool) -> bool:
    if use_cpu:
        return False
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, MPS, XPU, ...
    return bool(accelerator.is_available()) if accelerator is not None else torch.cuda.is_available()


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class SelfJConfig(RewardConfig):
    r"""Configuration of :class:`SelfJRewardTrainer` (and of the ``selfj-trl train`` script).

    Adds the Self-J loss weights, the label scale, the column names of the labeled table and the judge's publishing
    options to TRL's ``RewardConfig``. ``bf16`` and ``gradient_checkpointing`` default to on only when a GPU is
    present: on CPU, bf16 autocast is slow or unsupported and checkpointing only costs time.
    """

    # Script fields
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Labeled dataset (the output of `selfj-trl label`): a save_to_disk folder, a "
                          "JSON/JSONL/CSV/Parquet file or a Hub dataset id."},
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str | None = field(
        default=None, metadata={"help": "Optional split to evaluate on (its metrics go into the model card)."}
    )
    hub_dataset_id: str | None = field(
        default=None,
        metadata={"help": "Hub id of the labeled dataset, recorded in the judge's config and card (defaults to "
                          "`dataset_name` when that is a Hub id)."},
    )
    # Self-J loss
    teacher_weight: float = field(default=1.0, metadata={"help": "Weight of the teacher view's label loss."})
    student_weight: float = field(default=0.3, metadata={"help": "Weight of the student view's label loss."})
    distill_weight: float = field(
        default=2.0, metadata={"help": "Weight of the distillation term D(student, stopgrad(teacher))."}
    )
    loss_type: str = field(
        default="pointwise",
        metadata={"help": "Label loss: `pointwise` (MSE to label/label_max) or `pairwise` (Bradley-Terry on pairs "
                          "of responses to the same instruction, ordered by label).",
                  "choices": list(LOSS_TYPES)},
    )
    use_margin: bool = field(
        default=False,
        metadata={"help": "Pairwise only: subtract the label gap / label_max from the score difference."},
    )
    min_label_gap: float = field(
        default=0.0, metadata={"help": "Pairwise only: pairs whose labels differ by at most this are skipped."}
    )
    label_max: float = field(
        default=9.0, metadata={"help": "Top of the label scale (labels lie in [0, label_max]; Self-J uses 0-9)."}
    )
    judge_format: str = field(
        default="auto",
        metadata={"help": "How views are formatted: `chat` (the tokenizer's chat template, for conversational "
                          "GRPO data), `plain` (prompt + completion) or `auto` (chat when the tokenizer has a "
                          "template).", "choices": list(JUDGE_FORMATS)},
    )
    # Columns
    instruction_column: str = field(default="instruction", metadata={"help": "Column holding the instruction."})
    response_column: str = field(default="response", metadata={"help": "Column holding the judged response."})
    reference_column: str = field(default="reference", metadata={"help": "Column holding the gold reference."})
    label_column: str = field(default="label", metadata={"help": "Column holding the Self-J label (0..label_max)."})
    group_column: str = field(
        default="instruction_id",
        metadata={"help": "Pairwise only: column grouping responses to the same instruction (falls back to the "
                          "instruction text when absent)."},
    )
    # Publishing
    merge_adapter_on_save: bool = field(
        default=True,
        metadata={"help": "With LoRA, merge the adapter into the base weights when saving the judge, so the "
                          "published judge is a plain AutoModelForSequenceClassification."},
    )
    # CPU-aware overrides of TRL defaults (None = decide from the hardware in __post_init__)
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Gradient checkpointing; defaults to on with a GPU, off on CPU."},
    )

    def __post_init__(self):
        accel = _accelerator_available(self.use_cpu)
        if not accel:
            # Without an accelerator, say so: Trainer then builds a gloo (CPU) process group under
            # `accelerate launch` / torchrun instead of silently running every process on its own.
            self.use_cpu = True
        if self.bf16 is None and not self.fp16:
            self.bf16 = accel and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if not accel:
            self.dataloader_pin_memory = False  # nothing to pin to without an accelerator (torch warns otherwise)
        # transformers >= 5.20 renamed gradient_checkpointing to activation_checkpointing (the old name warns):
        # resolve both here so that our default never triggers the deprecation warning.
        if getattr(self, "activation_checkpointing", "absent") is None:
            self.activation_checkpointing = accel if self.gradient_checkpointing is None else self.gradient_checkpointing
            self.gradient_checkpointing = None
        elif self.gradient_checkpointing is None:
            self.gradient_checkpointing = accel
        if self.loss_type not in LOSS_TYPES:
            raise SelfJInputError(f"`loss_type` must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}.")
        if self.judge_format not in JUDGE_FORMATS:
            raise SelfJInputError(f"`judge_format` must be one of {list(JUDGE_FORMATS)}, got {self.judge_format!r}.")
        for name in ("teacher_weight", "student_weight", "distill_weight", "min_label_gap"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise SelfJInputError(f"`{name}` must be a finite number >= 0, got {value!r}.")
        if self.teacher_weight == 0 and self.student_weight == 0:
            raise SelfJInputError("`teacher_weight` and `student_weight` are both 0: nothing learns the labels.")
        if not (math.isfinite(self.label_max) and self.label_max > 0):
            raise SelfJInputError(f"`label_max` must be a positive number, got {self.label_max!r}.")
        if self.use_margin and self.loss_type != "pairwise":
            raise SelfJInputError("`use_margin` only applies to `loss_type=pairwise`; drop it or switch loss_type.")
        super().__post_init__()


# ---------------------------------------------------------------------------------------------------------------
# Input validation and tokenization
# ---------------------------------------------------------------------------------------------------------------
def validate_labeled_dataset(dataset: Dataset, args: SelfJConfig, what: str = "train dataset") -> None:
    """Raise a one-line :class:`SelfJInputError` naming the column, the row and the fix for any unusable row.

    Checked before tokenizing so that a bad row fails in seconds, not after an hour of training on garbage.
    """
    from .io import require_columns

    text_columns = [args.instruction_column, args.response_column, args.reference_column]
    require_columns(
        dataset, [*text_columns, args.label_column], what,
        hint="Produce it with `selfj-trl label`, or name your columns with --instruction_column, "
             "--response_column, --reference_column and --label_column.",
    )
    for column in text_columns:
        for i, value in enumerate(dataset[column]):
            try:
                check_text(value, column)
            except SelfJInputError as err:
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


def _tokenize_views(example: dict, tokenizer: Any, args: SelfJConfig, chat: bool | None, max_length: int | None) -> dict:
    instruction, response = example[args.instruction_column], example[args.response_column]
    student = format_student_view(tokenizer, instruction, response, chat=chat)
    teacher = format_teacher_view(tokenizer, instruction, response, example[args.reference_column], chat=chat)
    return {
        "student_ids": tokenize_view(tokenizer, student, max_length),
        "teacher_ids": tokenize_view(tokenizer, teacher, max_length),
        "target": float(example[args.label_column]) / args.label_max,
    }


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
            for b in rows[a_pos + 1:]:
                if abs(labels[a] - labels[b]) > min_gap:
                    pairs.append((a, b) if labels[a] > labels[b] else (b, a))
    return pairs


@dataclass
class SelfJDataCollator(DataCollatorMixin):
    """Stacks both views of a batch into ONE right-padded tensor so that a step costs one forward pass.

    Rows are ``[student views..., teacher views...]``; in pairwise mode each half is ``[chosen..., rejected...]``
    (the layout of TRL's ``DataCollatorForPreference``). ``pad_token_id`` is filled in by the trainer once the
    tokenizer's pad token is settled.
    """

    pad_token_id: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.pad_token_id is None:
            raise ValueError("SelfJDataCollator.pad_token_id is not set.")
        keys = _POINTWISE_COLUMNS if _POINTWISE_COLUMNS[0] in examples[0] else _PAIRWISE_COLUMNS
        seqs = [torch.tensor(ex[key], dtype=torch.long) for key in keys for ex in examples]
        masks = [torch.ones_like(s) for s in seqs]
        out = {
            "input_ids": pad(seqs, self.pad_token_id, "right", self.pad_to_multiple_of),
            "attention_mask": pad(masks, 0, "right", self.pad_to_multiple_of),
        }
        for key in ("target", "margin"):
            if key in examples[0]:
                out[key] = torch.tensor([ex[key] for ex in examples], dtype=torch.float)
        return out


# ---------------------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------------------
def selfj_loss_terms(
    student: torch.Tensor,
    teacher: torch.Tensor,
    loss_type: str,
    target: torch.Tensor | None = None,
    margin: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The three Self-J terms for one batch of scores (student and teacher rows in the collator's order).

    The teacher is detached in the distillation term only: it learns from its own label loss, and the student is
    pulled towards it (as in the authors' code).
    """
    if loss_type == "pointwise":
        label_student = F.mse_loss(student, target)
        label_teacher = F.mse_loss(teacher, target)
    else:
        s_chosen, s_rejected = student.chunk(2)
        t_chosen, t_rejected = teacher.chunk(2)
        shift = margin if margin is not None else 0.0
        label_student = -F.logsigmoid(s_chosen - s_rejected - shift).mean()
        label_teacher = -F.logsigmoid(t_chosen - t_rejected - shift).mean()
    distill = F.mse_loss(student, teacher.detach())
    return {"loss_teacher": label_teacher, "loss_student": label_student, "loss_distill": distill}


# ---------------------------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------------------------
class SelfJRewardTrainer(RewardTrainer):
    """TRL's ``RewardTrainer`` with Self-J's two views and distillation term.

    Overrides only the data preparation, the collator, ``compute_loss`` and the final ``save_model`` (which writes
    the published judge: a plain ``AutoModelForSequenceClassification`` with ``config.selfj`` and a model card).
    """

    _tag_names = ["trl", "reward-trainer", "selfj"]
    _name = "Self-J Reward"

    def __init__(self, model: Any, args: SelfJConfig | None = None, data_collator=None, train_dataset=None,
                 eval_dataset=None, processing_class=None, **kwargs: Any):
        from transformers import AutoConfig

        from .models import resolve_model

        if args is None:
            args = SelfJConfig(output_dir="selfj-judge")
        if not isinstance(args, SelfJConfig):
            raise TypeError(f"`args` must be a SelfJConfig, got {type(args).__name__}.")
        if isinstance(model, os.PathLike):
            model = str(model)
        if isinstance(model, str):
            self._base_model_name = model
            model = resolve_model(model)
            try:
                model_config = AutoConfig.from_pretrained(model, trust_remote_code=args.trust_remote_code)
            except OSError as err:  # no such folder, unknown Hub repo, no network
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise SelfJInputError(f"could not load base model {model!r}: {first}") from err
        else:
            model_config = getattr(model, "config", None)
            self._base_model_name = getattr(model_config, "_name_or_path", None) or None
        self._view_max_length = _view_max_length(args.max_length, model_config)
        self._saving_checkpoint = False
        collator = data_collator or SelfJDataCollator(pad_to_multiple_of=args.pad_to_multiple_of)
        super().__init__(model=model, args=args, data_collator=collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)
        if isinstance(self.data_collator, SelfJDataCollator) and self.data_collator.pad_token_id is None:
            self.data_collator.pad_token_id = self.processing_class.pad_token_id

    # -- data ----------------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if isinstance(dataset, IterableDataset):
            raise SelfJInputError(
                "streaming (IterableDataset) labeled data is not supported: pairs and validation need the whole "
                "table; load it as a Dataset."
            )
        columns = dataset.column_names
        if all(c in columns for c in _POINTWISE_COLUMNS) or all(c in columns for c in _PAIRWISE_COLUMNS):
            return dataset  # already prepared (RewardTrainer.evaluate calls this again)
        what = f"{dataset_name} dataset"
        validate_labeled_dataset(dataset, args, what)
        from trl.trainer.utils import global_then_local_main_first

        chat = JUDGE_FORMATS[args.judge_format]
        with global_then_local_main_first():
            views = dataset.map(
                _tokenize_views,
                fn_kwargs={"tokenizer": processing_class, "args": args, "chat": chat,
                           "max_length": self._view_max_length},
                remove_columns=columns, num_proc=args.dataset_num_proc, desc=f"Tokenizing {what} (two views)",
            )
        if args.loss_type == "pointwise":
            return views
        groups = dataset[args.group_column] if args.group_column in columns else dataset[args.instruction_column]
        pairs = build_pairs([float(v) for v in dataset[args.label_column]], groups, args.min_label_gap)
        if not pairs:
            raise SelfJInputError(
                f"{what}: no pair of responses to the same instruction has different labels; pairwise training "
                "needs several labeled samples per instruction (label with num_samples > 1) or use "
                "`loss_type=pointwise`."
            )
        student, teacher, target = views["student_ids"], views["teacher_ids"], views["target"]
        data = {
            "chosen_student_ids": [student[c] for c, _ in pairs],
            "rejected_student_ids": [student[r] for _, r in pairs],
            "chosen_teacher_ids": [teacher[c] for c, _ in pairs],
            "rejected_teacher_ids": [teacher[r] for _, r in pairs],
        }
        if args.use_margin:  # targets are already label / label_max
            data["margin"] = [target[c] - target[r] for c, r in pairs]
        return Dataset.from_dict(data)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = [*_POINTWISE_COLUMNS, *_PAIRWISE_COLUMNS, "target", "margin"]

    # -- loss ----------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        args: SelfJConfig = self.args
        # One forward for both views. No KV cache (decoders only: some encoders reject the argument).
        extra = {"use_cache": False} if getattr(self.model.config, "use_cache", None) is not None else {}
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **extra)
        scores = outputs.logits.squeeze(-1).float()
        student, teacher = scores.chunk(2)
        terms = selfj_loss_terms(student, teacher, args.loss_type, inputs.get("target"), inputs.get("margin"))
        loss = (args.teacher_weight * terms["loss_teacher"] + args.student_weight * terms["loss_student"]
                + args.distill_weight * terms["loss_distill"])
        if args.center_rewards_coefficient is not None:
            loss = loss + args.center_rewards_coefficient * torch.mean(scores**2)
        self._record_metrics(mode, inputs, loss, terms, student, teacher)
        return (loss, outputs) if return_outputs else loss

    def _record_metrics(self, mode, inputs, loss, terms, student, teacher) -> None:
        """Log every term and the student-teacher gap; stop with a clear error on a NaN/inf loss.

        The values are gathered from every process first, so all ranks see the same non-finite value and raise
        together instead of leaving the others waiting in the next all-reduce.
        """
        with torch.no_grad():
            names = ["loss", *terms, "student_teacher_gap", "mean_student_score", "mean_teacher_score"]
            values = [loss, *terms.values(), (student - teacher).abs().mean(), student.mean(), teacher.mean()]
            if self.args.loss_type == "pairwise":
                s_chosen, s_rejected = student.chunk(2)
                names += ["accuracy", "margin"]
                values += [(s_chosen > s_rejected).float().mean(), (s_chosen - s_rejected).mean()]
            local = torch.stack([v.detach().float() for v in values])[None]
            gathered = self.accelerator.gather(local).mean(0).tolist()
        stats = dict(zip(names, gathered))
        if not all(math.isfinite(v) for v in stats.values()):
            step = self.state.global_step + (1 if mode == "train" else 0)
            parts = ", ".join(f"{k}={stats[k]:.4g}" for k in ("loss", *terms))
            raise SelfJInputError(
                f"non-finite loss at {'training' if mode == 'train' else 'evaluation'} step {step} ({parts}); "
                "training stopped and nothing was saved from this step: lower `learning_rate`, turn off fp16, "
                "or check the model and labels."
            )
        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        for name in names[1:]:
            self._metrics[mode][name].append(stats[name])

    # -- the published judge -------------------------------------------------------------------------------------
    def judge_config(self) -> dict:
        """The ``config.selfj`` section: input format, score scale and the Self-J settings this judge was trained with."""
        from .hub import package_version, hub_id_for

        args: SelfJConfig = self.args
        tokenizer = self.processing_class
        scale = (0.0, 1.0)
        section = judge_format_config(tokenizer, chat=JUDGE_FORMATS[args.judge_format], score_scale=scale)
        if args.loss_type == "pairwise":
            section["score_scale"] = None  # Bradley-Terry scores are unbounded logits; only their order means much
        base = self._base_model_name
        return section | {
            "base_model": hub_id_for(base) or base,
            "dataset": args.hub_dataset_id or hub_id_for(args.dataset_name) or args.dataset_name,
            "teacher_weight": args.teacher_weight,
            "student_weight": args.student_weight,
            "distill_weight": args.distill_weight,
            "loss_type": args.loss_type,
            "use_margin": args.use_margin,
            "label_max": args.label_max,
            "max_length": self._view_max_length,
            "lora": self._lora_settings(),
            "selfj_trl_version": package_version(),
        }

    def _lora_settings(self) -> dict | None:
        model = self.accelerator.unwrap_model(self.model)
        peft_config = getattr(model, "peft_config", None)
        if not peft_config:
            return None
        cfg = peft_config.get("default") or next(iter(peft_config.values()))
        targets = cfg.target_modules
        return {
            "r": getattr(cfg, "r", None),
            "lora_alpha": getattr(cfg, "lora_alpha", None),
            "lora_dropout": getattr(cfg, "lora_dropout", None),
            "target_modules": sorted(targets) if isinstance(targets, (set, list, tuple)) else targets,
            "merged": bool(self.args.merge_adapter_on_save),
        }

    def _save_checkpoint(self, model, trial):
        # Checkpoints keep RewardTrainer's format (adapter + optimizer state) so that training can resume.
        self._saving_checkpoint = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._saving_checkpoint = False

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Outside checkpoints, save the published judge (see :meth:`save_judge`)."""
        if self._saving_checkpoint:
            return super().save_model(output_dir, _internal_call)
        self.save_judge(output_dir)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Self-J judge", revision=self.args.hub_revision)

    def save_judge(self, output_dir: str | os.PathLike | None = None) -> Path:
        """Write the judge: safetensors weights (LoRA merged unless told otherwise), tokenizer, config.selfj, card.

        ``AutoModelForSequenceClassification.from_pretrained(output_dir)`` then gives the trained scores.
        """
        output_dir = Path(output_dir or self.args.output_dir)
        unwrapped = self.accelerator.unwrap_model(self.model)
        is_peft = hasattr(unwrapped, "peft_config")
        base_config = unwrapped.get_base_model().config if is_peft else unwrapped.config
        selfj = self.judge_config()
        from .prompts import JUDGE_CONFIG_KEY

        setattr(base_config, JUDGE_CONFIG_KEY, selfj)
        base_config.get_text_config().pad_token_id = self.processing_class.pad_token_id
        if self.args.should_save and output_dir.is_dir():
            _remove_stale_weights(output_dir, adapter_only=is_peft and not self.args.merge_adapter_on_save)
        super().save_model(str(output_dir), _internal_call=True)  # collective under DeepSpeed; writes on rank 0
        if is_peft and self.args.merge_adapter_on_save:
            self._merge_adapter(unwrapped, output_dir)
        if self.args.should_save:
            (output_dir / "training_args.bin").unlink(missing_ok=True)  # pickle: the settings live in config.selfj
            (output_dir / SELFJ_JSON).write_text(json.dumps(selfj, indent=2) + "\n")
            from .hub import render_judge_card

            render_judge_card(output_dir, judge_repo=self.args.hub_model_id).save(output_dir / "README.md")
        self.accelerator.wait_for_everyone()
        return output_dir

    def _merge_adapter(self, unwrapped, output_dir: Path) -> None:
        """Replace the saved adapter by merged full weights, so the judge needs no peft to load."""
        from copy import deepcopy

        if self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
            merged = self._merge_from_disk(output_dir) if self.args.should_save else None
        else:
            merged = deepcopy(unwrapped).merge_and_unload() if self.args.should_save else None
        if merged is None:
            return
        for name in ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json"):
            (output_dir / name).unlink(missing_ok=True)
        merged.save_pretrained(str(output_dir), safe_serialization=True)

    def _merge_from_disk(self, output_dir: Path):
        # Under ZeRO-3 the live parameters are sharded: reload base + saved adapter on CPU and merge there.
        from peft import PeftConfig, PeftModel
        from transformers import AutoModelForSequenceClassification

        from .models import resolve_model

        adapter = PeftConfig.from_pretrained(str(output_dir))
        base = AutoModelForSequenceClassification.from_pretrained(
            resolve_model(adapter.base_model_name_or_path), num_labels=1
        )
        if base.get_input_embeddings().num_embeddings != len(self.processing_class):
            base.resize_token_embeddings(len(self.processing_class))
        merged = PeftModel.from_pretrained(base, str(output_dir)).merge_and_unload()
        merged.config.update({"selfj": self.judge_config(), "pad_token_id": self.processing_class.pad_token_id})
        return merged

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None):
        """Our judge card once a judge is saved in ``output_dir``; TRL's card before that (e.g. at checkpoints)."""
        if not self.is_world_process_zero():
            return
        out = Path(self.args.output_dir)
        if (out / SELFJ_JSON).exists():
            from .hub import render_judge_card

            render_judge_card(out, judge_repo=self.args.hub_model_id).save(out / "README.md")
        else:
            super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)


def _remove_stale_weights(folder: Path, adapter_only: bool) -> None:
    """Drop the other kind of weights left by an earlier save in the same folder (full model vs adapter only).

    A folder holding both would load as whichever transformers looks for first, not as the judge just trained.
    """
    patterns = ["config.json", "model*.safetensors", "model.safetensors.index.json"] if adapter_only else [
        "adapter_model.safetensors", "adapter_model.bin", "adapter_config.json"]
    for pattern in patterns:
        for path in folder.glob(pattern):
            path.unlink()


def _view_max_length(max_length: int | None, model_config: Any) -> int | None:
    """``max_length`` capped by the model's position limit (a BERT judge cannot read past 512 tokens)."""
    limit = None
    if model_config is not None:
        text_config = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
        limit = getattr(text_config, "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 0:
        return limit if max_length is None else min(max_length, limit)
    return max_length


# ---------------------------------------------------------------------------------------------------------------
# Script
# ---------------------------------------------------------------------------------------------------------------
def train_judge(args: SelfJConfig, model_args: ModelConfig) -> Path:
    """Load the labeled data, train, evaluate when a test split is given, and save the judge in ``output_dir``."""
    from .io import load_table
    from .hub import hub_id_for

    if not model_args.model_name_or_path:
        raise SelfJInputError("--model_name_or_path is required (a folder, a Hub id or `all-minilm-l6-v2`).")
    if not args.dataset_name:
        raise SelfJInputError("--dataset_name is required: the labeled dataset folder written by `selfj-trl label`.")
    if args.model_init_kwargs is None:
        args.model_init_kwargs = {"revision": model_args.model_revision, "dtype": model_args.dtype}
        if model_args.attn_implementation:
            args.model_init_kwargs["attn_implementation"] = model_args.attn_implementation
    if model_args.use_peft and model_args.lora_task_type != "SEQ_CLS":
        model_args.lora_task_type = "SEQ_CLS"  # a judge is a sequence classifier: keeps the score head trainable
    if args.hub_dataset_id is None:
        args.hub_dataset_id = hub_id_for(args.dataset_name)
    train = load_table(args.dataset_name, args.dataset_train_split)
    evaluation = load_table(args.dataset_name, args.dataset_test_split) if args.dataset_test_split else None
    trainer = SelfJRewardTrainer(
        model=model_args.model_name_or_path, args=args, train_dataset=train, eval_dataset=evaluation,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_state()  # trainer_state.json: the loss curve, also when no checkpoint is saved (save_strategy=no)
    if evaluation is not None:
        metrics = trainer.evaluate()
        trainer.save_metrics("eval", metrics)  # eval_results.json: shown in the model card
    trainer.save_model(args.output_dir)
    return Path(args.output_dir)


def main(argv: list[str] | None = None) -> int:
    """``selfj-trl train``: train a Self-J judge (flags or ``--config recipe.yaml``)."""
    parser = TrlParser((SelfJConfig, ModelConfig))
    args, model_args = parser.parse_args_and_config(argv)
    out = train_judge(args, model_args)
    if args.should_save:
        print(f"judge saved to {out.resolve()} (load it with AutoModelForSequenceClassification.from_pretrained)")
    return 0


if __name__ == "__main__":
    from .cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
