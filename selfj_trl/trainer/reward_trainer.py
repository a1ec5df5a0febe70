""":class:`SelfJRewardTrainer`: TRL's ``RewardTrainer`` with Self-J's two views and distillation term.

The loss is ``teacher_weight * L(teacher, label) + student_weight * L(student, label)
+ distill_weight * D(student, stopgrad(teacher))`` with ``L`` a pointwise regression on ``label / label_max`` or the
Bradley-Terry loss of RewardTrainer on pairs of responses to the same instruction, and ``D`` the squared distance
between the student's and the detached teacher's scores (``distill_loss=mse``) or, on pairs, the KL divergence
between their Bradley-Terry preference probabilities (``distill_loss=preference``). Everything else (optimizer,
logging, ``peft_config``, checkpoints, multi-process training) is RewardTrainer's.
"""

from __future__ import annotations

import math
import os
from copy import copy, deepcopy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from datasets import IterableDataset
from transformers.utils import logging
from trl import RewardTrainer

from ..errors import SelfJInputError, TrainingDivergedError
from ..judge_views import score_statistics
from ..models import load_model_config, load_tokenizer, resolve_model
from ..prompts import JUDGE_CONFIG_KEY
from ..stats import mean_within_group_spearman
from .config import SelfJRewardConfig
from .publish import (
    SELFJ_JSON,
    judge_config_section,
    lora_settings,
    merge_saved_adapter,
    quantization_settings,
    replace_adapter_with_merged,
    staged_judge,
    write_judge_card,
    write_judge_files,
)
from .views import (
    PAIRWISE_COLUMNS,
    POINTWISE_COLUMNS,
    SelfJDataCollator,
    is_prepared,
    prepare_labeled_dataset,
    view_max_length,
)


logger = logging.get_logger(__name__)


def distill_weight_at(step: int, max_steps: int, distill_weight: float, warmup_ratio: float) -> float:
    """The distillation weight in force at optimizer step ``step`` (0-based) of ``max_steps``.

    It rises linearly from 0 at the first step to ``distill_weight`` once ``warmup_ratio`` of the steps are done, so
    that the student is pulled towards a teacher that has first learned from its own labels (an ablation).
    """
    if warmup_ratio <= 0:
        return float(distill_weight)
    warmup_steps = max(1, math.ceil(warmup_ratio * max(max_steps, 1)))
    return float(distill_weight) * min(1.0, step / warmup_steps)


def selfj_loss_terms(
    student: torch.Tensor,
    teacher: torch.Tensor,
    loss_type: str,
    target: torch.Tensor | None = None,
    margin: torch.Tensor | None = None,
    distill_loss: str = "mse",
    length_offset: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The three Self-J terms for one batch of scores (student and teacher rows in the collator's order).

    The teacher is detached in the distillation term only: it learns from its own label loss, and the student is
    pulled towards it (as in the authors' code). With ``distill_loss="preference"`` the student matches the teacher's
    probability that the chosen answer beats the rejected one, KL(teacher || student) per pair: a score shift common
    to both answers, which the teacher takes from the reference and the student cannot know, costs nothing.
    ``length_offset`` (``length_control=explained``): the fixed length model's log-odds for each pair, added to both
    views' score differences in the label loss, so that neither is pushed to learn what it already explains.
    """
    if loss_type == "pointwise":
        label_student = F.mse_loss(student, target)
        label_teacher = F.mse_loss(teacher, target)
    else:
        s_chosen, s_rejected = student.chunk(2)
        t_chosen, t_rejected = teacher.chunk(2)
        shift = margin if margin is not None else 0.0
        if length_offset is not None:
            shift = shift - length_offset
        label_student = -F.logsigmoid(s_chosen - s_rejected - shift).mean()
        label_teacher = -F.logsigmoid(t_chosen - t_rejected - shift).mean()
    if distill_loss == "preference":
        s_chosen, s_rejected = student.chunk(2)
        t_chosen, t_rejected = teacher.detach().chunk(2)
        teacher_diff = t_chosen - t_rejected
        p_teacher = torch.sigmoid(teacher_diff)
        # cross-entropy minus the teacher's own entropy: 0 when the student's preference equals the teacher's
        distill = F.binary_cross_entropy_with_logits(
            s_chosen - s_rejected, p_teacher
        ) - F.binary_cross_entropy_with_logits(teacher_diff, p_teacher)
    else:
        distill = F.mse_loss(student, teacher.detach())
    return {"loss_teacher": label_teacher, "loss_student": label_student, "loss_distill": distill}


def length_correlation(student: torch.Tensor, length_gap: torch.Tensor) -> torch.Tensor:
    """The uncentred correlation over a batch of pairs between the student's score difference and the pair's
    difference in log word count (``length_control=decorrelated`` penalises its square).

    Uncentred because a pair's orientation is arbitrary: swapping its answers flips both differences and leaves
    every term unchanged, where a centred correlation would move with how many pairs put the longer answer first.
    """
    chosen, rejected = student.chunk(2)
    diff = chosen - rejected
    return (diff * length_gap).sum() / torch.sqrt((diff * diff).sum() * (length_gap * length_gap).sum() + 1e-8)


def pair_centring(student: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
    """TRL's centring term, ``mean((chosen + rejected) ** 2)`` over the pairs, for both views (the student's alone
    when the teacher is not run): it pins the level that the Bradley-Terry loss leaves free, and leaves each pair's
    difference alone."""
    views = [student] if teacher is None else [student, teacher]
    pair_sums = [chosen + rejected for chosen, rejected in (view.chunk(2) for view in views)]
    return torch.mean(torch.cat(pair_sums) ** 2)


def pair_budget_steps(n_rows: int, args: SelfJRewardConfig) -> int:
    """Optimizer steps that draw ``n_rows x pairs_per_row`` pairs, across processes and accumulation.

    Every pair of one instruction's answers is a training row, about 8x the labeled rows for 17 answers; a budget per
    labeled row keeps the cost (and the recipe) independent of how many answers each instruction has.
    """
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    return max(1, math.ceil(n_rows * args.pairs_per_row / per_step))


class SelfJRewardTrainer(RewardTrainer):
    """TRL's ``RewardTrainer`` with Self-J's two views and distillation term.

    Overrides only the data preparation, the collator, ``compute_loss`` and the final ``save_model`` (which writes
    the published judge: a plain ``AutoModelForSequenceClassification`` with ``config.selfj`` and a model card).
    ``dataset_name`` (a Hub id or a path) is recorded in ``config.selfj`` and the card as the judge's training data.
    """

    _tag_names = ["trl", "reward-trainer", "selfj"]
    _name = "Self-J Reward"

    def __init__(
        self,
        model: Any,
        args: SelfJRewardConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        *,
        dataset_name: str | None = None,
        **kwargs: Any,
    ):
        if args is None:
            args = SelfJRewardConfig(output_dir="selfj-judge")
        if not isinstance(args, SelfJRewardConfig):
            raise TypeError(f"`args` must be a SelfJRewardConfig, got {type(args).__name__}.")
        if isinstance(model, os.PathLike):
            model = str(model)
        if isinstance(model, str):
            self.base_model_name = model
            model = resolve_model(model)
            model_config = load_model_config(model, "base model", trust_remote_code=args.trust_remote_code)
            if processing_class is None:  # TRL would load it too, but a folder without one must be one line
                processing_class = load_tokenizer(
                    model,
                    "base model",
                    trust_remote_code=args.trust_remote_code,
                    revision=(args.model_init_kwargs or {}).get("revision"),
                )
        else:
            model_config = getattr(model, "config", None)
            self.base_model_name = getattr(model_config, "_name_or_path", None) or None
        if args.pairs_per_row:
            if train_dataset is None or isinstance(train_dataset, IterableDataset) or is_prepared(train_dataset):
                raise SelfJInputError(
                    "`pairs_per_row` counts the labeled rows: pass the labeled table (a Dataset, "
                    "not prepared pairs) as train_dataset."
                )
            args = copy(args)  # the caller's config keeps max_steps=-1
            args.max_steps = pair_budget_steps(len(train_dataset), args)
            logger.info(
                f"pairs_per_row={args.pairs_per_row}: {len(train_dataset)} labeled rows -> {args.max_steps} steps"
            )
        self.dataset_name = dataset_name
        self.quantization = quantization_settings(kwargs.get("quantization_config"))
        self.view_max_length = view_max_length(args.max_length, model_config)
        self.view_cuts: dict[str, dict[str, int]] = {}  # per dataset: rows whose parts were cut to fit max_length
        self.length_records: dict[str, dict] = {}  # per dataset: what length control took out (see views)
        self._saving_checkpoint = False
        collator = data_collator or SelfJDataCollator(pad_to_multiple_of=args.pad_to_multiple_of)
        super().__init__(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        if isinstance(self.data_collator, SelfJDataCollator) and self.data_collator.pad_token_id is None:
            self.data_collator.pad_token_id = self.processing_class.pad_token_id

    # -- data ----------------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if isinstance(dataset, IterableDataset):
            raise SelfJInputError(
                "streaming (IterableDataset) labeled data is not supported: pairs and validation need the whole "
                "table; load it as a Dataset."
            )
        if is_prepared(dataset):
            return dataset
        prepared, cuts, length_record = prepare_labeled_dataset(
            dataset, processing_class, args, self.view_max_length, what=f"{dataset_name} dataset"
        )
        self.view_cuts[dataset_name] = cuts
        if length_record:
            self.length_records[dataset_name] = length_record
        message = (
            f"{dataset_name} views at max_length={self.view_max_length}: of {cuts['rows']} rows, "
            f"{cuts['response_cut']} responses, {cuts['reference_cut']} references and "
            f"{cuts['instruction_cut']} instructions were cut from their tails (recorded in config.selfj)"
        )
        (logger.warning if any(cuts[k] for k in cuts if k != "rows") else logger.info)(message)
        return prepared

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = [
                *POINTWISE_COLUMNS,
                *PAIRWISE_COLUMNS,
                "target",
                "margin",
                "length_offset",
                "length_gap",
                "length",
            ]

    # -- loss ----------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        args: SelfJRewardConfig = self.args
        # One forward per view, each padded to its own longest row (see SelfJDataCollator). No KV cache (decoders
        # only: some encoders reject the argument).
        extra = {"use_cache": False} if getattr(self.model.config, "use_cache", None) is not None else {}
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **extra)
        student = outputs.logits.squeeze(-1).float()
        distill_weight = self.distill_weight_now()
        teacher = None
        if args.teacher_weight or distill_weight:  # otherwise the teacher's forward would carry no gradient
            teacher_outputs = model(
                input_ids=inputs["teacher_input_ids"], attention_mask=inputs["teacher_attention_mask"], **extra
            )
            teacher = teacher_outputs.logits.squeeze(-1).float()
            outputs.logits = torch.cat([outputs.logits, teacher_outputs.logits])
        terms = selfj_loss_terms(
            student,
            teacher if teacher is not None else student.detach(),
            args.loss_type,
            inputs.get("target"),
            inputs.get("margin"),
            distill_loss=args.distill_loss,
            length_offset=inputs.get("length_offset"),
        )
        if teacher is None:  # weighted 0 (and not computed): logged as 0 rather than as the student's figures
            terms["loss_teacher"] = terms["loss_distill"] = torch.zeros_like(terms["loss_student"])
        loss = (
            args.teacher_weight * terms["loss_teacher"]
            + args.student_weight * terms["loss_student"]
            + distill_weight * terms["loss_distill"]
        )
        if args.center_rewards_coefficient is not None:
            loss = loss + args.center_rewards_coefficient * pair_centring(student, teacher)
        if inputs.get("length_gap") is not None:
            terms["length_correlation"] = length_correlation(student, inputs["length_gap"])
            loss = loss + args.length_decorrelation_weight * terms["length_correlation"] ** 2
        self._record_metrics(mode, inputs, loss, terms, student, teacher)
        if mode == "train":
            self._metrics[mode]["distill_weight"].append(distill_weight)
        return (loss, outputs) if return_outputs else loss

    def distill_weight_now(self) -> float:
        """The distillation weight at the current step (see :func:`distill_weight_at` and ``distill_warmup_ratio``)."""
        return distill_weight_at(
            self.state.global_step, self.state.max_steps, self.args.distill_weight, self.args.distill_warmup_ratio
        )

    def _record_metrics(self, mode, inputs, loss, terms, student, teacher) -> None:
        """Log every term and the student-teacher gap; stop with :class:`TrainingDivergedError` on a NaN/inf loss.

        The values are gathered from every process first, so all ranks see the same non-finite value and raise
        together instead of leaving the others waiting in the next all-reduce.
        """
        with torch.no_grad():
            names = ["loss", *terms, "mean_student_score"]
            values = [loss, *terms.values(), student.mean()]
            if teacher is not None:
                names += ["student_teacher_gap", "mean_teacher_score"]
                values += [(student - teacher).abs().mean(), teacher.mean()]
            if self.args.loss_type == "pairwise":
                s_chosen, s_rejected = student.chunk(2)
                names += ["accuracy", "margin"]
                values += [(s_chosen > s_rejected).float().mean(), (s_chosen - s_rejected).mean()]
            local = torch.stack([v.detach().float() for v in values])[None]
            gathered = self.accelerator.gather(local).mean(0).tolist()
        stats = dict(zip(names, gathered, strict=True))
        if not all(math.isfinite(v) for v in stats.values()):
            step = self.state.global_step + (1 if mode == "train" else 0)
            parts = ", ".join(f"{k}={stats[k]:.4g}" for k in ("loss", *terms))
            raise TrainingDivergedError(
                f"non-finite loss at {'training' if mode == 'train' else 'evaluation'} step {step} ({parts}); "
                "training stopped and nothing was saved from this step: lower `learning_rate`, turn off fp16, "
                "or check the model and labels."
            )
        if mode == "train":
            masks = ("attention_mask", "teacher_attention_mask") if teacher is not None else ("attention_mask",)
            tokens = self.accelerator.gather_for_metrics(sum(inputs[m].sum() for m in masks)).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        for name in names[1:]:
            self._metrics[mode][name].append(stats[name])

    # -- the published judge -------------------------------------------------------------------------------------
    def judge_config(self) -> dict:
        """The ``config.selfj`` section: input format, score scale and the Self-J settings this judge was trained with."""
        model = self.accelerator.unwrap_model(self.model)
        return judge_config_section(
            self.processing_class,
            self.args,
            base_model=self.base_model_name,
            dataset=self.dataset_name,
            max_length=self.view_max_length,
            lora=lora_settings(model, merged=bool(self.args.merge_adapter_on_save)),
            view_cuts=self.view_cuts,
            length_records=self.length_records,
            quantization=self.quantization,
        )

    def reward_stats(self, batch_size: int = 16) -> dict | None:
        """Mean and std of the trained student's scores on the eval set (else, or with several eval sets, the
        training set), computed in the training precision: the scores the run's own evaluation saw.

        OpenRLHF's ``normalize_reward`` standardises by ``config.mean`` / ``config.std``, and a pairwise judge's
        scores have no fixed scale, so the server needs them to map its scores; the student view is the one served.
        """
        dataset, name = self.eval_dataset, "eval"
        if isinstance(dataset, dict):
            dataset = next(iter(dataset.values()), None) if len(dataset) == 1 else None
        if dataset is None:
            dataset, name = self.train_dataset, "train"
        if dataset is None or isinstance(dataset, IterableDataset):
            return None
        views = [
            (c, c.replace("student_ids", "words"))
            for c in ("student_ids", "chosen_student_ids", "rejected_student_ids")
        ]
        views = [(ids, words) for ids, words in views if ids in dataset.column_names]
        has_groups = "group" in dataset.column_names and all(w in dataset.column_names for _, w in views)
        unique: dict[tuple, tuple] = {}  # a pairwise table repeats each answer in several pairs: score it once
        for ids_column, words_column in views:
            groups = dataset["group"] if has_groups else [None] * len(dataset)
            words = dataset[words_column] if has_groups else [None] * len(dataset)
            for seq, group, n_words in zip(dataset[ids_column], groups, words, strict=True):
                unique.setdefault(tuple(seq), (group, n_words))
        ids = [list(seq) for seq in unique]
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        pad_id = self.processing_class.pad_token_id
        scores: list[float] = []
        try:
            with torch.inference_mode():
                for start in range(0, len(ids), batch_size):
                    batch = [torch.tensor(seq, dtype=torch.long) for seq in ids[start : start + batch_size]]
                    width = max(len(seq) for seq in batch)
                    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
                    for row, seq in enumerate(batch):
                        input_ids[row, : len(seq)], attention_mask[row, : len(seq)] = seq, 1
                    device = self.accelerator.device
                    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
                    scores += logits[:, 0].float().cpu().tolist()
        finally:
            model.train(was_training)
        stats = score_statistics(scores, name)
        if stats is None:
            return None
        stats["rows"] = len(dataset)
        if has_groups:  # how much the scores follow the word count inside an instruction (length itself: +1)
            groups, words = zip(*unique.values(), strict=True)
            lean = mean_within_group_spearman(scores, list(words), list(groups))
            stats["length_lean"] = lean if math.isfinite(lean) else None
        return stats

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
        merge = is_peft and self.args.merge_adapter_on_save
        base_config = unwrapped.get_base_model().config if is_peft else unwrapped.config
        selfj = self.judge_config()
        stats = self.reward_stats(self.args.per_device_eval_batch_size)
        if stats is not None:
            selfj["reward_stats"] = stats
            base_config.mean, base_config.std = stats["mean"], stats["std"]  # where OpenRLHF's loader reads them
        setattr(base_config, JUDGE_CONFIG_KEY, selfj)
        base_config.get_text_config().pad_token_id = self.processing_class.pad_token_id
        # Written into a staging folder inside output_dir, then swapped in with the completion marker renamed in
        # last: a kill at any point leaves the old judge, or a folder that loading refuses (see publish.py).
        with staged_judge(output_dir, judge_repo=self.args.hub_model_id, should_save=self.args.should_save) as stage:
            super().save_model(str(stage), _internal_call=True)  # collective under DeepSpeed; writes on rank 0
            if merge and self.args.should_save:
                if self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
                    merged = merge_saved_adapter(stage, self.processing_class, selfj)
                else:
                    merged = deepcopy(unwrapped).merge_and_unload()
                replace_adapter_with_merged(stage, merged)
            if self.args.should_save:
                write_judge_files(stage, selfj, judge_repo=self.args.hub_model_id)
        self.accelerator.wait_for_everyone()
        return output_dir

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None):
        """Our judge card once a judge is saved in ``output_dir``; TRL's card before that (e.g. at checkpoints)."""
        if not self.is_world_process_zero():
            return
        out = Path(self.args.output_dir)
        if (out / SELFJ_JSON).exists():
            write_judge_card(out, judge_repo=self.args.hub_model_id)
        else:
            super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
