"""The two argument dataclasses of ``selfj-trl train``, split the way TRL's reward script splits them.

- :class:`SelfJRewardConfig` (a ``trl.RewardConfig``): how :class:`SelfJRewardTrainer` trains and publishes. Only
  trainer settings live here, so the same config trains on any dataset.
- :class:`SelfJScriptArguments`: which labeled dataset the script loads (TRL keeps these in ``ScriptArguments``).

``TrlParser((SelfJScriptArguments, SelfJRewardConfig, ModelConfig))`` splits one recipe YAML between the three.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from numbers import Integral

import torch
from trl import RewardConfig

from ..errors import SelfJInputError
from ..flags import NUMERIC_FLAGS as FLAG_BOUNDS
from ..flags import check_instance
from ..models import native_bf16


LOSS_TYPES = ("pointwise", "pairwise")
DISTILL_LOSSES = ("mse", "preference")
LENGTH_CONTROLS = ("none", "residual", "matched", "explained", "decorrelated")
#: ``judge_format`` value -> the ``chat`` argument of the view formatters (None: decide from the tokenizer).
JUDGE_FORMATS = {"auto": None, "chat": True, "plain": False}


def accelerator_available(use_cpu: bool) -> bool:
    """Whether training runs on an accelerator (CUDA, MPS, XPU, ...) rather than on the CPU."""
    if use_cpu:
        return False
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, MPS, XPU, ...
    return bool(accelerator.is_available()) if accelerator is not None else torch.cuda.is_available()


def bf16_default(accelerator: bool) -> bool:
    """bf16 mixed precision wherever the device multiplies bf16 in hardware: CUDA with bf16, or a CPU with AMX or
    AVX512-BF16 (``selfj_trl.models.native_bf16``); fp32 elsewhere, where bf16 would be emulated."""
    if accelerator:
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return native_bf16("cpu")


@dataclass
class SelfJScriptArguments:
    """Which labeled dataset ``selfj-trl train`` loads (mirrors ``trl.ScriptArguments``).

    Mirrored rather than subclassed: the test split is optional here (TRL defaults it to ``test``), and TRL's
    ``dataset_config`` / ``dataset_streaming`` have no meaning for a labeled table (pairs and validation need the
    whole table in memory).
    """

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Labeled dataset (the output of `selfj-trl label`): a save_to_disk folder, a "
            "JSON/JSONL/CSV/Parquet file or a Hub dataset id."
        },
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str | None = field(
        default=None, metadata={"help": "Optional split to evaluate on (its metrics go into the model card)."}
    )
    hub_dataset_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the labeled dataset, recorded in the judge's config and card (defaults to "
            "`dataset_name` when that is a Hub id)."
        },
    )


#: Fields that lived in ``SelfJConfig`` before the split; passing one to the trainer config is a clear error.
SCRIPT_FIELDS = frozenset(SelfJScriptArguments.__dataclass_fields__)


@dataclass
class SelfJRewardConfig(RewardConfig):
    r"""Configuration of :class:`SelfJRewardTrainer`.

    Adds the Self-J loss weights, the label scale, the column names of the labeled table and the judge's publishing
    options to TRL's ``RewardConfig``. ``bf16`` (mixed precision; the weights stay in ``--dtype``) defaults to on
    where the device computes bf16 natively, CPUs with AMX or AVX512-BF16 included; ``gradient_checkpointing`` only
    on a GPU: on a CPU memory is not the limit and checkpointing only costs time.
    """

    # Self-J loss
    teacher_weight: float = field(default=1.0, metadata={"help": "Weight of the teacher view's label loss."})
    student_weight: float = field(default=0.3, metadata={"help": "Weight of the student view's label loss."})
    distill_weight: float = field(
        default=2.0, metadata={"help": "Weight of the distillation term D(student, stopgrad(teacher))."}
    )
    distill_warmup_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Fraction of the training steps, in [0, 1), over which the distillation weight rises "
            "linearly from 0 to `distill_weight`, so the student is pulled towards a teacher that has "
            "already learned from its labels (0: full weight from the first step)."
        },
    )
    distill_loss: str = field(
        default="mse",
        metadata={
            "help": "Distillation term D: `mse` (the squared distance between the student's and the detached "
            "teacher's scores; the Self-J authors' generative judge takes a KL divergence between the two "
            "views' token distributions at the score position, which a one-score judge does not have) or "
            "`preference` (pairwise only: the KL divergence between "
            "the teacher's and the student's Bradley-Terry probability that the first answer of each "
            "pair is better, so only the teacher's order within an instruction is distilled, not its "
            "score level, which depends on the reference the student never sees).",
            "choices": list(DISTILL_LOSSES),
        },
    )
    loss_type: str = field(
        default="pointwise",
        metadata={
            "help": "Label loss: `pointwise` (MSE to label/label_max) or `pairwise` (Bradley-Terry on pairs "
            "of responses to the same instruction, ordered by label).",
            "choices": list(LOSS_TYPES),
        },
    )
    use_margin: bool = field(
        default=False,
        metadata={"help": "Pairwise only: subtract the label gap / label_max from the score difference."},
    )
    min_label_gap: float = field(
        default=0.0, metadata={"help": "Pairwise only: pairs whose labels differ by at most this are skipped."}
    )
    length_control: str = field(
        default="none",
        metadata={
            "help": "`residual`: before training, take out of the labels their linear trend in log word count "
            "within each instruction (one slope fitted over all instructions; each instruction keeps its mean "
            "label), so that within an instruction the judge cannot learn that longer is better from the "
            "label's own lean. `matched` (pairwise only): train only on pairs whose two answers are within "
            "`length_match_ratio` of each other in word count, so that no pair's order can be told by length "
            "alone. `explained` (pairwise only): a length-only preference model, fitted on the training pairs "
            "before training and fixed, is added to every pair's score difference (a product of experts), so "
            "the judge is trained only on what length does not explain, and scores alone in use. `decorrelated` "
            "(pairwise only): a penalty, `length_decorrelation_weight` x the squared correlation over the batch "
            "between the student's score differences and the pairs' log word-count differences, so that the "
            "judge's order within an instruction is pushed toward carrying no length at all. `none`: the "
            "labels and pairs as they are. What was taken out (slope, or pairs kept) is recorded in config.selfj.",
            "choices": list(LENGTH_CONTROLS),
        },
    )
    length_decorrelation_weight: float = field(
        default=1.0,
        metadata={
            "help": "With `length_control=decorrelated`: the weight of the squared correlation penalty (the "
            "correlation is uncentred, so a pair counts the same whichever answer is first)."
        },
    )
    length_match_ratio: float = field(
        default=1.5,
        metadata={
            "help": "With `length_control=matched`: the largest ratio of the longer answer's word count to the "
            "shorter's (each + 1) that a training pair may have."
        },
    )
    pairs_per_row: float = field(
        default=0.0,
        metadata={
            "help": "Pairwise only: train on (labeled rows x this) pairs, drawn at random from every pair, "
            "instead of epochs over all of them (17 answers to an instruction make 8x as many pairs as "
            "rows). Sets `max_steps` from the row count, batch size, gradient accumulation and "
            "processes, so one recipe fits any label count; 1.0 costs the forwards of two pointwise "
            "epochs. 0: `num_train_epochs` over every pair. A positive `max_steps` overrides it."
        },
    )
    label_max: float = field(
        default=9.0, metadata={"help": "Top of the label scale (labels lie in [0, label_max]; Self-J uses 0-9)."}
    )
    judge_format: str = field(
        default="auto",
        metadata={
            "help": "How views are formatted: `chat` (the tokenizer's chat template, for conversational "
            "GRPO data), `plain` (prompt + completion) or `auto` (chat when the tokenizer has a "
            "template).",
            "choices": list(JUDGE_FORMATS),
        },
    )
    # Columns
    instruction_column: str = field(default="instruction", metadata={"help": "Column holding the instruction."})
    response_column: str = field(default="response", metadata={"help": "Column holding the judged response."})
    reference_column: str = field(default="reference", metadata={"help": "Column holding the gold reference."})
    label_column: str = field(default="label", metadata={"help": "Column holding the Self-J label (0..label_max)."})
    group_column: str = field(
        default="instruction_id",
        metadata={
            "help": "Pairwise only: column grouping responses to the same instruction (falls back to the "
            "instruction text when absent)."
        },
    )
    # Publishing
    merge_adapter_on_save: bool = field(
        default=True,
        metadata={
            "help": "With LoRA, merge the adapter into the base weights when saving the judge, so the "
            "published judge is a plain AutoModelForSequenceClassification."
        },
    )
    # CPU-aware overrides of TRL defaults (None = decide from the hardware in __post_init__)
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Gradient checkpointing; defaults to on with a GPU, off on CPU."},
    )

    def __new__(cls, *args, **kwargs):
        # The dataclass __init__ would answer "unexpected keyword argument"; say where the field went instead.
        moved = sorted(SCRIPT_FIELDS.intersection(kwargs))
        if moved:
            raise SelfJInputError(
                f"{', '.join(moved)} moved from SelfJConfig to SelfJScriptArguments (the trainer config holds only "
                "trainer settings): pass them as `train_judge(script_args, training_args, model_args)` or as flags."
            )
        return super().__new__(cls)

    def __post_init__(self):
        accel = accelerator_available(self.use_cpu)
        if not accel:
            # Without an accelerator, say so: Trainer then builds a gloo (CPU) process group under
            # `accelerate launch` / torchrun instead of silently running every process on its own.
            self.use_cpu = True
        if self.bf16 is None and not self.fp16:
            self.bf16 = bf16_default(accel)
        if not accel:
            self.dataloader_pin_memory = False  # nothing to pin to without an accelerator (torch warns otherwise)
        # transformers >= 5.20 renamed gradient_checkpointing to activation_checkpointing (the old name warns):
        # resolve both here so that our default never triggers the deprecation warning.
        if getattr(self, "activation_checkpointing", "absent") is None:
            self.activation_checkpointing = (
                accel if self.gradient_checkpointing is None else self.gradient_checkpointing
            )
            self.gradient_checkpointing = None
        elif self.gradient_checkpointing is None:
            self.gradient_checkpointing = accel
        if self.loss_type not in LOSS_TYPES:
            raise SelfJInputError(f"`loss_type` must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}.")
        if self.length_control not in LENGTH_CONTROLS:
            raise SelfJInputError(
                f"`length_control` must be one of {list(LENGTH_CONTROLS)}, got {self.length_control!r}."
            )
        if self.length_control in ("matched", "explained", "decorrelated") and self.loss_type != "pairwise":
            raise SelfJInputError(
                f"`length_control={self.length_control}` works on pairs: it needs `loss_type=pairwise` (or use "
                "`residual`)."
            )
        if self.distill_loss not in DISTILL_LOSSES:
            raise SelfJInputError(f"`distill_loss` must be one of {list(DISTILL_LOSSES)}, got {self.distill_loss!r}.")
        if self.distill_loss == "preference" and self.loss_type != "pairwise":
            raise SelfJInputError(
                "`distill_loss=preference` compares the two answers of a pair: it needs `loss_type=pairwise`."
            )
        if self.judge_format not in JUDGE_FORMATS:
            raise SelfJInputError(f"`judge_format` must be one of {list(JUDGE_FORMATS)}, got {self.judge_format!r}.")
        check_instance(self)
        steps = self.max_steps
        if isinstance(steps, bool) or not isinstance(steps, Integral) or steps == 0:
            why = " (0 steps would publish an untrained judge)" if steps == 0 else ""
            raise SelfJInputError(
                f"`--max_steps` must be a positive integer, or -1 to train `--num_train_epochs` "
                f"epochs; got {steps!r}{why}."
            )
        if self.teacher_weight == 0 and self.student_weight == 0:
            raise SelfJInputError("`teacher_weight` and `student_weight` are both 0: nothing learns the labels.")
        if self.use_margin and self.loss_type != "pairwise":
            raise SelfJInputError("`use_margin` only applies to `loss_type=pairwise`; drop it or switch loss_type.")
        if self.center_rewards_coefficient is not None and self.loss_type != "pairwise":
            # A pair's loss sees only score differences, so the level drifts and TRL's term pins it; a pointwise
            # score is regressed onto label / label_max, which fixes its level already: centring would fight it.
            raise SelfJInputError(
                "`center_rewards_coefficient` centres the scores of pairs (TRL's term); with `loss_type=pointwise` "
                "the label already fixes the score's level: drop it or switch loss_type."
            )
        if self.pairs_per_row:
            if self.loss_type != "pairwise":
                raise SelfJInputError(
                    "`pairs_per_row` only applies to `loss_type=pairwise`; set `--pairs_per_row 0` "
                    "or switch loss_type."
                )
            if self.max_steps > 0:  # as it overrides num_train_epochs (a smoke run's --max_steps 1 on a recipe)
                self.pairs_per_row = 0.0
        super().__post_init__()

    # -- never persist a token -----------------------------------------------------------------------------------
    # Trainer persists its arguments by pickling them (``torch.save(self.args, "training_args.bin")`` in every
    # checkpoint, in the folder it pushes, on TPU): a pickle of this config never holds ``hub_token``. Copies in
    # memory keep it, so that pushing still works from a copied config.
    def __getstate__(self):
        return {**self.__dict__, "hub_token": None}

    def __copy__(self):
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo):
        new = memo[id(self)] = type(self).__new__(type(self))
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new


#: The trainer's numeric flags with their ranges, from the one table of every command's flags
#: (:data:`selfj_trl.flags.NUMERIC_FLAGS`). ``max_steps`` is checked apart: negative means "use the epochs".
NUMERIC_FLAGS = {
    name: bounds for name, bounds in FLAG_BOUNDS.items() if name in SelfJRewardConfig.__dataclass_fields__
}

#: The name before the split (kept for one release): the same class.
SelfJConfig = SelfJRewardConfig
