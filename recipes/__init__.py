"""The recipes ship inside the package as ``selfj_trl.recipes`` (their measured findings are read at run time: see
:mod:`selfj_trl.measured`), with what the recipe scripts share: TRL-style parsing whose precision and device
defaults follow the machine, so that ``accelerate launch recipes/grpo/grpo.py --config recipes/grpo/grpo.yaml``
runs as written on a GPU and on a CPU-only machine alike."""

from __future__ import annotations

from collections.abc import Sequence


def hardware_defaults() -> dict[str, bool]:
    """``TrainingArguments`` defaults for this machine, decided as ``SelfJRewardConfig`` decides them (through its
    :func:`~selfj_trl.trainer.config.accelerator_available`): bf16 (where CUDA supports it) and activation
    checkpointing only with an accelerator, and ``use_cpu`` without one (so that ``accelerate launch`` builds a CPU
    process group instead of failing on bf16 or running every process on its own)."""
    from selfj_trl.trainer.config import accelerator_available, bf16_default

    accel = accelerator_available(use_cpu=False)
    return {
        "use_cpu": not accel,
        "bf16": bf16_default(accel),
        "activation_checkpointing": accel,
    }


def parse_recipe_args(
    dataclass_types: Sequence[type], argv: Sequence[str] | None = None, prog: str = "recipe"
) -> tuple:
    """The recipe's dataclasses parsed as every ``selfj-trl`` command parses its own (:func:`selfj_trl.flags.parse`:
    ``TrlParser`` with each value checked, a mistake refused in one line naming the flag), over
    :func:`hardware_defaults`: the recipe's YAML and flags still decide, these only fill what neither sets."""
    from selfj_trl.flags import parse

    return parse(dataclass_types, list(argv) if argv is not None else None, prog, defaults=hardware_defaults())
