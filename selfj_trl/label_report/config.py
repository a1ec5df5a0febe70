"""Settings of ``selfj-trl signal`` (the label-quality report), and the digit variants it measures."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SelfJInputError
from ..flags import check_instance, dtype_field
from ..models import DEFAULT_EMBEDDER, DEFAULT_POLICY
from ..prompts import LIKELIHOOD_METHODS, PROMPT_STYLE_ALIASES, PROMPT_STYLES, check_prompt_style
from ..signals.likelihood import MAX_TARGET_TOKENS


DEFAULT_DIGIT_VARIANTS = [
    "no_lead:ref",
    "no_lead:noref",
    "rating_lead:ref",
    "rating_lead:noref",
    "few_shot:ref",
    "few_shot:noref",
    "reference_after:ref",
    "scale_1_5:ref",
]


@dataclass
class LabelReportConfig:
    """Settings of ``selfj-trl signal`` (YAML via ``--config`` or flags)."""

    policy: str = field(default=DEFAULT_POLICY, metadata={"help": "Policy whose self-evaluation is measured."})
    embedder: str = field(default=DEFAULT_EMBEDDER, metadata={"help": "sentence-transformers model for the cosine."})
    dtype: str = dtype_field()
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder with instructions.jsonl + responses.jsonl (default: "
            "../shared/data/alpaca_eval_gpt4). Only split=train rows are used."
        },
    )
    n_instructions: int = field(default=24, metadata={"help": "Train instructions sampled (x every model)."})
    models: list[str] | None = field(default=None, metadata={"help": "Responding models to keep (default: all)."})
    seed: int = 0
    output_dir: str = "outputs/signal"
    max_length: int = field(default=768, metadata={"help": "Max tokens of a judging prompt (variants may override)."})
    max_instruction_chars: int = field(
        default=1000, metadata={"help": "Sample only instructions up to this many characters (they must fit)."}
    )
    digit_variants: list[str] = field(
        default_factory=lambda: list(DEFAULT_DIGIT_VARIANTS),
        metadata={"help": "STYLE:ref|noref[:MAX_LENGTH] digit self-evaluations to measure."},
    )
    likelihood_methods: list[str] = field(
        default_factory=lambda: list(LIKELIHOOD_METHODS), metadata={"help": "Likelihood self-evaluations."}
    )
    max_target_tokens: int = field(
        default=MAX_TARGET_TOKENS, metadata={"help": "Tokens of the likelihood target scored."}
    )
    cosine_weights: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    fit_folds: int = field(default=2, metadata={"help": "Instruction folds for the cross-fitted combination."})
    fit_without_adversarial: bool = field(
        default=True, metadata={"help": "Fit the `fitted` label's weights without NullModel/gpt4_gamed rows."}
    )
    n_bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples (of whole instructions)."})
    use_chat_template: bool | None = None
    trust_remote_code: bool = False
    num_threads: int | None = field(
        default=None,
        metadata={
            "help": "torch CPU threads. On a shared, oversubscribed CPU 1 is often several times "
            "faster than the default (threads stop waiting on each other)."
        },
    )

    def __post_init__(self) -> None:
        check_instance(self)  # the ranges every command's flags share (selfj_trl.flags.NUMERIC_FLAGS)
        if self.n_instructions < 2:
            raise SelfJInputError(
                f"n_instructions must be >= 2 (correlations need several), got {self.n_instructions}."
            )
        if self.fit_folds < 2:
            raise SelfJInputError(
                f"fit_folds must be >= 2 so weights are fitted on other instructions, got {self.fit_folds}."
            )
        for w in self.cosine_weights:
            if not 0.0 <= w <= 1.0:
                raise SelfJInputError(f"cosine_weights must lie in [0, 1], got {w}.")
        for m in self.likelihood_methods:
            if m not in LIKELIHOOD_METHODS:
                raise SelfJInputError(f"likelihood_methods: {m!r} is not one of {LIKELIHOOD_METHODS}.")
        for v in self.digit_variants:
            parse_digit_variant(v, self.max_length)


@dataclass(frozen=True)
class DigitVariant:
    style: str
    with_reference: bool
    max_length: int

    @property
    def name(self) -> str:
        return f"digits/{self.style}/{'ref' if self.with_reference else 'noref'}/L{self.max_length}"


def parse_digit_variant(text: str, default_max_length: int) -> DigitVariant:
    """``STYLE:ref|noref[:MAX_LENGTH]`` -> :class:`DigitVariant` (one-line error naming the format otherwise)."""
    parts = text.split(":")
    ok = (
        len(parts) in (2, 3)
        and (parts[0] in PROMPT_STYLES or parts[0] in PROMPT_STYLE_ALIASES)
        and parts[1] in ("ref", "noref")
    )
    if ok and len(parts) == 3:
        ok = parts[2].isdigit() and int(parts[2]) > 0
    if not ok:
        raise SelfJInputError(
            f"digit variant {text!r} must be STYLE:ref|noref[:MAX_LENGTH] with STYLE in {PROMPT_STYLES}."
        )
    return DigitVariant(
        check_prompt_style(parts[0]), parts[1] == "ref", int(parts[2]) if len(parts) == 3 else default_max_length
    )
