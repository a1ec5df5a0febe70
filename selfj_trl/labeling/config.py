"""``LabelingConfig``: the settings of ``selfj-trl label``, and how the self-evaluation settings left unset are filled.

The code holds the method's own defaults (:data:`SELFJ_DEFAULTS`, the Self-J method as published). A policy whose
label was measured has its measured settings in ``recipes/<policy>/label/measured_label.yaml``
(:mod:`selfj_trl.measured`); those fill whatever the user left unset, and the card says where each came from.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import SelfJInputError
from ..flags import check_instance, dtype_field
from ..io import content_hash
from ..labels import COMBINATIONS
from ..measured import measured_label
from ..models import DEFAULT_EMBEDDER, DEFAULT_POLICY, dtype_name
from ..prompts import DEFAULT_PROMPT_STYLE, LIKELIHOOD_METHODS, PLAIN_TURN_MARKER, check_prompt_style
from ..signals import get_signal, self_eval_methods
from ..signals.likelihood import MAX_TARGET_TOKENS
from .contrast import check_contrast_kinds


#: Below this mean probability on the digit tokens, a digit rating is renormalised noise (the policies' figures are in
#: recipes/<policy>/README.md); the labeler warns and the card reports the figure.
LOW_DIGIT_MASS = 0.2

#: The Self-J method: digit self-evaluation against the reference, read from the first answer token (so the prompt
#: opens the answer with a rating lead and the digit is the next token; the wording is this project's own), averaged
#: with the cosine. The default for every policy without a measured label, i.e. the capable (7B+) policies the method
#: was made for.
SELFJ_DEFAULTS = {
    "self_eval_method": "digits",
    "prompt_style": DEFAULT_PROMPT_STYLE,
    "likelihood_method": "reference_gain",
    "likelihood_target_tokens": MAX_TARGET_TOKENS,
    "cosine_weight": 0.5,
}
#: Policy samples per instruction when none are asked for: 2, or none when given responses are labeled instead.
DEFAULT_NUM_SAMPLES = 2


def measured_settings(policy: str) -> dict[str, Any] | None:
    """The label settings measured best for ``policy`` (from its recipe), or None."""
    measured = measured_label(policy)
    return measured["settings"] if measured else None


def measured_quality(config: LabelingConfig) -> dict[str, tuple[float, float, float]] | None:
    """The measured figures of the policy's recipe, only when the label is made exactly the measured way (any other
    setting, or another combination, was never measured and gets no figures)."""
    measured = measured_label(config.policy)
    if not measured or config.combination != "weighted_mean":
        return None
    settings = measured["settings"]
    return measured["quality"] if all(getattr(config, k) == v for k, v in settings.items()) else None


def digit_mass(stats: Counter) -> float | None:
    """Mean probability the policy put on the digit tokens over the digit-rated rows (None when none were)."""
    return stats["digit_mass_sum"] / stats["digit_mass_rows"] if stats.get("digit_mass_rows") else None


def self_eval_detail(config: LabelingConfig) -> str:
    """How the policy rated its answers, in the words the card and the quickstart summary use."""
    return get_signal(config.self_eval_method).description(config)


def resolve_defaults(config: LabelingConfig) -> str:
    """Fill the self-evaluation settings the user left unset (None); return where they came from.

    Why per policy: a 135M/270M policy's digit self-evaluation measured as noise against GPT-4, while the paper's
    13B policies rate well; one default cannot serve both. Values the user sets always win.
    """
    measured = measured_settings(config.policy)
    source = (
        f"measured for {config.policy} (selfj-trl signal, AlpacaEval train split)"
        if measured
        else "Self-J defaults (the paper's method)"
    )
    unset = [k for k in SELFJ_DEFAULTS if getattr(config, k) is None]
    for key in unset:
        setattr(config, key, (measured or {}).get(key, SELFJ_DEFAULTS[key]))
    if not unset:
        return "set by the user"
    return source if len(unset) == len(SELFJ_DEFAULTS) else f"{source}, except what the user set"


@dataclass
class LabelingConfig:
    """Settings of ``selfj-trl label`` (YAML via ``--config`` or flags), recorded in the dataset card."""

    dataset_name: str = field(
        default="", metadata={"help": "Hub id, save_to_disk folder or JSON/JSONL/CSV/Parquet file."}
    )
    dataset_split: str = "train"
    dataset_filter: str | None = field(
        default=None, metadata={"help": "Keep rows where COLUMN=VALUE, e.g. split=train."}
    )
    instruction_column: str = "instruction"
    input_column: str | None = field(
        default=None, metadata={"help": "Alpaca-style extra input appended to the instruction."}
    )
    reference_column: str = field(default="reference", metadata={"help": "Gold reference ('output' for Alpaca data)."})
    messages_column: str | None = field(
        default=None,
        metadata={"help": "Chat data: this column holds messages; the last assistant turn is the reference."},
    )
    instances_column: str | None = field(
        default=None,
        metadata={"help": "Self-Instruct seed tasks: this column lists {input, output}; the first instance is used."},
    )
    response_column: str | None = field(
        default=None,
        metadata={
            "help": "Label the responses this column already holds (one row per instruction x response; rows "
            "with the same instruction and reference are one instruction). No sampling unless "
            "--num_samples is set too: then the policy's samples are labeled beside them."
        },
    )
    response_model_column: str | None = field(
        default=None,
        metadata={
            "help": "With --response_column: the column naming who wrote each given response "
            "(kept in the `model` column)."
        },
    )
    contrast_answers: list[str] | None = field(
        default=None,
        metadata={
            "help": "Also label, per instruction, answers of these kinds (reference, other_instruction, cut, "
            "repeated, padded; see selfj_trl.labeling.contrast), built from one of its answers: the judge then sees "
            "contrasts other than length. Labeled by Self-J like every row (source=contrast, model=kind)."
        },
    )
    max_instructions: int | None = None
    output_dir: str = "outputs/labeled"
    policy: str = field(default=DEFAULT_POLICY, metadata={"help": "Policy model: offline alias, folder or Hub id."})
    embedder: str = field(
        default=DEFAULT_EMBEDDER, metadata={"help": "sentence-transformers model for the cosine term."}
    )
    dtype: str = dtype_field()
    load_in_4bit: bool = field(
        default=False,
        metadata={
            "help": "Load the policy in 4-bit NF4 (bitsandbytes, CUDA only; refused elsewhere) to fit a large one."
        },
    )
    use_chat_template: bool | None = field(
        default=None, metadata={"help": "Default: when the policy's tokenizer has one."}
    )
    num_samples: int | None = field(
        default=None, metadata={"help": "Policy samples per instruction. Default: 2, or 0 with --response_column."}
    )
    max_new_tokens: int = 128
    temperature: float = 0.8
    top_p: float = 0.95
    do_sample: bool = True
    seed: int = 42
    generation_batch_size: int = 8
    judge_batch_size: int = field(
        default=8,
        metadata={
            "help": "Kept for old configs: self-evaluation runs one row at a time after each "
            "instruction's shared prefix, so it takes no batch size."
        },
    )
    embed_batch_size: int = 32
    noref_baseline: bool = field(
        default=False,
        metadata={
            "help": "Also score each row's reference-free digit rating (`self_eval_noref_score`, a diagnostic "
            "baseline a judge must beat; not part of the label). It costs one more policy forward pass per row; "
            "without it the column is NaN."
        },
    )
    max_length: int = field(default=1024, metadata={"help": "Max tokens of a judging prompt (response cut first)."})
    self_eval_method: str | None = field(
        default=None,
        metadata={
            "help": "A registered self-evaluation signal (selfj_trl.signals): digits | likelihood. Default: "
            "the policy's measured setting (recipes/<policy>/label/measured_label.yaml), digits (the "
            "Self-J method) for any other policy."
        },
    )
    likelihood_method: str | None = field(
        default=None, metadata={"help": "With self_eval_method=likelihood: reference_gain | response_gain."}
    )
    likelihood_target_tokens: int | None = field(
        default=None,
        metadata={
            "help": "With self_eval_method=likelihood: tokens of the target (the reference, for reference_gain) "
            f"scored. Default: measured per offline policy, {MAX_TARGET_TOKENS} otherwise."
        },
    )
    prompt_style: str | None = field(
        default=None,
        metadata={
            "help": "Judging prompt for digits (this project's wording): rating_lead | no_lead | few_shot | "
            "reference_after | scale_1_5 (old names zero_shot = no_lead, zero_shot_lead = "
            "rating_lead). Default: measured per offline policy, rating_lead otherwise."
        },
    )
    cosine_weight: float | None = field(
        default=None,
        metadata={
            "help": "Weight of max(cosine, 0) in the label, 0..1. Default: measured per offline policy, 0.5 otherwise."
        },
    )
    combination: str = field(default="weighted_mean", metadata={"help": "weighted_mean | rank_mean | fitted."})
    fit_dataset: str | None = field(
        default=None,
        metadata={
            "help": "combination=fitted: a labelled dev slice (instruction, reference, response + a quality "
            "column), or an AlpacaEval-style folder (instructions.jsonl + responses.jsonl; only "
            "split=train rows are read)."
        },
    )
    fit_quality_column: str = field(default="quality", metadata={"help": "fit_dataset's quality column."})
    fit_response_column: str = field(default="response", metadata={"help": "fit_dataset's response column."})
    fit_max_instructions: int = field(
        default=8, metadata={"help": "AlpacaEval-style fit_dataset: train instructions sampled (x every model)."}
    )
    fit_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "combination=fitted with weights fitted elsewhere: INTERCEPT SELF_EVAL COSINE (e.g. "
            "`fitted_weights_all_rows` of `selfj-trl signal`)."
        },
    )
    chunk_size: int = field(default=8, metadata={"help": "Instructions per shard (the unit of resume)."})
    push_to_hub: bool = False
    hub_dataset_id: str | None = None
    hub_private: bool = False
    trust_remote_code: bool = False
    #: Where the self-evaluation settings left unset came from (recorded in the dataset card).
    defaults_source: str = field(default="", init=False)

    def __post_init__(self) -> None:
        check_instance(self)  # the ranges every command's flags share (selfj_trl.flags.NUMERIC_FLAGS)
        if self.load_in_4bit:
            from ..models import require_quantizing_device

            require_quantizing_device("--load_in_4bit")  # refused now, before the data is read
        self.defaults_source = resolve_defaults(self)
        if self.num_samples is None:
            self.num_samples = 0 if self.response_column else DEFAULT_NUM_SAMPLES
        if self.num_samples < 0 or (self.num_samples == 0 and not self.response_column):
            raise SelfJInputError(f"num_samples must be >= 1 (or 0 with --response_column), got {self.num_samples}.")
        if self.response_column and (self.messages_column or self.instances_column):
            raise SelfJInputError(
                "--response_column reads plain instruction/reference columns; it cannot be "
                "combined with --messages_column or --instances_column."
            )
        if self.response_model_column and not self.response_column:
            raise SelfJInputError(
                "--response_model_column names who wrote the given responses; it needs --response_column."
            )
        if not 0.0 <= self.cosine_weight <= 1.0:
            raise SelfJInputError(f"cosine_weight must be in [0, 1], got {self.cosine_weight}.")
        if self.combination not in COMBINATIONS:
            raise SelfJInputError(f"combination must be one of {COMBINATIONS}, got {self.combination!r}.")
        methods = self_eval_methods()
        if self.self_eval_method not in methods:
            raise SelfJInputError(f"self_eval_method must be one of {methods}, got {self.self_eval_method!r}.")
        self.prompt_style = check_prompt_style(self.prompt_style)
        if self.likelihood_method not in LIKELIHOOD_METHODS:
            raise SelfJInputError(
                f"likelihood_method must be one of {LIKELIHOOD_METHODS}, got {self.likelihood_method!r}."
            )
        if self.combination == "fitted" and not (self.fit_dataset or self.fit_weights):
            raise SelfJInputError(
                "combination=fitted needs --fit_dataset (a labelled dev slice) or --fit_weights "
                "INTERCEPT SELF_EVAL COSINE."
            )
        if self.fit_weights is not None and len(self.fit_weights) != 3:
            raise SelfJInputError(
                f"fit_weights takes 3 numbers (intercept, self_eval, cosine), got {self.fit_weights}."
            )
        self.contrast_answers = check_contrast_kinds(self.contrast_answers)
        if self.fit_max_instructions < 2:
            raise SelfJInputError(f"fit_max_instructions must be >= 2, got {self.fit_max_instructions}.")
        if self.push_to_hub and not self.hub_dataset_id:
            raise SelfJInputError("--push_to_hub needs --hub_dataset_id ORG/NAME.")

    def fingerprint(self) -> str:
        """Hash of the settings that change the rows: a resumed run must match it. The self-evaluation signal adds
        the settings it reads; the texts the policy reads (both signals' prompt fingerprints) and the sampler's
        stop marker are in it too, so shards scored or sampled with other prompts are never reused."""
        keys = [
            "dataset_name",
            "dataset_split",
            "dataset_filter",
            "instruction_column",
            "input_column",
            "reference_column",
            "messages_column",
            "instances_column",
            "response_column",
            "response_model_column",
            "policy",
            "embedder",
            "use_chat_template",
            "num_samples",
            "max_new_tokens",
            "temperature",
            "top_p",
            "do_sample",
            "seed",
            "generation_batch_size",
            "max_length",
            "self_eval_method",
            "prompt_style",
            "chunk_size",
            "noref_baseline",
        ]
        keys += [k for k in get_signal(self.self_eval_method).settings if k not in keys]
        values = {k: getattr(self, k) for k in keys}
        values["dtype"] = dtype_name(self.dtype)  # auto resolves per machine: a bf16 shard is never mixed with fp32
        if self.load_in_4bit:  # only when set, so that the fingerprints of full-precision runs stay as they were
            values["load_in_4bit"] = True
        if self.contrast_answers:  # likewise
            values["contrast_answers"] = self.contrast_answers
        values["texts"] = content_hash(
            get_signal(self.self_eval_method).fingerprint(), get_signal("digits").fingerprint(), PLAIN_TURN_MARKER
        )
        blob = json.dumps(values, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
