"""Input rows: instruction/reference pairs from any supported layout (plain columns, Alpaca, chat messages,
Self-Instruct seed tasks); empty or missing texts are skipped and counted."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from datasets import Dataset

from ..errors import SelfJInputError
from .config import LabelingConfig


logger = logging.getLogger(__name__)


def reference_from_messages(messages: Any) -> tuple[str, str]:
    """Instruction = the conversation up to the last assistant turn (user turns joined); reference = that turn."""
    if not isinstance(messages, list) or not messages:
        raise SelfJInputError("`messages` must be a non-empty list of {role, content} dicts.")
    last_assistant = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last_assistant is None:
        raise SelfJInputError("a `messages` row has no assistant turn to use as the reference.")
    users = [m.get("content") for m in messages[:last_assistant] if m.get("role") == "user"]
    if not users:
        raise SelfJInputError("a `messages` row has no user turn before its last assistant turn.")
    return "\n\n".join(str(u) for u in users), messages[last_assistant].get("content")


def reference_from_instances(instruction: Any, instances: Any) -> tuple[Any, Any]:
    """Self-Instruct layout: instruction + the first instance's input; its output is the reference."""
    if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
        return instruction, None
    first = instances[0]
    extra = first.get("input")
    if isinstance(instruction, str) and isinstance(extra, str) and extra.strip():
        instruction = f"{instruction}\n\n{extra}"
    return instruction, first.get("output")


def prepare_rows(dataset: Dataset, config: LabelingConfig) -> tuple[list[dict[str, Any]], Counter]:
    """Instruction/reference rows from any supported layout; empty or missing texts are skipped and counted."""
    if config.dataset_filter:
        col, _, value = config.dataset_filter.partition("=")
        if col not in dataset.column_names:
            raise SelfJInputError(f"dataset_filter column {col!r} is not in the dataset ({dataset.column_names}).")
        dataset = dataset.filter(lambda v: str(v) == value, input_columns=[col])
    if config.messages_column:
        needed = [config.messages_column]
    elif config.instances_column:
        needed = [config.instruction_column, config.instances_column]
    else:
        needed = [config.instruction_column, config.reference_column]
    if config.input_column and not (config.messages_column or config.instances_column):
        needed.append(config.input_column)
    missing = [c for c in needed if c not in dataset.column_names]
    if missing:
        raise SelfJInputError(
            f"the dataset is missing column(s) {missing}; it has {dataset.column_names}. Map yours with "
            "--instruction_column/--reference_column (Alpaca: --input_column input --reference_column output) "
            "or --messages_column for chat data."
        )
    rows, skipped = [], Counter()
    for i, ex in enumerate(dataset):
        if config.messages_column:
            instruction, reference = reference_from_messages(ex[config.messages_column])
        elif config.instances_column:
            instruction, reference = reference_from_instances(ex[config.instruction_column], ex[config.instances_column])
        else:
            instruction, reference = ex[config.instruction_column], ex[config.reference_column]
            extra = ex.get(config.input_column) if config.input_column else None
            if isinstance(instruction, str) and isinstance(extra, str) and extra.strip():
                instruction = f"{instruction}\n\n{extra}"
        for value, name in ((instruction, "instruction"), (reference, "reference")):
            if value is not None and not isinstance(value, str):
                raise SelfJInputError(f"row {i}: `{name}` must be a string, got {type(value).__name__}.")
        if instruction is None or not instruction.strip():
            skipped["empty_instruction"] += 1
            continue
        if reference is None or not reference.strip():
            skipped["empty_reference"] += 1
            continue
        rows.append({"instruction_id": i, "instruction": instruction, "reference": reference})
        if config.max_instructions and len(rows) >= config.max_instructions:
            break
    for reason, count in skipped.items():
        logger.warning("skipped %d row(s): %s", count, reason)
    if not rows:
        raise SelfJInputError("no usable instruction/reference rows after skipping empty ones; check the columns.")
    return rows, skipped
