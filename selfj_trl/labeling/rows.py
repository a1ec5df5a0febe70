"""Input rows: instruction/reference pairs from any supported layout (plain columns, Alpaca, chat messages,
Self-Instruct seed tasks, an AlpacaEval-style folder's train pool), with the responses they already hold when asked
(``response_column``); empty or missing texts are skipped and counted."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from datasets import Dataset

from ..errors import SelfJInputError
from ..io import read_jsonl
from ..tables import load_table
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


def is_alpaca_folder(path: Any) -> bool:
    """An AlpacaEval-style folder: instructions.jsonl (id, instruction, reference, split) + responses.jsonl."""
    folder = Path(str(path))
    return folder.is_dir() and (folder / "instructions.jsonl").is_file() and (folder / "responses.jsonl").is_file()


#: The only fields the pool reads: the labels must never see a grader's verdict (e.g. AlpacaEval's gpt4_win_prob).
POOL_FIELDS = ("id", "instruction", "reference", "response", "model")


def load_alpaca_train_pool(folder: str | Path) -> Dataset:
    """Every model's answer to every ``split == "train"`` instruction of an AlpacaEval-style folder, one row per
    (instruction, model), sorted by id then model: id, instruction, reference, response, model, subset.

    Why here and not a plain file: the two files must be joined, test instructions must never be read into a label
    (they are dropped before any response is kept) and nothing but the texts and the model name is read (never
    ``gpt4_win_prob``)."""
    folder = Path(folder)
    train = {r["id"]: r for r in read_jsonl(folder / "instructions.jsonl") if r.get("split") == "train"}
    if not train:
        raise SelfJInputError(f"{folder}/instructions.jsonl has no split=train rows to label.")
    rows = []
    for r in read_jsonl(folder / "responses.jsonl"):
        if r.get("id") not in train:
            continue
        ins = train[r["id"]]
        rows.append(
            {
                "id": r["id"],
                "instruction": ins["instruction"],
                "reference": ins["reference"],
                "response": r.get("response"),
                "model": r.get("model"),
                "subset": ins.get("subset"),
            }
        )
    rows.sort(key=lambda r: (r["id"], str(r["model"])))
    return Dataset.from_list(rows)


def load_source(config: LabelingConfig) -> Dataset:
    """The table ``config.dataset_name`` names (an AlpacaEval-style folder gives its train pool)."""
    if is_alpaca_folder(config.dataset_name):
        return load_alpaca_train_pool(config.dataset_name)
    return load_table(config.dataset_name, config.dataset_split)


def given_response(ex: dict, i: int, config: LabelingConfig) -> dict[str, Any] | None:
    """A row's given response (and who wrote it), or None when it is empty."""
    response = ex[config.response_column]
    if response is not None and not isinstance(response, str):
        raise SelfJInputError(f"row {i}: `{config.response_column}` must be a string, got {type(response).__name__}.")
    if response is None or not response.strip():
        return None
    model = ex.get(config.response_model_column) if config.response_model_column else None
    return {"response": response, "model": None if model is None else str(model), "source_row": i}


def prepare_rows(dataset: Dataset, config: LabelingConfig) -> tuple[list[dict[str, Any]], Counter]:
    """Instruction/reference rows from any supported layout; empty or missing texts are skipped and counted.

    With ``response_column`` each input row is one (instruction, reference, response): rows with the same
    instruction and reference become one instruction (its ``instruction_id`` is its first row's index) whose
    ``given`` list holds their responses in order, so a chunk and a shard are still a set of instructions.
    """
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
    needed += [c for c in (config.response_column, config.response_model_column) if c]
    missing = [c for c in needed if c not in dataset.column_names]
    if missing:
        raise SelfJInputError(
            f"the dataset is missing column(s) {missing}; it has {dataset.column_names}. Map yours with "
            "--instruction_column/--reference_column (Alpaca: --input_column input --reference_column output) "
            "or --messages_column for chat data."
        )
    rows, skipped = [], Counter()
    by_text: dict[tuple[str, str], dict[str, Any]] = {}
    for i, ex in enumerate(dataset):
        if config.messages_column:
            instruction, reference = reference_from_messages(ex[config.messages_column])
        elif config.instances_column:
            instruction, reference = reference_from_instances(
                ex[config.instruction_column], ex[config.instances_column]
            )
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
        if not config.response_column:
            rows.append({"instruction_id": i, "instruction": instruction, "reference": reference})
            if config.max_instructions and len(rows) >= config.max_instructions:
                break
            continue
        row = by_text.get((instruction, reference))
        if row is None:
            if config.max_instructions and len(rows) >= config.max_instructions:
                continue  # later rows may still add responses to the instructions already taken
            row = by_text[(instruction, reference)] = {
                "instruction_id": i,
                "instruction": instruction,
                "reference": reference,
                "given": [],
            }
            rows.append(row)
        given = given_response(ex, i, config)
        if given is None:
            skipped["empty_given_response"] += 1
        else:
            row["given"].append(given)
    for reason, count in skipped.items():
        logger.warning("skipped %d row(s): %s", count, reason)
    if not rows:
        raise SelfJInputError("no usable instruction/reference rows after skipping empty ones; check the columns.")
    return rows, skipped


def check_instruction_budget(rows: list[dict[str, Any]], config: LabelingConfig) -> None:
    """Refuse, before any answer is sampled, an instruction whose judging prompt cannot fit ``max_length`` tokens:
    the digit self-evaluation would refuse it only after the policy had generated for it (minutes for a long one).
    Only the policy's tokenizer is loaded."""
    if config.self_eval_method != "digits" and not config.noref_baseline:
        return  # the likelihood self-evaluation shortens what does not fit
    from ..models import load_tokenizer, resolve_model
    from ..prompts import build_judge_prompt

    tokenizer = load_tokenizer(resolve_model(config.policy), "policy", trust_remote_code=config.trust_remote_code)
    references = ([True] if config.self_eval_method == "digits" else []) + ([False] if config.noref_baseline else [])
    for row in rows:
        for with_reference in references:
            try:
                build_judge_prompt(
                    tokenizer,
                    row["instruction"],
                    "",
                    row["reference"] if with_reference else None,
                    use_chat_template=config.use_chat_template,
                    max_length=config.max_length,
                    prompt_style=config.prompt_style,
                )
            except SelfJInputError as err:
                raise SelfJInputError(f"row {row['instruction_id']}: {err}") from None
