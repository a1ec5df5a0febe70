"""``selfj-trl train``: load the labeled data, train a judge, save it with its card.

CLI: ``selfj-trl train --config recipes/all-minilm-l6-v2/train/config_judge.yaml`` or
``accelerate launch --config_file recipes/accelerate_configs/single_cpu.yaml -m selfj_trl.trainer --config ...``. The recipe
YAML holds the keys of all three dataclasses; ``TrlParser`` hands each its own, as in TRL's reward script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from ..errors import SelfJInputError, SelfJRuntimeError
from ..flags import parse
from ..hub import hub_id_for
from ..models import require_quantizing_device
from ..tables import load_table
from .config import SelfJRewardConfig, SelfJScriptArguments
from .reward_trainer import SelfJRewardTrainer


def train_judge(script_args: SelfJScriptArguments, training_args: SelfJRewardConfig, model_args: ModelConfig) -> Path:
    """Load the labeled data, train, evaluate when a test split is given, and save the judge in ``output_dir``."""
    if not model_args.model_name_or_path:
        raise SelfJInputError("--model_name_or_path is required (a folder, a Hub id or `all-minilm-l6-v2`).")
    if not script_args.dataset_name:
        raise SelfJInputError("--dataset_name is required: the labeled dataset folder written by `selfj-trl label`.")
    resume = resume_checkpoint(training_args)
    if training_args.model_init_kwargs is None:
        training_args.model_init_kwargs = {"revision": model_args.model_revision, "dtype": model_args.dtype}
        if model_args.attn_implementation:
            training_args.model_init_kwargs["attn_implementation"] = model_args.attn_implementation
    quantization = checked_quantization_config(model_args)
    if model_args.use_peft and model_args.lora_task_type != "SEQ_CLS":
        model_args.lora_task_type = "SEQ_CLS"  # a judge is a sequence classifier: keeps the score head trainable
    dataset_name = script_args.dataset_name
    train = load_table(dataset_name, script_args.dataset_train_split)
    test_split = script_args.dataset_test_split
    evaluation = load_table(dataset_name, test_split) if test_split else None
    trainer = SelfJRewardTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        peft_config=get_peft_config(model_args),
        quantization_config=quantization,
        dataset_name=script_args.hub_dataset_id or hub_id_for(dataset_name) or dataset_name,
    )
    batch = training_args.per_device_train_batch_size * training_args.world_size
    if training_args.dataloader_drop_last and len(trainer.train_dataset) < batch:
        raise SelfJInputError(
            f"`--dataloader_drop_last` drops every batch: {len(trainer.train_dataset)} training examples, fewer than "
            f"one batch of {batch}; lower `--per_device_train_batch_size` or drop `--dataloader_drop_last`."
        )
    trainer.train(resume_from_checkpoint=resume)
    state = trainer.state
    if state.global_step == 0 or state.max_steps < 1:
        # A runtime failure (exit 1), not an input error: the flags passed their parse-time checks, yet the run took
        # no step (a config changed after its checks, a callback that stopped at once), or one at learning rate 0
        # (max_steps 0 leaves an empty schedule); saving would publish the untrained base model as a judge.
        raise SelfJRuntimeError(
            f"no optimizer step trained the judge (global step {state.global_step} of max_steps {state.max_steps}, "
            f"{len(trainer.train_dataset)} training examples): no judge was saved in {training_args.output_dir}."
        )
    trainer.save_state()  # trainer_state.json: the loss curve, also when no checkpoint is saved (save_strategy=no)
    if evaluation is not None:
        metrics = trainer.evaluate()
        trainer.save_metrics("eval", metrics)  # eval_results.json: shown in the model card
    trainer.save_model(training_args.output_dir)
    return Path(training_args.output_dir)


def checked_quantization_config(model_args: ModelConfig) -> Any:
    """``--load_in_4bit`` / ``--load_in_8bit`` (TRL's ``ModelConfig``) as the ``BitsAndBytesConfig`` TRL's reward
    script hands its trainer; refused in one line where they cannot work, rather than parsed and silently dropped.

    Quantized weights cannot be trained themselves: QLoRA trains a LoRA adapter (and the score head) on top, so
    ``--use_peft true`` is required.
    """
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return None
    flag = "--load_in_4bit" if model_args.load_in_4bit else "--load_in_8bit"
    require_quantizing_device(flag)
    if not model_args.use_peft:
        raise SelfJInputError(
            f"{flag} loads frozen quantized weights: train a LoRA adapter on them with `--use_peft true` (QLoRA)."
        )
    return get_quantization_config(model_args)


def resume_checkpoint(training_args: SelfJRewardConfig) -> str | None:
    """The checkpoint ``--resume_from_checkpoint`` names (``true``: the last one in ``output_dir``), refused in one
    line when there is none, before the model is loaded."""
    from transformers.trainer_utils import get_last_checkpoint

    resume = training_args.resume_from_checkpoint
    if resume is None or resume is False or str(resume).lower() == "false":
        return None
    out = Path(training_args.output_dir)
    if resume is True or str(resume).lower() == "true":
        last = get_last_checkpoint(str(out)) if out.is_dir() else None
        if last is None:
            raise SelfJInputError(
                f"`--resume_from_checkpoint true` found no checkpoint-* folder in {out}; drop the "
                "flag to train from the start, or name a checkpoint folder."
            )
        return last
    if not Path(resume).is_dir():
        raise SelfJInputError(f"`--resume_from_checkpoint` {resume} is not a checkpoint folder.")
    return str(resume)


def make_parser() -> TrlParser:
    return TrlParser((SelfJScriptArguments, SelfJRewardConfig, ModelConfig), prog="selfj-trl train")


def main(argv: list[str] | None = None) -> int:
    """``selfj-trl train``: train a Self-J judge (flags or ``--config recipe.yaml``)."""
    script_args, training_args, model_args = parse(
        (SelfJScriptArguments, SelfJRewardConfig, ModelConfig), argv, prog="selfj-trl train"
    )
    out = train_judge(script_args, training_args, model_args)
    if training_args.should_save:
        print(f"judge saved to {out.resolve()} (load it with AutoModelForSequenceClassification.from_pretrained)")  # noqa: T201
    return 0
