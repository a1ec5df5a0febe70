"""Stage 1: Self-J labels without human annotation.

For every instruction with a gold reference, the policy samples responses, then rates each one against the
reference (reference-guided self-evaluation: the expected value of the ten digit tokens after the judging prompt, read
from ONE forward pass, no generation). A sentence-embedding model adds the cosine of response and reference, and the
two are combined into the label. The policy's reference-free self-evaluation is recorded too: it is the baseline the
trained judge has to beat.

Work is split in fixed chunks of instructions. Each chunk's rows are written to ``<output_dir>/shards/`` as soon as
they exist (atomically), so a killed run restarted with the same arguments skips what is done; under
``accelerate launch`` each process takes every N-th chunk and the main process gathers them in order. Chunk seeds
depend on the chunk, not the process, so one process and N processes produce the same rows.

Labels are computed when the shards are gathered, over the whole table, so rank-based combinations see every row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from .io import load_table
from .errors import SelfJInputError
from .models import DEFAULT_EMBEDDER, DEFAULT_POLICY, GEMMA_ALIAS, SMOLLM2_ALIAS, resolve_model
from .prompts import (
    LIKELIHOOD_METHODS,
    PROMPT_STYLE_DIGITS,
    build_judge_prompt,
    check_prompt_style,
    digit_token_ids,
    generation_prompt,
    has_chat_template,
    self_eval_prompt_text,
)

logger = logging.getLogger(__name__)

LABEL_MAX = 9.0
COMBINATIONS = ("weighted_mean", "rank_mean", "fitted")
SELF_EVAL_METHODS = ("digits", "likelihood")
#: Below this mean probability on the digit tokens, a digit rating is renormalised noise (measured with the zero-shot
#: prompt on AlpacaEval's train split: Gemma 3 270M base 0.00, SmolLM2-135M-Instruct 0.10); the labeler warns and the
#: card reports the figure.
LOW_DIGIT_MASS = 0.2

#: The Self-J method as the paper runs it: digit self-evaluation against the reference, averaged with the cosine.
#: The default for every policy we have not measured, i.e. the capable (7B+) policies the method was made for.
SELFJ_DEFAULTS = {"self_eval_method": "digits", "prompt_style": "zero_shot", "likelihood_method": "reference_gain",
                  "cosine_weight": 0.5}
#: Settings measured best for the small offline policies by ``selfj-trl signal`` on AlpacaEval's train split, 24
#: instructions x 17 models (README, "Labeling signals"; ``python bench/signal_report.py --n_instructions 24``). The
#: report recommends the fixed-weight label with the best mean of the Spearman with GPT-4 without the GPT-4-gaming
#: models and the within-instruction Spearman; for both policies that is likelihood ``reference_gain`` with a cosine
#: weight of 0.25 (SmolLM2-135M-Instruct: +0.21 / +0.22, Gemma 3 270M: +0.32 / +0.26; the paper's zero-shot digit
#: label at w=0.5 scores -0.01 / +0.17 and +0.04 / +0.19). Neither policy's digit ratings track quality; the cosine
#: ranks answers to one instruction well (+0.20 within) but not across instructions (+0.02), hence its small weight.
#: ``prompt_style`` serves the reference-free digit baseline column: few-shot was the best digit prompt for both.
MEASURED_LABELING_DEFAULTS: dict[str, dict[str, Any]] = {
    SMOLLM2_ALIAS: {"self_eval_method": "likelihood", "likelihood_method": "reference_gain", "cosine_weight": 0.25,
                    "prompt_style": "few_shot"},
    GEMMA_ALIAS: {"self_eval_method": "likelihood", "likelihood_method": "reference_gain", "cosine_weight": 0.25,
                  "prompt_style": "few_shot"},
}
#: What those defaults measured (Spearman with GPT-4 on the same 408 train rows: all rows, without the gaming models,
#: within an instruction), beside response length; the dataset card shows it so that nobody mistakes the label for
#: more than it is.
MEASURED_LABEL_QUALITY: dict[str, dict[str, tuple[float, float, float]]] = {
    SMOLLM2_ALIAS: {"label": (0.08, 0.21, 0.22), "length": (0.33, 0.30, 0.52)},
    GEMMA_ALIAS: {"label": (0.17, 0.32, 0.26), "length": (0.33, 0.30, 0.52)},
}


def measured_quality(config: "LabelingConfig") -> dict[str, tuple[float, float, float]] | None:
    """The measured figures of MEASURED_LABEL_QUALITY, only when the label is made exactly the measured way (any
    other setting, or another combination, was never measured and gets no figures)."""
    measured = MEASURED_LABELING_DEFAULTS.get(config.policy)
    if not measured or config.combination != "weighted_mean":
        return None
    return MEASURED_LABEL_QUALITY.get(config.policy) if all(
        getattr(config, k) == v for k, v in measured.items()) else None


def digit_mass(stats: Counter) -> float | None:
    """Mean probability the policy put on the digit tokens over the digit-rated rows (None when none were)."""
    return stats["digit_mass_sum"] / stats["digit_mass_rows"] if stats.get("digit_mass_rows") else None


def self_eval_detail(config: "LabelingConfig") -> str:
    """How the policy rated its answers, in the words the card and the quickstart summary use."""
    if config.self_eval_method == "likelihood":
        return f"likelihood, {config.likelihood_method}"
    return f"digits, prompt style {config.prompt_style}"


def resolve_defaults(config: "LabelingConfig") -> str:
    """Fill the self-evaluation settings the user left unset (None); return where they came from.

    Why per policy: a 135M/270M policy's digit self-evaluation measured as noise against GPT-4, while the paper's
    13B policies rate well; one default cannot serve both. Values the user sets always win.
    """
    measured = MEASURED_LABELING_DEFAULTS.get(config.policy)
    source = (f"measured for {config.policy} (selfj-trl signal, AlpacaEval train split)" if measured
              else "Self-J defaults (the paper's method)")
    unset = [k for k in SELFJ_DEFAULTS if getattr(config, k) is None]
    for key in unset:
        setattr(config, key, (measured or {}).get(key, SELFJ_DEFAULTS[key]))
    if not unset:
        return "set by the user"
    return source if len(unset) == len(SELFJ_DEFAULTS) else f"{source}, except what the user set"


@dataclass
class LabelingConfig:
    """Settings of ``selfj-trl label`` (YAML via ``--config`` or flags), recorded in the dataset card."""

    dataset_name: str = field(default="", metadata={"help": "Hub id, save_to_disk folder or JSON/JSONL/CSV/Parquet file."})
    dataset_split: str = "train"
    dataset_filter: str | None = field(default=None, metadata={"help": "Keep rows where COLUMN=VALUE, e.g. split=train."})
    instruction_column: str = "instruction"
    input_column: str | None = field(default=None, metadata={"help": "Alpaca-style extra input appended to the instruction."})
    reference_column: str = field(default="reference", metadata={"help": "Gold reference ('output' for Alpaca data)."})
    messages_column: str | None = field(
        default=None, metadata={"help": "Chat data: this column holds messages; the last assistant turn is the reference."}
    )
    instances_column: str | None = field(
        default=None,
        metadata={"help": "Self-Instruct seed tasks: this column lists {input, output}; the first instance is used."},
    )
    max_instructions: int | None = None
    output_dir: str = "outputs/labeled"
    policy: str = field(default=DEFAULT_POLICY, metadata={"help": "Policy model: offline alias, folder or Hub id."})
    embedder: str = field(default=DEFAULT_EMBEDDER, metadata={"help": "sentence-transformers model for the cosine term."})
    use_chat_template: bool | None = field(default=None, metadata={"help": "Default: when the policy's tokenizer has one."})
    num_samples: int = 2
    max_new_tokens: int = 128
    temperature: float = 0.8
    top_p: float = 0.95
    do_sample: bool = True
    seed: int = 42
    generation_batch_size: int = 8
    judge_batch_size: int = 8
    embed_batch_size: int = 32
    max_length: int = field(default=1024, metadata={"help": "Max tokens of a judging prompt (response cut first)."})
    self_eval_method: str | None = field(
        default=None,
        metadata={"help": "digits | likelihood. Default: measured per offline policy (MEASURED_LABELING_DEFAULTS), "
                          "digits (the Self-J method) for any other policy."})
    likelihood_method: str | None = field(
        default=None, metadata={"help": "With self_eval_method=likelihood: reference_gain | response_gain."})
    prompt_style: str | None = field(
        default=None,
        metadata={"help": "Judging prompt for digits: zero_shot | zero_shot_lead | few_shot | reference_after | "
                          "scale_1_5. Default: measured per offline policy, zero_shot (the paper's) otherwise."})
    cosine_weight: float | None = field(
        default=None, metadata={"help": "Weight of max(cosine, 0) in the label, 0..1. Default: measured per "
                                        "offline policy, 0.5 otherwise."})
    combination: str = field(default="weighted_mean", metadata={"help": "weighted_mean | rank_mean | fitted."})
    fit_dataset: str | None = field(
        default=None,
        metadata={"help": "combination=fitted: a labelled dev slice (instruction, reference, response + a quality "
                          "column), or an AlpacaEval-style folder (instructions.jsonl + responses.jsonl; only "
                          "split=train rows are read)."})
    fit_quality_column: str = field(default="quality", metadata={"help": "fit_dataset's quality column."})
    fit_response_column: str = field(default="response", metadata={"help": "fit_dataset's response column."})
    fit_max_instructions: int = field(
        default=8, metadata={"help": "AlpacaEval-style fit_dataset: train instructions sampled (x every model)."})
    fit_weights: list[float] | None = field(
        default=None,
        metadata={"help": "combination=fitted with weights fitted elsewhere: INTERCEPT SELF_EVAL COSINE (e.g. "
                          "`fitted_weights_all_rows` of `selfj-trl signal`)."})
    chunk_size: int = field(default=8, metadata={"help": "Instructions per shard (the unit of resume)."})
    backend: str = field(default="transformers", metadata={"help": "Generation backend (only transformers for now)."})
    push_to_hub: bool = False
    hub_dataset_id: str | None = None
    hub_private: bool = False
    trust_remote_code: bool = False
    #: Where the self-evaluation settings left unset came from (recorded in the dataset card).
    defaults_source: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.defaults_source = resolve_defaults(self)
        if self.num_samples < 1:
            raise SelfJInputError(f"num_samples must be >= 1, got {self.num_samples}.")
        if not 0.0 <= self.cosine_weight <= 1.0:
            raise SelfJInputError(f"cosine_weight must be in [0, 1], got {self.cosine_weight}.")
        if self.combination not in COMBINATIONS:
            raise SelfJInputError(f"combination must be one of {COMBINATIONS}, got {self.combination!r}.")
        if self.self_eval_method not in SELF_EVAL_METHODS:
            raise SelfJInputError(f"self_eval_method must be one of {SELF_EVAL_METHODS}, got {self.self_eval_method!r}.")
        check_prompt_style(self.prompt_style)
        if self.likelihood_method not in LIKELIHOOD_METHODS:
            raise SelfJInputError(
                f"likelihood_method must be one of {LIKELIHOOD_METHODS}, got {self.likelihood_method!r}.")
        if self.combination == "fitted" and not (self.fit_dataset or self.fit_weights):
            raise SelfJInputError("combination=fitted needs --fit_dataset (a labelled dev slice) or --fit_weights "
                                  "INTERCEPT SELF_EVAL COSINE.")
        if self.fit_weights is not None and len(self.fit_weights) != 3:
            raise SelfJInputError(f"fit_weights takes 3 numbers (intercept, self_eval, cosine), got {self.fit_weights}.")
        if self.fit_max_instructions < 2:
            raise SelfJInputError(f"fit_max_instructions must be >= 2, got {self.fit_max_instructions}.")
        if self.backend != "transformers":
            raise SelfJInputError(f"backend {self.backend!r} is not available yet; use backend=transformers.")
        if self.push_to_hub and not self.hub_dataset_id:
            raise SelfJInputError("--push_to_hub needs --hub_dataset_id ORG/NAME.")

    def fingerprint(self) -> str:
        """Hash of the settings that change the rows: a resumed run must match it."""
        keys = ["dataset_name", "dataset_split", "dataset_filter", "instruction_column", "input_column",
                "reference_column", "messages_column", "instances_column", "policy", "embedder", "use_chat_template",
                "num_samples", "max_new_tokens", "temperature", "top_p", "do_sample", "seed", "generation_batch_size",
                "max_length", "self_eval_method", "prompt_style", "chunk_size"]
        if self.self_eval_method == "likelihood":  # added only here, so digit runs keep their earlier fingerprint
            keys.append("likelihood_method")
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------------
# Input rows
# ---------------------------------------------------------------------------------------------------------------
def _reference_from_messages(messages: Any) -> tuple[str, str]:
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


def _reference_from_instances(instruction: Any, instances: Any) -> tuple[Any, Any]:
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
            instruction, reference = _reference_from_messages(ex[config.messages_column])
        elif config.instances_column:
            instruction, reference = _reference_from_instances(ex[config.instruction_column], ex[config.instances_column])
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


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------
def load_policy(name_or_path: str, trust_remote_code: bool = False):
    """Causal LM + tokenizer with a pad token, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=torch.float32)
    except OSError as err:
        raise SelfJInputError(f"could not load policy {name_or_path!r}: {str(err).splitlines()[0]}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def load_embedder(name_or_path: str):
    """A sentence-transformers model; plain transformers folders are refused (their pooling would be a guess)."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model(name_or_path)
    if Path(path).is_dir() and not (Path(path) / "modules.json").exists():
        raise SelfJInputError(
            f"embedder {name_or_path!r} is not a sentence-transformers folder (no modules.json); "
            "use one such as all-minilm-l6-v2."
        )
    try:
        return SentenceTransformer(path, device="cpu" if not torch.cuda.is_available() else None)
    except OSError as err:
        raise SelfJInputError(f"could not load embedder {name_or_path!r}: {str(err).splitlines()[0]}") from err


# ---------------------------------------------------------------------------------------------------------------
# The three signals
# ---------------------------------------------------------------------------------------------------------------
def _chat(tokenizer: Any, use_chat_template: bool | None) -> bool:
    return has_chat_template(tokenizer) if use_chat_template is None else use_chat_template


@torch.inference_mode()
def sample_responses(
    model: Any, tokenizer: Any, instructions: list[str], *, num_samples: int, seed: int, batch_size: int = 8,
    max_new_tokens: int = 128, temperature: float = 0.8, top_p: float = 0.95, do_sample: bool = True,
    use_chat_template: bool | None = None,
) -> list[list[str]]:
    """``num_samples`` responses per instruction; batched, left-padded, reproducible for a given seed and batching."""
    chat = _chat(tokenizer, use_chat_template)
    prompts = [generation_prompt(tokenizer, ins, use_chat_template=chat) for ins in instructions]
    gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                                  "num_return_sequences": num_samples, "pad_token_id": tokenizer.pad_token_id}
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    elif num_samples > 1:
        raise SelfJInputError("num_samples > 1 needs do_sample=True (greedy decoding repeats the same answer).")
    torch.manual_seed(seed)
    out: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        enc = tokenizer(batch, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=not chat)
        generated = model.generate(**enc, **gen_kwargs)
        texts = tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        out += [[t.strip() for t in texts[i * num_samples : (i + 1) * num_samples]] for i in range(len(batch))]
    return out


def _last_token_logits(model: Any, tokenizer: Any, texts: list[str], add_special_tokens: bool) -> torch.Tensor:
    """Next-token logits after each text, from one left-padded forward pass that keeps only the last position."""
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=add_special_tokens)
    mask = enc["attention_mask"]
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=enc["input_ids"].to(model.device), attention_mask=mask.to(model.device),
                position_ids=position_ids.to(model.device), logits_to_keep=1, use_cache=False)
    return out.logits[:, -1, :].float()


def expected_digit(logits: torch.Tensor, digit_ids: list[list[int]]) -> torch.Tensor:
    """sum_d d * p(d) / sum_d p(d), where p(d) adds the probability of every token id that spells digit d."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    per_digit = torch.stack([torch.logsumexp(log_probs[:, ids], dim=-1) for ids in digit_ids], dim=-1)
    weights = torch.softmax(per_digit, dim=-1)  # renormalised over the ten digits
    return weights @ torch.arange(len(digit_ids), dtype=weights.dtype, device=weights.device)


@torch.inference_mode()
def self_evaluate(
    model: Any, tokenizer: Any, instructions: list[str], responses: list[str], references: list[str] | None = None, *,
    batch_size: int = 8, max_length: int | None = 1024, use_chat_template: bool | None = None,
    stats: Counter | None = None, digit_ids: list[list[int]] | None = None, show_progress: bool = False,
    prompt_style: str = "zero_shot",
) -> list[float]:
    """The policy's own 0-9 rating of each response (with the reference when given), from one forward pass.

    ``stats`` (optional) counts truncated responses and references; ``digit_ids`` can be passed to skip the
    vocabulary scan when called repeatedly. ``prompt_style`` picks the judging prompt; a style on another scale
    (``scale_1_5``) reads only its digits and maps the expectation linearly onto 0-9.
    """
    if len(instructions) != len(responses) or (references is not None and len(references) != len(responses)):
        raise SelfJInputError("instructions, responses and references must have the same length.")
    chat = _chat(tokenizer, use_chat_template)
    digit_ids = digit_ids or digit_token_ids(tokenizer)
    prompts = []
    for i, (ins, resp) in enumerate(zip(instructions, responses)):
        jp = build_judge_prompt(tokenizer, ins, resp, references[i] if references is not None else None,
                                use_chat_template=chat, max_length=max_length, prompt_style=prompt_style)
        if stats is not None:
            stats["response_truncated"] += jp.response_truncated
            stats["reference_truncated"] += jp.reference_truncated
        prompts.append(jp.text)
    lo, hi = PROMPT_STYLE_DIGITS[prompt_style]
    scale_ids, to_0_9 = digit_ids[lo : hi + 1], LABEL_MAX / (hi - lo)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths together: less padding
    scores = [0.0] * len(prompts)
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc="self-evaluation", disable=not show_progress, leave=False):
        idx = order[start : start + batch_size]
        logits = _last_token_logits(model, tokenizer, [prompts[i] for i in idx], add_special_tokens=not chat)
        for i, s in zip(idx, expected_digit(logits, scale_ids).tolist()):
            scores[i] = s * to_0_9
        if stats is not None:  # how much probability the policy put on the digits at all (the card reports it)
            mass = torch.log_softmax(logits, -1)[:, [t for ids in scale_ids for t in ids]].exp().sum(-1)
            stats["digit_mass_sum"] += float(mass.sum())
            stats["digit_mass_rows"] += len(idx)
    return scores


def cosine_similarities(embedder: Any, responses: list[str], references: list[str], batch_size: int = 32) -> list[float]:
    """Cosine of normalised sentence embeddings of each response and its reference, in [-1, 1]."""
    if not responses:
        return []
    emb_r = embedder.encode(responses, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True,
                            show_progress_bar=False)
    emb_g = embedder.encode(references, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True,
                            show_progress_bar=False)
    return (emb_r * emb_g).sum(-1).clamp(-1.0, 1.0).tolist()


# ---------------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------------
def _rank01(values: list[float]) -> list[float]:
    from scipy.stats import rankdata

    if len(values) < 2:
        return [0.5] * len(values)
    ranks = rankdata(values, method="average")
    return [(r - 1) / (len(values) - 1) for r in ranks]


def combine_labels(
    self_eval: list[float], cosine: list[float], *, cosine_weight: float = 0.5, combination: str = "weighted_mean",
    weights: tuple[float, float, float] | None = None,
) -> list[float]:
    """The Self-J label on the 0-9 scale from the self-evaluation (0-9) and the cosine ([-1, 1]).

    * ``weighted_mean`` (default): 9 * ((1 - w) * s / 9 + w * max(cos, 0)).
    * ``rank_mean``: the same mean over each signal's rank in [0, 1]; immune to the two signals' different spreads.
    * ``fitted``: ``intercept + a * s/9 + b * max(cos, 0)`` with ``weights=(intercept, a, b)`` fitted on a labelled dev
      slice (see :func:`fit_combination`), clipped to [0, 9].
    """
    if len(self_eval) != len(cosine):
        raise SelfJInputError("self_eval and cosine must have the same length.")
    for v in [*self_eval, *cosine]:
        if not math.isfinite(v):
            raise SelfJInputError("a self-evaluation or cosine value is NaN/inf; re-run labeling on those rows.")
    w = cosine_weight
    s01 = [s / LABEL_MAX for s in self_eval]
    c01 = [max(c, 0.0) for c in cosine]
    if combination == "weighted_mean":
        return [LABEL_MAX * ((1 - w) * s + w * c) for s, c in zip(s01, c01)]
    if combination == "rank_mean":
        return [LABEL_MAX * ((1 - w) * s + w * c) for s, c in zip(_rank01(s01), _rank01(c01))]
    if combination == "fitted":
        if weights is None:
            raise SelfJInputError("combination=fitted needs weights fitted on a dev slice (--fit_dataset).")
        b0, b1, b2 = weights
        return [min(max(LABEL_MAX * (b0 + b1 * s + b2 * c), 0.0), LABEL_MAX) for s, c in zip(s01, c01)]
    raise SelfJInputError(f"unknown combination {combination!r}; use one of {COMBINATIONS}.")


def fit_combination(self_eval: list[float], cosine: list[float], quality: list[float]) -> tuple[float, float, float]:
    """Least-squares weights (intercept, self-eval, cosine) predicting a dev slice's quality scaled to [0, 1]."""
    import numpy as np

    q = np.asarray(quality, dtype=float)
    if len(q) < 3 or np.ptp(q) == 0:
        raise SelfJInputError("fitting the label combination needs at least 3 dev rows with varying quality.")
    q01 = (q - q.min()) / np.ptp(q)
    x = np.column_stack([np.ones(len(q)), np.asarray(self_eval) / LABEL_MAX, np.maximum(np.asarray(cosine), 0.0)])
    coef, *_ = np.linalg.lstsq(x, q01, rcond=None)
    return float(coef[0]), float(coef[1]), float(coef[2])


def label_formula(config: LabelingConfig, weights: tuple[float, float, float] | None = None) -> str:
    w = config.cosine_weight
    if config.combination == "weighted_mean":
        return f"label = 9 * ({1 - w:g} * self_eval_score / 9 + {w:g} * max(cosine_similarity, 0))"
    if config.combination == "rank_mean":
        return (f"label = 9 * ({1 - w:g} * rank01(self_eval_score) + {w:g} * rank01(max(cosine_similarity, 0))), "
                "rank01 = rank over the whole dataset scaled to [0, 1]")
    if weights is not None:
        b0, b1, b2 = weights
        return (f"label = clip(9 * ({b0:+.4f} {b1:+.4f} * self_eval_score / 9 {b2:+.4f} * max(cosine_similarity, 0)), "
                "0, 9), weights fitted on a labelled dev slice")
    return "label = clip(9 * (b0 + b1 * self_eval_score / 9 + b2 * max(cosine_similarity, 0)), 0, 9), weights fitted on a dev slice"


# ---------------------------------------------------------------------------------------------------------------
# Shards: nothing lost when a run dies
# ---------------------------------------------------------------------------------------------------------------
def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _shard_path(shard_dir: Path, chunk: int, n_rows: int) -> Path:
    """A chunk's file also names how many instructions it covers, so a run with a larger or smaller
    ``max_instructions`` reuses every complete chunk and redoes only a chunk whose size changed."""
    return shard_dir / f"chunk-{chunk:06d}-n{n_rows}.jsonl"


def _chunk_sizes(n_rows: int, chunk_size: int) -> list[int]:
    return [min(chunk_size, n_rows - start) for start in range(0, n_rows, chunk_size)]


def _check_or_write_manifest(shard_dir: Path, config: LabelingConfig) -> None:
    """Shards may only be reused by a run whose settings give the same rows (``max_instructions`` aside)."""
    manifest = shard_dir / "manifest.json"
    want = {"fingerprint": config.fingerprint(), "chunk_size": config.chunk_size}
    if manifest.exists():
        have = json.loads(manifest.read_text())
        if {k: have.get(k) for k in want} != want:
            raise SelfJInputError(
                f"{shard_dir} holds shards from a run with different settings; use another --output_dir "
                "or delete that folder to start over."
            )
        return
    shard_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(manifest, json.dumps(want, indent=2))


def label_chunk(
    rows: list[dict[str, Any]], chunk: int, config: LabelingConfig, policy: Any, tokenizer: Any, embedder: Any,
    digit_ids: list[list[int]], stats: Counter,
) -> list[dict[str, Any]]:
    """All labeled samples for one chunk of instructions (signals only; labels come at gather time)."""
    instructions = [r["instruction"] for r in rows]
    samples = sample_responses(
        policy, tokenizer, instructions, num_samples=config.num_samples, seed=config.seed + chunk,
        batch_size=config.generation_batch_size, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
        top_p=config.top_p, do_sample=config.do_sample, use_chat_template=config.use_chat_template,
    )
    flat = []
    for row, responses in zip(rows, samples):
        for k, resp in enumerate(responses):
            if not resp.strip():
                stats["empty_response"] += 1
                continue
            flat.append({**row, "response": resp, "sample_index": k})
    if not flat:
        return []
    with_ref, no_ref, cos = score_signals(config, policy, tokenizer, embedder, digit_ids,
                                          [r["instruction"] for r in flat], [r["response"] for r in flat],
                                          [r["reference"] for r in flat], stats=stats)
    for r, s, s0, c in zip(flat, with_ref, no_ref, cos):
        r.update(self_eval_score=float(s), self_eval_noref_score=float(s0), cosine_similarity=float(c))
    return flat


def score_signals(
    config: LabelingConfig, policy: Any, tokenizer: Any, embedder: Any, digit_ids: list[list[int]],
    instructions: list[str], responses: list[str], references: list[str], *, stats: Counter | None = None,
    with_noref: bool = True,
) -> tuple[list[float], list[float], list[float]]:
    """(self-evaluation with the reference, without it, cosine) for each row, as ``config`` asks.

    One function for the labeled rows and the dev slice a fitted combination learns from, so both are scored alike.
    """
    common = dict(batch_size=config.judge_batch_size, max_length=config.max_length,
                  use_chat_template=config.use_chat_template, digit_ids=digit_ids, prompt_style=config.prompt_style)
    if config.self_eval_method == "digits":
        with_ref = self_evaluate(policy, tokenizer, instructions, responses, references, stats=stats, **common)
    else:
        from .signal import likelihood_self_eval

        with_ref = likelihood_self_eval(policy, tokenizer, instructions, responses, references,
                                        method=config.likelihood_method, use_chat_template=config.use_chat_template,
                                        max_length=config.max_length)
    no_ref = self_evaluate(policy, tokenizer, instructions, responses, None, **common) if with_noref else []
    cos = cosine_similarities(embedder, responses, references, batch_size=config.embed_batch_size)
    return with_ref, no_ref, cos


# ---------------------------------------------------------------------------------------------------------------
# The fitted combination: weights learned on a labelled dev slice
# ---------------------------------------------------------------------------------------------------------------
def load_fit_rows(config: LabelingConfig) -> list[dict[str, Any]]:
    """Dev rows (instruction, reference, response, quality) for ``combination=fitted``.

    An AlpacaEval-style folder gives its train split only, without the two models built to game GPT-4 (fitted to
    them, the weights learn that text unlike the reference is good).
    """
    folder = Path(str(config.fit_dataset))
    if folder.is_dir() and (folder / "instructions.jsonl").exists() and (folder / "responses.jsonl").exists():
        from .signal import ADVERSARIAL_MODELS, load_train_rows

        rows = load_train_rows(folder, config.fit_max_instructions, seed=config.seed)
        return [{"instruction": r["instruction"], "reference": r["reference"], "response": r["response"],
                 "quality": r["gpt4_win_prob"]} for r in rows if r["model"] not in ADVERSARIAL_MODELS]
    from .io import require_columns

    table = load_table(config.fit_dataset, "train")
    cols = [config.instruction_column, config.reference_column, config.fit_response_column, config.fit_quality_column]
    require_columns(table, cols, f"fit_dataset {config.fit_dataset}",
                    "Map them with --instruction_column/--reference_column/--fit_response_column/--fit_quality_column.")
    rows = []
    for i, ex in enumerate(table):
        texts = [ex[c] for c in cols[:3]]
        if not all(isinstance(t, str) and t.strip() for t in texts):
            continue  # an empty or missing text cannot be scored; the fit uses the rest
        quality = ex[config.fit_quality_column]
        if not isinstance(quality, (int, float)) or not math.isfinite(quality):
            raise SelfJInputError(f"fit_dataset row {i}: `{config.fit_quality_column}` must be a finite number, "
                                  f"got {quality!r}.")
        rows.append({"instruction": texts[0], "reference": texts[1], "response": texts[2], "quality": float(quality)})
    return rows


def _fit_path(shard_dir: Path, config: LabelingConfig) -> Path:
    key = json.dumps([str(config.fit_dataset), config.fit_quality_column, config.fit_response_column,
                      config.instruction_column, config.reference_column, config.fit_max_instructions, config.seed])
    return shard_dir / f"fit-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsonl"


def score_fit_rows(config: LabelingConfig, shard_dir: Path, models: Callable[[], tuple]) -> Path:
    """Score the dev slice once with the labeling policy and embedder; the file is the unit of resume."""
    path = _fit_path(shard_dir, config)
    if path.exists():
        return path
    rows = load_fit_rows(config)
    if len(rows) < 3:
        raise SelfJInputError(f"fit_dataset {config.fit_dataset}: {len(rows)} usable rows; fitting needs at least 3.")
    policy, tokenizer, embedder, digit_ids = models()
    s, _, c = score_signals(config, policy, tokenizer, embedder, digit_ids, [r["instruction"] for r in rows],
                            [r["response"] for r in rows], [r["reference"] for r in rows], with_noref=False)
    for r, se, cos in zip(rows, s, c):
        r.update(self_eval_score=float(se), cosine_similarity=float(cos))
    _atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


def fitted_weights(config: LabelingConfig, shard_dir: Path) -> tuple[tuple[float, float, float], dict[str, Any]]:
    """The fitted combination's weights and what the card says about them (source, rows, fit quality)."""
    if config.fit_weights is not None:
        b0, b1, b2 = (float(w) for w in config.fit_weights)
        return (b0, b1, b2), {"weights": [b0, b1, b2], "source": "given (--fit_weights)"}
    from scipy.stats import spearmanr

    rows = [json.loads(line) for line in _fit_path(shard_dir, config).read_text(encoding="utf-8").splitlines()]
    s, c, q = ([r[k] for r in rows] for k in ("self_eval_score", "cosine_similarity", "quality"))
    weights = fit_combination(s, c, q)
    in_sample = combine_labels(s, c, combination="fitted", weights=weights)
    rho = float(spearmanr(in_sample, q).statistic) if len(set(in_sample)) > 1 else float("nan")
    return weights, {"weights": list(weights), "source": str(config.fit_dataset), "rows": len(rows),
                     "in_sample_spearman": rho}


def _read_shards(shard_dir: Path, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for chunk, n in enumerate(sizes):
        path = _shard_path(shard_dir, chunk, n)
        if not path.exists():
            raise SelfJInputError(f"shard {path.name} is missing; re-run the same command to finish labeling.")
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


def label_dataset(config: LabelingConfig, dataset: Dataset | None = None) -> Dataset:
    """Run stage 1 end to end (resumable, shardable across ``accelerate launch`` processes); returns the table."""
    from accelerate import PartialState

    state = PartialState()
    source = dataset if dataset is not None else load_table(config.dataset_name, config.dataset_split)
    rows, skipped = prepare_rows(source, config)
    out_dir = Path(config.output_dir)
    shard_dir = out_dir / "shards"
    if state.is_main_process:
        _check_or_write_manifest(shard_dir, config)
        for stale in shard_dir.glob("*.tmp*"):  # half-written by a killed run; never counted as done
            stale.unlink()
    state.wait_for_everyone()

    sizes = _chunk_sizes(len(rows), config.chunk_size)
    mine = [c for c in range(len(sizes)) if c % state.num_processes == state.process_index]
    todo = [c for c in mine if not _shard_path(shard_dir, c, sizes[c]).exists()]
    models = _lazy_models(config)
    stats: Counter = Counter()
    if todo:
        policy, tokenizer, embedder, digit_ids = models()
        done_rows = sum(sizes[c] for c in mine if c not in todo)
        bar = tqdm(total=sum(sizes[c] for c in mine),
                   initial=done_rows, desc=f"labeling (process {state.process_index})", unit="instr",
                   position=state.process_index)
        for chunk in todo:
            chunk_rows = rows[chunk * config.chunk_size : (chunk + 1) * config.chunk_size]
            labeled = label_chunk(chunk_rows, chunk, config, policy, tokenizer, embedder, digit_ids, stats)
            _atomic_write_text(_shard_path(shard_dir, chunk, sizes[chunk]), "".join(json.dumps(r) + "\n" for r in labeled))
            if stats:
                _atomic_write_text(_stats_path(_shard_path(shard_dir, chunk, sizes[chunk])), json.dumps(dict(stats)))
                stats = Counter()
            bar.update(len(chunk_rows))
        bar.close()
    if state.is_main_process and config.combination == "fitted" and config.fit_weights is None:
        score_fit_rows(config, shard_dir, models)
    state.wait_for_everyone()
    if not state.is_main_process:
        return Dataset.from_list([])
    return finalize(config, sizes, skipped, source_rows=len(rows))


def _lazy_models(config: LabelingConfig) -> Callable[[], tuple]:
    """(policy, tokenizer, embedder, digit ids), loaded on the first call only: a resumed run whose shards are all
    written never loads a model."""
    loaded: list[tuple] = []

    def get() -> tuple:
        if not loaded:
            policy, tokenizer = load_policy(config.policy, config.trust_remote_code)
            digit_ids = digit_token_ids(tokenizer)  # the reference-free baseline always reads digits
            loaded.append((policy, tokenizer, load_embedder(config.embedder), digit_ids))
        return loaded[0]

    return get


def _stats_path(shard: Path) -> Path:
    return shard.with_name(shard.name.replace(".jsonl", ".stats.json"))


def _stat_totals(shard_dir: Path, sizes: list[int]) -> Counter:
    total: Counter = Counter()
    for chunk, n in enumerate(sizes):
        path = _stats_path(_shard_path(shard_dir, chunk, n))
        if path.exists():
            total.update(json.loads(path.read_text()))
    return total


def finalize(config: LabelingConfig, sizes: list[int], skipped: Counter, source_rows: int) -> Dataset:
    """Gather shards in order, compute labels, save the dataset with its card (and push when asked)."""
    out_dir = Path(config.output_dir)
    shard_dir = out_dir / "shards"
    records = _read_shards(shard_dir, sizes)
    if not records:
        raise SelfJInputError("labeling produced no rows (every sampled response was empty).")
    weights, fit_info = fitted_weights(config, shard_dir) if config.combination == "fitted" else (None, None)
    labels = combine_labels([r["self_eval_score"] for r in records], [r["cosine_similarity"] for r in records],
                            cosine_weight=config.cosine_weight, combination=config.combination, weights=weights)
    for r, lab in zip(records, labels):
        r["label"] = float(lab)
    columns = ["instruction_id", "instruction", "reference", "response", "sample_index", "self_eval_score",
               "self_eval_noref_score", "cosine_similarity", "label"]
    table = Dataset.from_dict({c: [r[c] for r in records] for c in columns})
    stats = _stat_totals(shard_dir, sizes)
    mass = digit_mass(stats)
    if mass is not None and mass < LOW_DIGIT_MASS:
        logger.warning(
            "the policy put only %.1f%% of its next-token probability on the digits: its ratings are mostly noise. "
            "Try --prompt_style zero_shot_lead or few_shot, or --self_eval_method likelihood (see `selfj-trl signal`).",
            100 * mass)
    save_labeled(table, config, skipped=skipped, stats=stats, num_instructions=source_rows, fit=fit_info)
    return table


def card_info(table: Dataset, config: LabelingConfig, *, skipped: Counter, stats: Counter, num_instructions: int,
              fit: dict | None = None) -> dict:
    hist = [0] * 10
    for lab in table["label"]:
        hist[min(int(lab), 9)] += 1
    return {
        "source": config.dataset_name if isinstance(config.dataset_name, str) else "in-memory dataset",
        "split": config.dataset_split,
        "filter": config.dataset_filter,
        "policy": config.policy,
        "embedder": config.embedder,
        "num_rows": len(table),
        "num_instructions": num_instructions,
        "num_samples": config.num_samples,
        "label_formula": label_formula(config, tuple(fit["weights"]) if fit else None),
        "cosine_weight": config.cosine_weight,
        "combination": config.combination,
        "fit": fit,
        "self_eval_method": config.self_eval_method,
        "self_eval_detail": self_eval_detail(config),
        "noref_prompt_style": config.prompt_style,
        "defaults_source": config.defaults_source,
        "measured_quality": measured_quality(config),
        "generation": {"max_new_tokens": config.max_new_tokens, "temperature": config.temperature,
                       "top_p": config.top_p, "do_sample": config.do_sample, "seed": config.seed},
        "skipped": {**dict(skipped), **{k: v for k, v in stats.items() if k == "empty_response"}},
        "truncated": {k: v for k, v in stats.items() if k.endswith("truncated")},
        "digit_mass": (mass := digit_mass(stats)),
        "digit_mass_low": mass is not None and mass < LOW_DIGIT_MASS,
        "label_histogram": hist,
        "judge_prompt": self_eval_prompt_text(config.self_eval_method, config.prompt_style, config.likelihood_method),
        "config": {k: v for k, v in asdict(config).items() if "token" not in k},
    }


def save_labeled(table: Dataset, config: LabelingConfig, *, skipped: Counter, stats: Counter, num_instructions: int,
                 fit: dict | None = None) -> None:
    """``save_to_disk`` into the output folder (data files moved in before the metadata), plus README.md."""
    from .hub import dataset_card

    out_dir = Path(config.output_dir)
    tmp = out_dir / ".dataset.tmp"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    table.save_to_disk(str(tmp))
    files = sorted(tmp.iterdir(), key=lambda p: p.name in {"dataset_info.json", "state.json"})
    for f in files:  # metadata last: a crash in between never leaves a folder that loads as complete
        os.replace(f, out_dir / f.name)
    tmp.rmdir()
    info = card_info(table, config, skipped=skipped, stats=stats, num_instructions=num_instructions, fit=fit)
    card = dataset_card(info)
    _atomic_write_text(out_dir / "README.md", str(card))
    _atomic_write_text(out_dir / "labeling_config.json", json.dumps(info["config"], indent=2, default=str))
    if config.push_to_hub:
        table.push_to_hub(config.hub_dataset_id, private=config.hub_private)
        card.push_to_hub(config.hub_dataset_id, repo_type="dataset")


def main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    parser = TrlParser(LabelingConfig)
    (config,) = parser.parse_args_and_config(argv)
    if not config.dataset_name:
        raise SelfJInputError("--dataset_name is required (a Hub id, a folder or a JSONL file).")
    table = label_dataset(config)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"labeled {len(table)} rows -> {Path(config.output_dir).resolve()} (dataset + README.md card)")
    return 0


if __name__ == "__main__":
    from .cli import main as cli_main

    sys.exit(cli_main(["label", *sys.argv[1:]]))
