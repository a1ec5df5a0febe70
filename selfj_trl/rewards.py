"""TRL glue for the judge-in-the-loop recipes (GRPO, RLOO, online DPO): prompts in the policy's format, the judge as
``reward_funcs``.

A judge given to TRL by path is read by TRL itself (``from_pretrained``) on ``prompt + completion``, so the prompts
must be in the format the judge was trained on; :func:`judge_reward_funcs` checks that before a run trains on quietly
wrong rewards, and ``judge_as="callable"`` hands TRL :meth:`SelfJudge.as_reward_func` instead, which reformats.

TRL passes a judge given by path the whole ``prompt + completion``, untruncated: a judge with learned absolute
positions (BERT-style encoders such as the MiniLM judge, GPT-2) then indexes past its position table and crashes on
the first long completion. Such judges are refused by path and go through the callable, which cuts views to the
judge's recorded ``max_length`` by the training rule; ``judge_as="auto"`` (the default) picks for you.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import SelfJInputError
from .judge import SelfJudge
from .models import DEFAULT_EMBEDDER, resolve_model
from .prompts import JUDGE_CONFIG_KEY, PLAIN_PROMPT_TEMPLATE, check_text, has_chat_template
from .tables import load_table, require_columns


JUDGE_AS = ("auto", "path", "callable")
#: Config keys of rotary position settings: a judge with one of them has no position table to overflow.
ROTARY_KEYS = ("rope_parameters", "rope_theta", "rope_scaling")


@dataclass
class JudgeRecipeArguments:
    """What every judge-in-the-loop recipe needs besides the TRL trainer's own config."""

    policy: str = field(default="smollm2-135m-instruct", metadata={"help": "Policy folder, Hub id or offline alias."})
    judge: str = field(
        default="outputs/judges/minilm",
        metadata={"help": "Judge folder (stage 2 writes outputs/judges/minilm) or Hub id."},
    )
    dataset: str = field(
        default="selfj_trl/data/instructions.jsonl",
        metadata={"help": "Prompts: JSONL/CSV/Parquet file, save_to_disk folder or Hub id."},
    )
    split: str = field(default="train", metadata={"help": "Split of a Hub dataset or DatasetDict folder."})
    prompt_column: str = field(default="instruction", metadata={"help": "Column holding the instructions."})
    max_prompts: int | None = field(default=None, metadata={"help": "Use only the first N prompts."})
    judge_as: str = field(
        default="auto",
        metadata={
            "help": "'path': TRL loads the judge (from_pretrained); 'callable': SelfJudge.as_reward_func (cuts "
            "long texts to the judge's max_length); 'auto': the callable for judges with absolute "
            "position limits (BERT-style encoders), the path otherwise.",
            "choices": list(JUDGE_AS),
        },
    )
    judge_dtype: str = field(
        default="auto",
        metadata={
            "help": "auto | float32 | bfloat16: the dtype of the callable judge (auto: bf16 where the device computes "
            "it natively). A judge given by path is loaded by TRL, in the dtype TRL chooses.",
        },
    )
    overlong_cache: int | None = field(
        default=None,
        metadata={
            "help": "Add TRL's soft overlong punishment (DAPO) as a second reward: 0 up to max_completion_length - "
            "N tokens, then falling linearly to -1 at max_completion_length (and -1 beyond). Weigh it against the "
            "judge with the trainer's own --reward_weights JUDGE LENGTH. Off when unset.",
        },
    )
    monitor_reference_column: str | None = field(
        default=None,
        metadata={
            "help": "A reference-answer column of the prompt dataset: log per step the cosine of each completion to "
            "its reference (--monitor_embedder) as the reward `reference_cosine` with weight 0, so TRL logs it "
            "(rewards/reference_cosine/mean) beside the completion length and the policy is never trained on it. "
            "Off when unset.",
        },
    )
    monitor_embedder: str = field(
        default=DEFAULT_EMBEDDER, metadata={"help": "Sentence embedder of the reference-cosine monitor."}
    )


def prompt_dataset(
    source: Any,
    tokenizer: Any,
    *,
    prompt_column: str = "instruction",
    split: str = "train",
    conversational: bool | None = None,
    max_prompts: int | None = None,
    keep_columns: tuple[str, ...] = (),
) -> Any:
    """A ``prompt``-only dataset in the policy's format for TRL's online trainers.

    Chat policies get ``[{"role": "user", ...}]`` (TRL applies their template), base policies the plain prompt
    format, so that TRL's ``prompt + completion`` is exactly the judge's plain student view.
    """
    from datasets import Dataset

    table = load_table(source, split)
    require_columns(
        table, [prompt_column, *keep_columns], "prompt dataset", "Map yours with --prompt_column (or name the column)."
    )
    if max_prompts is not None:
        table = table.select(range(min(max_prompts, len(table))))
    instructions = table[prompt_column]
    for i, text in enumerate(instructions):
        check_text(text, f"{prompt_column}[{i}]")
    if conversational is None:
        conversational = has_chat_template(tokenizer)
    if conversational:
        prompts: list = [[{"role": "user", "content": text}] for text in instructions]
    else:
        prompts = [PLAIN_PROMPT_TEMPLATE.format(instruction=text) for text in instructions]
    return Dataset.from_dict({"prompt": prompts, **{column: table[column] for column in keep_columns}})


def judge_format(path_or_hub_id: str) -> str | None:
    """``"chat"`` / ``"plain"`` from a judge's ``config.selfj``, or None when it has no such section."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path_or_hub_id)
    return (getattr(config, JUDGE_CONFIG_KEY, None) or {}).get("format")


def absolute_position_limit(config: Any) -> int | None:
    """The number of positions a model with LEARNED absolute position embeddings can read, else None.

    Rotary (Llama, Gemma, Qwen, SmolLM) and ALiBi models have no position table: a longer input is read, not a crash.
    BERT-style encoders and GPT-2 index a table of ``max_position_embeddings`` / ``n_positions`` rows.
    """
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if any(getattr(text_config, key, None) is not None for key in ROTARY_KEYS):
        return None
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(text_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def length_reward_funcs(overlong_cache: int | None, max_completion_length: int | None) -> list:
    """The length-aware second reward, TRL's own (``trl.rewards.get_soft_overlong_punishment``), or none.

    A judge that leans on length can be bought by writing more; this reward pushes back only near the length limit,
    so it never rewards an answer for being short. Its weight is the trainer's ``reward_weights`` (TRL sums the
    weighted rewards before computing advantages).
    """
    if overlong_cache is None:
        return []
    if not max_completion_length or not 0 < overlong_cache <= max_completion_length:
        raise SelfJInputError(
            f"`overlong_cache` must be in (0, max_completion_length={max_completion_length}], got {overlong_cache}."
        )
    from trl.rewards import get_soft_overlong_punishment

    return [get_soft_overlong_punishment(max_completion_length, overlong_cache)]


def judge_reward_funcs(judge: str, *, conversational: bool, judge_as: str = "auto", dtype: str = "auto") -> list:
    """``reward_funcs`` for a TRL trainer: the judge's path (TRL calls ``from_pretrained``) or our callable.

    A judge given by path is fed ``prompt + completion`` by TRL, whole, so (1) its training format must match the
    prompts': a chat judge needs conversational prompts and a plain judge plain ones, and (2) it must be able to
    read any length: a judge with an absolute position limit is refused (``"auto"`` hands it over as the callable).
    We check both here rather than let the run train on quietly wrong rewards or crash mid-run.
    """
    from transformers import AutoConfig

    if judge_as not in JUDGE_AS:
        raise SelfJInputError(f"`judge_as` must be one of {list(JUDGE_AS)}, got {judge_as!r}.")
    path = resolve_model(judge)
    limit = absolute_position_limit(AutoConfig.from_pretrained(path)) if judge_as != "callable" else None
    if judge_as == "callable" or (judge_as == "auto" and limit is not None):
        return [SelfJudge.from_pretrained(path, dtype=dtype).as_reward_func()]
    if limit is not None:
        raise SelfJInputError(
            f"the judge at {judge} reads at most {limit} positions (learned absolute position embeddings) and TRL "
            "passes reward models given by path the whole prompt + completion, so a long completion would crash it; "
            'use `judge_as="callable"` (`--judge_as callable`: SelfJudge cuts views to the judge\'s max_length).'
        )
    judge_inputs = judge_format(path)
    if judge_inputs is not None and (judge_inputs == "chat") != conversational:
        prompts = "conversational" if conversational else "plain-text"
        raise SelfJInputError(
            f"the judge at {judge} was trained on {judge_inputs} inputs but the policy's prompts are {prompts}; TRL "
            "would feed it a format it never saw. Use `--judge_as callable` (SelfJudge reformats) or a matching policy."
        )
    return [path]


def reference_cosine_funcs(column: str | None, embedder: str = DEFAULT_EMBEDDER, dtype: str = "auto") -> list:
    """A quality measure the policy cannot see, for watching a loop for length hacking: the cosine of each completion
    to the prompt's reference answer. Given a weight of 0 (:func:`loop_inputs`), TRL computes and logs it like
    any reward but it adds nothing to the advantages."""
    if column is None:
        return []
    from .models import load_embedder
    from .signals.cosine import cosine_similarities

    model = load_embedder(embedder, dtype=dtype)

    def reference_cosine(completions: list, **kwargs: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return cosine_similarities(model, texts, [str(r) for r in kwargs[column]])

    return [reference_cosine]


def loop_inputs(script_args: JudgeRecipeArguments, training_args: Any) -> tuple[str, Any, Any, list]:
    """Policy path, tokenizer, prompt dataset and ``reward_funcs`` of an online TRL loop (GRPO, RLOO, online DPO),
    with the trainer's ``reward_weights`` completed: the judge, then the length reward if asked, then the monitors at weight 0
    (a user's weights for the rewards that train are kept; TRL needs one weight per function)."""
    from transformers import AutoTokenizer

    monitor = script_args.monitor_reference_column
    if not hasattr(training_args, "max_completion_length") and (monitor or script_args.overlong_cache is not None):
        raise SelfJInputError(
            "--overlong_cache and --monitor_reference_column are for GRPO and RLOO (the rewards they add read "
            f"TRL's completion lengths and reward_weights); {type(training_args).__name__} is neither."
        )
    policy = resolve_model(script_args.policy)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    conversational = has_chat_template(tokenizer)
    dataset = prompt_dataset(
        script_args.dataset,
        tokenizer,
        prompt_column=script_args.prompt_column,
        split=script_args.split,
        conversational=conversational,
        max_prompts=script_args.max_prompts,
        keep_columns=(monitor,) if monitor else (),
    )
    trained = judge_reward_funcs(
        script_args.judge, conversational=conversational, judge_as=script_args.judge_as, dtype=script_args.judge_dtype
    ) + length_reward_funcs(script_args.overlong_cache, getattr(training_args, "max_completion_length", None))
    monitors = reference_cosine_funcs(monitor, script_args.monitor_embedder, script_args.judge_dtype)
    weights = training_args.reward_weights
    if weights is not None and len(weights) != len(trained):
        raise SelfJInputError(
            f"--reward_weights gives {len(weights)} weight(s) for {len(trained)} trained reward(s) (the judge"
            + (", the overlong punishment" if script_args.overlong_cache is not None else "")
            + "); the monitor's weight 0 is added by the recipe."
        )
    if monitors:
        training_args.reward_weights = list(weights or [1.0] * len(trained)) + [0.0] * len(monitors)
    return policy, tokenizer, dataset, trained + monitors
