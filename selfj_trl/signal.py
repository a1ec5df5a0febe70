"""How good are the labels? Each Self-J label component measured against GPT-4 on AlpacaEval's train split.

A Self-J judge can only be as good as its labels, and a small offline policy is a weak evaluator. This module
(``selfj-trl signal``) scores a seeded sample of AlpacaEval *train* instructions x the 17 models' responses with every
label component and reports how each tracks GPT-4-turbo's win probability (Spearman and Pearson, with bootstrap 95%
intervals that resample whole instructions, since the 17 responses to one instruction are not independent):

* digit self-evaluation (the method's default): one forward pass, expected digit, for each judging-prompt style in
  :data:`~selfj_trl.prompts.PROMPT_STYLES`, with and without the reference, at several ``max_length`` values, and
  three ways of reading the digits (expectation over every id of a digit, the most likely digit, one id per digit);
* likelihood self-evaluation (:func:`likelihood_self_eval`, ``self_eval_method=likelihood``);
* the cosine of response and reference embeddings, and response length (a baseline every judge must beat);
* the combined label under :func:`~selfj_trl.labeling.combine_labels`: ``weighted_mean`` and ``rank_mean`` at several
  cosine weights, and ``fitted``, whose weights are fitted on other instructions than those they score (cross-fitting
  over disjoint folds of the sample).

Only rows whose instruction has ``split == "train"`` are ever read; the test split is never touched. Scores are cached
per component under ``<output_dir>/cache/`` so reruns and added variants only compute what is new.

Speed: rows that share an instruction share a token prefix (the instruction, the few-shot examples, often the
reference), so the prefix is run once and its key/value cache reused for every response; the scores equal the
batched :func:`~selfj_trl.labeling.self_evaluate` up to float rounding (tested).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import prompts as P
from .io import shared_data_dir
from .errors import SelfJInputError
from .models import DEFAULT_EMBEDDER, DEFAULT_POLICY

LABEL_MAX = 9.0

#: A likelihood gain of g nats per token becomes the score 9 * sigmoid(g / scale): 0 (the response tells the policy
#: nothing about the reference, or the reverse) -> 4.5, one scale above -> 6.6, one below -> 2.4. The scales are about
#: one standard deviation of each gain on AlpacaEval train rows for both offline policies (response_gain ~0.2,
#: reference_gain ~0.08 nats/token), so labels spread over the scale. Monotone: ranks (and Spearman) are those of the
#: raw gain; the scale only matters inside a weighted mean with the cosine.
LIKELIHOOD_SCALES = {"response_gain": 0.2, "reference_gain": 0.08}
#: Default likelihood variant, chosen from the signal report (24 AlpacaEval train instructions x 17 models): on the
#: rows without the GPT-4-gaming models it is the better of the two for both offline policies (Spearman +0.24 vs
#: +0.19 for SmolLM2-135M-Instruct, +0.33 vs +0.20 for Gemma 3 270M); on all rows the two are within noise.
DEFAULT_LIKELIHOOD_METHOD = "reference_gain"
#: Models built to game GPT-4 (a constant junk answer that GPT-4 often prefers; a truncated one). Reported apart.
ADVERSARIAL_MODELS = ("NullModel", "gpt4_gamed")
DIGIT_READOUTS = ("expected", "argmax", "single_id")


# ---------------------------------------------------------------------------------------------------------------
# Shared-prefix forward passes
# ---------------------------------------------------------------------------------------------------------------
def _common_prefix_len(seqs: list[list[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


@torch.inference_mode()
def forward_group(
    model: Any, seqs: list[list[int]], *, span_starts: list[int] | None = None, keep_ids: list[int] | None = None,
) -> list[Any]:
    """Score token sequences that share a prefix, running the prefix once and reusing its key/value cache.

    * ``keep_ids`` (digit mode): the next-token log-probabilities of those ids after each whole sequence.
    * ``span_starts`` (likelihood mode): ``(sum of log p(token), n_tokens)`` over ``seq[span_start:]``.

    One sequence at a time after the prefix (no padding at all), which on CPU costs no more than batching.
    """
    if (span_starts is None) == (keep_ids is None):
        raise ValueError("pass exactly one of span_starts / keep_ids")
    if not seqs:
        return []
    limit = min(len(s) for s in seqs) - 1 if span_starts is None else min(span_starts) - 1
    prefix = max(0, min(_common_prefix_len(seqs), limit)) if len(seqs) > 1 else 0
    device = model.device
    cache = None
    if prefix > 0:
        cache = model(input_ids=torch.tensor([seqs[0][:prefix]], device=device), use_cache=True,
                      logits_to_keep=1).cache
    out: list[Any] = []
    for i, seq in enumerate(seqs):
        past = copy.deepcopy(cache) if cache is not None else None
        suffix = torch.tensor([seq[prefix:]], device=device)
        if keep_ids is not None:
            logits = model(input_ids=suffix, cache=past, use_cache=past is not None, logits_to_keep=1).logits
            out.append(torch.log_softmax(logits[0, -1].float(), -1)[keep_ids].tolist())
            continue
        start, n = span_starts[i], len(seq)
        if start >= n:
            out.append((0.0, 0))
            continue
        # positions start-1 .. n-2 predict tokens start .. n-1; they are the last n-start+1 positions minus the last
        logits = model(input_ids=suffix, cache=past, use_cache=past is not None,
                       logits_to_keep=n - start + 1).logits[0, :-1]
        log_probs = torch.log_softmax(logits.float(), -1)
        target = torch.tensor(seq[start:], device=log_probs.device)
        out.append((float(log_probs.gather(-1, target[:, None]).sum()), len(target)))
    return out


def _by_group(keys: list[Any]) -> dict[Any, list[int]]:
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        groups[k].append(i)
    return groups


def _chat(tokenizer: Any, use_chat_template: bool | None) -> bool:
    return P.has_chat_template(tokenizer) if use_chat_template is None else use_chat_template


# ---------------------------------------------------------------------------------------------------------------
# Digit self-evaluation, with every digit read kept (so readout variants cost nothing)
# ---------------------------------------------------------------------------------------------------------------
def digit_logprobs(
    model: Any, tokenizer: Any, instructions: list[str], responses: list[str], references: list[str] | None = None, *,
    groups: list[Any] | None = None, prompt_style: str = "zero_shot", max_length: int | None = 1024,
    use_chat_template: bool | None = None, digit_ids: list[list[int]] | None = None,
    on_group: Callable[[list[int], list[dict]], None] | None = None, skip: set[int] | None = None,
    show_progress: bool = False,
) -> list[dict | None]:
    """Per row: log p of each digit (all its ids, and one canonical id), the digit mass, and truncation flags.

    Same prompt and tokenization as :func:`~selfj_trl.labeling.self_evaluate`. Rows whose instruction cannot fit
    ``max_length`` get ``None``. ``on_group`` is called after each group (to cache results as they come).
    """
    chat = _chat(tokenizer, use_chat_template)
    digit_ids = digit_ids or P.digit_token_ids(tokenizer)
    flat = sorted({i for ids in digit_ids for i in ids})
    pos = {t: k for k, t in enumerate(flat)}
    canonical = []
    for d, ids in enumerate(digit_ids):
        tid = tokenizer.convert_tokens_to_ids(str(d))
        canonical.append(tid if tid in ids else ids[0])
    groups = groups if groups is not None else instructions
    results: list[dict | None] = [None] * len(responses)
    for _, idx in tqdm(list(_by_group(groups).items()), desc=f"digits {prompt_style}", disable=not show_progress,
                       leave=False):
        idx = [i for i in idx if not skip or i not in skip]
        if not idx:
            continue
        seqs, ok, flags = [], [], []
        for i in idx:
            ref = references[i] if references is not None else None
            try:
                jp = P.build_judge_prompt(tokenizer, instructions[i], responses[i], ref, use_chat_template=chat,
                                          max_length=max_length, prompt_style=prompt_style)
            except SelfJInputError:
                continue
            seqs.append(tokenizer(jp.text, add_special_tokens=not chat)["input_ids"])
            ok.append(i)
            flags.append((jp.response_truncated, jp.reference_truncated))
        for i, lp, (rt, ft) in zip(ok, forward_group(model, seqs, keep_ids=flat), flags):
            lp_t = torch.tensor(lp, dtype=torch.float64)
            per_digit = [float(torch.logsumexp(lp_t[[pos[t] for t in ids]], 0)) for ids in digit_ids]
            results[i] = {"lp": per_digit, "lp_single": [lp[pos[t]] for t in canonical],
                          "mass": float(torch.logsumexp(lp_t, 0).exp()), "response_truncated": bool(rt),
                          "reference_truncated": bool(ft)}
        if on_group is not None:
            on_group(idx, [results[i] for i in idx])
    return results


def digit_score(value: dict | None, prompt_style: str = "zero_shot", readout: str = "expected") -> float:
    """A 0-9 score from :func:`digit_logprobs`' record: the style's digits only, mapped linearly onto 0-9.

    ``expected`` (the labeler's): the expectation over digits, each digit's probability summed over all its ids.
    ``argmax``: the most likely digit. ``single_id``: the expectation reading one id per digit (what code that
    looks up ``tokenizer.convert_tokens_to_ids("7")`` gets; it drops e.g. Gemma's byte-fallback ids).
    """
    if value is None:
        return math.nan
    lo, hi = P.PROMPT_STYLE_DIGITS[prompt_style]
    lp = np.asarray(value["lp_single" if readout == "single_id" else "lp"][lo : hi + 1], dtype=float)
    if readout == "argmax":
        return float(np.argmax(lp)) * LABEL_MAX / (hi - lo)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    return float(w @ np.arange(hi - lo + 1)) * LABEL_MAX / (hi - lo)


# ---------------------------------------------------------------------------------------------------------------
# Likelihood self-evaluation
# ---------------------------------------------------------------------------------------------------------------
def _cut(tokenizer: Any, text: str, n_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= n_tokens else tokenizer.decode(ids[: max(n_tokens, 0)], skip_special_tokens=True)


def likelihood_gains(
    model: Any, tokenizer: Any, instructions: list[str], responses: list[str], references: list[str], *,
    method: str = DEFAULT_LIKELIHOOD_METHOD, groups: list[Any] | None = None, use_chat_template: bool | None = None,
    max_length: int | None = 1024, max_target_tokens: int = 256,
    on_group: Callable[[list[int], list[dict]], None] | None = None, skip: set[int] | None = None,
    show_progress: bool = False,
) -> list[dict | None]:
    """Per row: mean log-likelihood (nats/token) of the target after the conditioned and the baseline context.

    See :func:`~selfj_trl.prompts.likelihood_views` for the two methods. The target is cut to its first
    ``max_target_tokens`` tokens and the text inside the conditioned context (reference or response) is cut so the
    whole sequence fits ``max_length``; both contexts score the very same target tokens. ``gain = cond - base``.
    """
    if not (len(instructions) == len(responses) == len(references)):
        raise SelfJInputError("instructions, responses and references must have the same length.")
    chat = _chat(tokenizer, use_chat_template)
    special = not chat
    groups = groups if groups is not None else instructions
    results: list[dict | None] = [None] * len(responses)
    for _, idx in tqdm(list(_by_group(groups).items()), desc=f"likelihood {method}", disable=not show_progress,
                       leave=False):
        idx = [i for i in idx if not skip or i not in skip]
        if not idx:
            continue
        cond_seqs, cond_starts, base_seqs, base_starts = [], [], [], []
        for i in idx:
            ins, resp, ref = instructions[i], responses[i], references[i]
            target = resp if method == "response_gain" else ref
            tgt = tokenizer(target, add_special_tokens=False)["input_ids"][:max_target_tokens]
            cond_empty = P.likelihood_views(tokenizer, ins, "", "", method=method, use_chat_template=chat)[0]
            fixed = len(tokenizer(cond_empty, add_special_tokens=special)["input_ids"])
            budget = (max_length or 10**9) - len(tgt) - fixed
            if budget < 0:  # instruction too long for max_length: shorten the target, keep the context empty
                tgt = tgt[: max(len(tgt) + budget, 0)]
                budget = 0
            inner = ref if method == "response_gain" else resp
            inner = _cut(tokenizer, inner, budget)
            r_in, f_in = (resp, inner) if method == "response_gain" else (inner, ref)
            cond_ctx, base_ctx, _ = P.likelihood_views(tokenizer, ins, r_in, f_in, method=method, use_chat_template=chat)
            c_ids = tokenizer(cond_ctx, add_special_tokens=special)["input_ids"]
            b_ids = tokenizer(base_ctx, add_special_tokens=special)["input_ids"]
            cond_seqs.append(c_ids + tgt)
            cond_starts.append(len(c_ids))
            base_seqs.append(b_ids + tgt)
            base_starts.append(len(b_ids))
        cond = forward_group(model, cond_seqs, span_starts=cond_starts)
        # reference_gain's baseline (instruction -> reference) is the same for every response: score it once
        unique: dict[tuple, int] = {}
        for k, s in enumerate(base_seqs):
            unique.setdefault(tuple(s), k)
        firsts = list(unique.values())
        base_u = forward_group(model, [base_seqs[k] for k in firsts], span_starts=[base_starts[k] for k in firsts])
        base_map = {tuple(base_seqs[k]): v for k, v in zip(firsts, base_u)}
        for i, (c_sum, n), s in zip(idx, cond, base_seqs):
            b_sum, _ = base_map[tuple(s)]
            c_mean, b_mean = (c_sum / n, b_sum / n) if n else (0.0, 0.0)
            results[i] = {"cond": c_mean, "base": b_mean, "gain": c_mean - b_mean, "n_tokens": n}
        if on_group is not None:
            on_group(idx, [results[i] for i in idx])
    return results


def gain_to_score(gain: float, method: str = DEFAULT_LIKELIHOOD_METHOD) -> float:
    """Map a likelihood gain (nats/token) onto the 0-9 label scale (see :data:`LIKELIHOOD_SCALES`)."""
    if not math.isfinite(gain):
        return math.nan
    z = max(min(gain / LIKELIHOOD_SCALES[method], 50.0), -50.0)
    return LABEL_MAX / (1.0 + math.exp(-z))


def likelihood_self_eval(
    model: Any, tokenizer: Any, instructions: list[str], responses: list[str], references: list[str], *,
    batch_size: int = 8, use_chat_template: bool | None = None, method: str = DEFAULT_LIKELIHOOD_METHOD,
    max_length: int | None = 1024, max_target_tokens: int = 256,
) -> list[float]:
    """``self_eval_method=likelihood``: how much the response and the reference raise each other's likelihood.

    ``reference_gain`` (default): per-token log-likelihood of the reference (its first ``max_target_tokens`` tokens)
    given the instruction and the response as a draft, minus given the instruction alone. ``response_gain``: the
    reverse, the response's log-likelihood given the instruction and the reference minus given the instruction alone.
    The gain g (nats/token) is returned as ``9 * sigmoid(g / LIKELIHOOD_SCALES[method])`` on the 0-9 label scale.

    ``batch_size`` is accepted for the labeler's call signature; rows are run one at a time after a shared
    instruction prefix, which on CPU is as fast as padding them into a batch.
    """
    del batch_size
    raw = likelihood_gains(model, tokenizer, instructions, responses, references, method=method,
                           use_chat_template=use_chat_template, max_length=max_length,
                           max_target_tokens=max_target_tokens)
    return [gain_to_score(r["gain"], method) if r is not None else LABEL_MAX / 2 for r in raw]


# ---------------------------------------------------------------------------------------------------------------
# The report: configuration and data
# ---------------------------------------------------------------------------------------------------------------
DEFAULT_DIGIT_VARIANTS = ["zero_shot:ref", "zero_shot:noref", "zero_shot_lead:ref", "zero_shot_lead:noref",
                          "few_shot:ref", "few_shot:noref", "reference_after:ref", "scale_1_5:ref"]


@dataclass
class SignalConfig:
    """Settings of ``selfj-trl signal`` (YAML via ``--config`` or flags)."""

    policy: str = field(default=DEFAULT_POLICY, metadata={"help": "Policy whose self-evaluation is measured."})
    embedder: str = field(default=DEFAULT_EMBEDDER, metadata={"help": "sentence-transformers model for the cosine."})
    data_dir: str | None = field(
        default=None, metadata={"help": "Folder with instructions.jsonl + responses.jsonl (default: "
                                        "../shared/data/alpaca_eval_gpt4). Only split=train rows are used."})
    n_instructions: int = field(default=24, metadata={"help": "Train instructions sampled (x every model)."})
    models: list[str] | None = field(default=None, metadata={"help": "Responding models to keep (default: all)."})
    seed: int = 0
    output_dir: str = "outputs/signal"
    max_length: int = field(default=768, metadata={"help": "Max tokens of a judging prompt (variants may override)."})
    max_instruction_chars: int = field(
        default=1000, metadata={"help": "Sample only instructions up to this many characters (they must fit)."})
    digit_variants: list[str] = field(
        default_factory=lambda: list(DEFAULT_DIGIT_VARIANTS),
        metadata={"help": "STYLE:ref|noref[:MAX_LENGTH] digit self-evaluations to measure."})
    likelihood_methods: list[str] = field(
        default_factory=lambda: list(P.LIKELIHOOD_METHODS), metadata={"help": "Likelihood self-evaluations."})
    max_target_tokens: int = field(default=256, metadata={"help": "Tokens of the likelihood target scored."})
    cosine_weights: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    fit_folds: int = field(default=2, metadata={"help": "Instruction folds for the cross-fitted combination."})
    fit_without_adversarial: bool = field(
        default=True, metadata={"help": "Fit the `fitted` label's weights without NullModel/gpt4_gamed rows."})
    n_bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples (of whole instructions)."})
    use_chat_template: bool | None = None
    trust_remote_code: bool = False
    num_threads: int | None = field(
        default=None, metadata={"help": "torch CPU threads. On a shared, oversubscribed CPU 1 is often several times "
                                        "faster than the default (threads stop waiting on each other)."})

    def __post_init__(self) -> None:
        if self.n_instructions < 2:
            raise SelfJInputError(f"n_instructions must be >= 2 (correlations need several), got {self.n_instructions}.")
        if self.fit_folds < 2:
            raise SelfJInputError(f"fit_folds must be >= 2 so weights are fitted on other instructions, got {self.fit_folds}.")
        for w in self.cosine_weights:
            if not 0.0 <= w <= 1.0:
                raise SelfJInputError(f"cosine_weights must lie in [0, 1], got {w}.")
        for m in self.likelihood_methods:
            if m not in P.LIKELIHOOD_METHODS:
                raise SelfJInputError(f"likelihood_methods: {m!r} is not one of {P.LIKELIHOOD_METHODS}.")
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
    ok = len(parts) in (2, 3) and parts[0] in P.PROMPT_STYLES and parts[1] in ("ref", "noref")
    if ok and len(parts) == 3:
        ok = parts[2].isdigit() and int(parts[2]) > 0
    if not ok:
        raise SelfJInputError(
            f"digit variant {text!r} must be STYLE:ref|noref[:MAX_LENGTH] with STYLE in {P.PROMPT_STYLES}."
        )
    return DigitVariant(parts[0], parts[1] == "ref", int(parts[2]) if len(parts) == 3 else default_max_length)


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def default_data_dir() -> Path | None:
    root = shared_data_dir()
    return root / "alpaca_eval_gpt4" if root is not None else None


def load_train_rows(
    data_dir: str | Path | None = None, n_instructions: int = 24, *, models: list[str] | None = None, seed: int = 0,
    max_instruction_chars: int | None = 1000,
) -> list[dict[str, Any]]:
    """A seeded sample of ``split == "train"`` instructions, each with every (kept) model's response and GPT-4's
    win probability. Test instructions are dropped as the file is read and never reach any model."""
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    if folder is None or not (folder / "instructions.jsonl").exists() or not (folder / "responses.jsonl").exists():
        raise SelfJInputError(
            f"no AlpacaEval data at {folder or '../shared/data/alpaca_eval_gpt4'}; pass --data_dir with "
            "instructions.jsonl (id, instruction, reference, split) and responses.jsonl (id, model, response, "
            "gpt4_win_prob)."
        )
    train = {r["id"]: r for r in _read_jsonl(folder / "instructions.jsonl") if r.get("split") == "train"}
    eligible = sorted(i for i, r in train.items()
                      if max_instruction_chars is None or len(r["instruction"]) <= max_instruction_chars)
    if len(eligible) < 2:
        raise SelfJInputError(f"{folder}: fewer than 2 usable train instructions; check the split column.")
    random.Random(seed).shuffle(eligible)
    chosen = eligible[:n_instructions]  # a prefix of one seeded order: a larger n extends a smaller one (cache reuse)
    rank = {i: k for k, i in enumerate(chosen)}
    keep_models = set(models) if models else None
    rows = []
    for r in _read_jsonl(folder / "responses.jsonl"):
        if r["id"] not in rank or (keep_models is not None and r["model"] not in keep_models):
            continue
        if r.get("gpt4_win_prob") is None or not isinstance(r.get("response"), str):
            continue
        ins = train[r["id"]]
        rows.append({"id": r["id"], "model": r["model"], "instruction": ins["instruction"], "reference": ins["reference"],
                     "response": r["response"], "gpt4_win_prob": float(r["gpt4_win_prob"]), "split": ins["split"],
                     "subset": ins.get("subset"), "instruction_rank": rank[r["id"]]})
    if keep_models is not None and not {r["model"] for r in rows}:
        raise SelfJInputError(f"none of --models {sorted(keep_models)} has responses in {folder}.")
    rows.sort(key=lambda r: (r["instruction_rank"], r["model"]))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Per-component cache
# ---------------------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(text).name or text)[:60]
    return f"{tail}-{hashlib.sha256(text.encode()).hexdigest()[:6]}" if ("/" in text or "\\" in text) else tail


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _digit_prompt_fingerprint() -> str:
    return _fingerprint(P.JUDGE_PROMPT_TEMPLATE, P.JUDGE_PROMPT_TEMPLATE_REFERENCE_AFTER, P.JUDGE_PROMPT_TEMPLATE_SCALE_1_5,
                        P.FEW_SHOT_EXAMPLES, P.RATING_LEAD, P._REFERENCE_BLOCK, P._REF_HINT)


def _likelihood_fingerprint(max_target_tokens: int) -> str:
    return _fingerprint(P.LIKELIHOOD_REFERENCE_CONTEXT, P.LIKELIHOOD_DRAFT_CONTEXT, P.PLAIN_PROMPT_TEMPLATE,
                        max_target_tokens)


class ComponentCache:
    """One JSONL file of ``{"key", "value"}`` per component, appended as groups finish, plus its compute time."""

    def __init__(self, path: Path):
        self.path = path
        self.values: dict[str, Any] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a killed run: recompute that row
                    continue
                self.values[item["key"]] = item["value"]
        self.time_path = path.with_suffix(".time.json")
        self.timing = json.loads(self.time_path.read_text()) if self.time_path.exists() else {"seconds": 0.0, "rows": 0}

    def add(self, items: dict[str, Any], seconds: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"key": k, "value": v}) + "\n" for k, v in items.items())
        self.values.update(items)
        self.timing = {"seconds": self.timing["seconds"] + seconds, "rows": self.timing["rows"] + len(items)}
        self.time_path.write_text(json.dumps(self.timing))


def _row_key(row: dict) -> str:
    return f"{row['id']}|{row['model']}"


class _Policy:
    """Loads the policy on first use only, so a fully cached rerun never touches it."""

    def __init__(self, name: str, trust_remote_code: bool, use_chat_template: bool | None):
        self.name, self.trust, self.use_chat = name, trust_remote_code, use_chat_template
        self._loaded: tuple[Any, Any] | None = None

    def get(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from .labeling import load_policy

            self._loaded = load_policy(self.name, self.trust)
        return self._loaded


def _fill(
    cache: ComponentCache, rows: list[dict], compute: Callable[..., Any], desc: str,
    prepare: Callable[[], Any] | None = None,
) -> None:
    """Compute the rows missing from ``cache`` with ``compute(skip=..., on_group=...)``, saving group by group.

    ``prepare`` (loading the model) runs before the clock starts, so cached timings are scoring time only."""
    keys = [_row_key(r) for r in rows]
    missing = {i for i, k in enumerate(keys) if k not in cache.values}
    if not missing:
        return
    if prepare is not None:
        prepare()
    skip = set(range(len(rows))) - missing
    bar = tqdm(total=len(missing), desc=desc, unit="row", file=sys.stderr)
    clock = [time.perf_counter()]

    def on_group(idx: list[int], values: list[Any]) -> None:
        now = time.perf_counter()
        cache.add({keys[i]: v for i, v in zip(idx, values)}, now - clock[0])
        clock[0] = now
        bar.update(len(idx))

    compute(skip=skip, on_group=on_group)
    bar.close()


def compute_components(config: SignalConfig, rows: list[dict]) -> tuple[dict[str, list[float]], dict[str, dict], dict]:
    """Every component's score per row (NaN where a row could not be scored), their descriptions, and timings."""
    policy = _Policy(config.policy, config.trust_remote_code, config.use_chat_template)
    cache_root = Path(config.output_dir) / "cache"
    ins = [r["instruction"] for r in rows]
    resp = [r["response"] for r in rows]
    refs = [r["reference"] for r in rows]
    groups = [r["id"] for r in rows]
    keys = [_row_key(r) for r in rows]
    scores: dict[str, list[float]] = {}
    info: dict[str, dict] = {}
    timing: dict[str, dict] = {}
    pdir = cache_root / _slug(config.policy)

    for text in config.digit_variants:
        v = parse_digit_variant(text, config.max_length)
        cache = ComponentCache(pdir / f"{v.name.replace('/', '-')}-{_digit_prompt_fingerprint()}.jsonl")

        def run(skip, on_group, v=v):
            model, tok = policy.get()
            return digit_logprobs(model, tok, ins, resp, refs if v.with_reference else None, groups=groups,
                                  prompt_style=v.style, max_length=v.max_length, use_chat_template=config.use_chat_template,
                                  on_group=on_group, skip=skip)

        _fill(cache, rows, run, v.name, prepare=policy.get)
        values = [cache.values[k] for k in keys]
        ok = [x for x in values if x is not None]
        one_id = all(np.allclose(x["lp"], x["lp_single"], atol=1e-5) for x in ok)
        for readout in DIGIT_READOUTS:
            if readout == "single_id" and one_id:
                continue  # one id per digit: identical to "expected"
            name = f"{v.name}/{readout}"
            scores[name] = [digit_score(x, v.style, readout) for x in values]
            info[name] = {"kind": "digits", "style": v.style, "with_reference": v.with_reference,
                          "max_length": v.max_length, "readout": readout}
        info[f"{v.name}/expected"].update(
            digit_mass=float(np.mean([x["mass"] for x in ok])) if ok else math.nan,
            response_truncated=float(np.mean([x["response_truncated"] for x in ok])) if ok else math.nan,
            reference_truncated=float(np.mean([x["reference_truncated"] for x in ok])) if ok else math.nan,
            unscorable=len(values) - len(ok))
        timing[v.name] = cache.timing

    for method in config.likelihood_methods:
        name = f"likelihood/{method}/L{config.max_length}"
        cache = ComponentCache(pdir / f"{name.replace('/', '-')}-{_likelihood_fingerprint(config.max_target_tokens)}.jsonl")

        def run(skip, on_group, method=method):
            model, tok = policy.get()
            return likelihood_gains(model, tok, ins, resp, refs, method=method, groups=groups,
                                    use_chat_template=config.use_chat_template, max_length=config.max_length,
                                    max_target_tokens=config.max_target_tokens, on_group=on_group, skip=skip)

        _fill(cache, rows, run, name, prepare=policy.get)
        values = [cache.values[k] for k in keys]
        scores[f"{name}/score"] = [gain_to_score(x["gain"], method) if x else math.nan for x in values]
        info[f"{name}/score"] = {"kind": "likelihood", "method": method, "with_reference": True,
                                 "max_length": config.max_length, "mean_gain": float(np.nanmean(
                                     [x["gain"] for x in values if x])) if any(values) else math.nan}
        # Not length-normalised: the gain summed over the target's tokens (same cache, no extra compute). For
        # reference_gain the target is the reference, so this only reweighs instructions against each other.
        scores[f"{name}/sum"] = [x["gain"] * x["n_tokens"] if x else math.nan for x in values]
        info[f"{name}/sum"] = {"kind": "likelihood", "method": method, "with_reference": True,
                               "max_length": config.max_length, "normalisation": "sum over target tokens"}
        if method == "response_gain":  # the baseline context is the instruction alone: the reference-free loglik
            scores["likelihood/response_loglik"] = [x["base"] if x else math.nan for x in values]
            info["likelihood/response_loglik"] = {"kind": "likelihood", "method": "response mean log p given the "
                                                  "instruction (perplexity baseline)", "with_reference": False}
        timing[name] = cache.timing

    cache = ComponentCache(cache_root / _slug(config.embedder) / "cosine.jsonl")

    def run_cos(skip, on_group):
        from .labeling import cosine_similarities, load_embedder

        embedder = load_embedder(config.embedder)
        todo = [i for i in range(len(rows)) if i not in skip]
        for start in range(0, len(todo), 64):
            idx = todo[start : start + 64]
            on_group(idx, cosine_similarities(embedder, [resp[i] for i in idx], [refs[i] for i in idx]))

    _fill(cache, rows, run_cos, "cosine")
    scores["cosine"] = [cache.values[k] for k in keys]
    info["cosine"] = {"kind": "cosine", "embedder": config.embedder, "with_reference": True}
    timing["cosine"] = cache.timing
    scores["length_words"] = [float(len(r["response"].split())) for r in rows]
    info["length_words"] = {"kind": "baseline", "with_reference": False}
    return scores, info, timing


# ---------------------------------------------------------------------------------------------------------------
# Correlations with GPT-4, bootstrap intervals over instructions
# ---------------------------------------------------------------------------------------------------------------
def _correlations(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy.stats import pearsonr, spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    return float(spearmanr(x, y).statistic), float(pearsonr(x, y).statistic)


def correlation_summary(
    values: list[float], quality: list[float], clusters: list[Any], *, n_bootstrap: int = 1000, seed: int = 0,
    honest: list[bool] | None = None,
) -> dict[str, Any]:
    """Spearman and Pearson of ``values`` with ``quality``, with 95% percentile-bootstrap intervals.

    The bootstrap resamples whole clusters (instructions): the responses to one instruction share its difficulty, so
    resampling rows would make the intervals too narrow. Resamples where a correlation is undefined (constant scores,
    e.g. an argmax readout that rarely moves) are left out of the percentiles and counted in ``bootstrap_undefined``.
    Also reported: the mean within-instruction Spearman (what best-of-n needs) and the Spearman without the
    adversarial models (``honest``).
    """
    from scipy.stats import spearmanr

    x = np.asarray(values, dtype=float)
    y = np.asarray(quality, dtype=float)
    keep = np.isfinite(x)
    cl = np.asarray([str(c) for c in clusters])
    x, y, cl = x[keep], y[keep], cl[keep]
    honest_mask = np.asarray(honest, dtype=bool)[keep] if honest is not None else None
    sp, pe = _correlations(x, y)
    out: dict[str, Any] = {"n": int(keep.sum()), "spearman": sp, "pearson": pe, "spearman_ci": [math.nan, math.nan],
                           "pearson_ci": [math.nan, math.nan]}
    uniq = np.unique(cl)
    members = [np.flatnonzero(cl == c) for c in uniq]
    if n_bootstrap > 0 and len(uniq) >= 2 and math.isfinite(sp):
        rng = np.random.default_rng(seed)
        draws = np.asarray([
            _correlations(x[rows], y[rows]) for rows in
            (np.concatenate([members[i] for i in rng.integers(0, len(uniq), len(uniq))]) for _ in range(n_bootstrap))
        ])
        defined = np.isfinite(draws)
        out["bootstrap_undefined"] = int((~defined[:, 0]).sum())
        for col, key in ((0, "spearman_ci"), (1, "pearson_ci")):
            if defined[:, col].sum() >= 10:
                lo, hi = np.percentile(draws[defined[:, col], col], [2.5, 97.5])
                out[key] = [float(lo), float(hi)]
    within = []
    for m in members:
        if len(m) >= 3 and np.ptp(x[m]) > 0 and np.ptp(y[m]) > 0:
            within.append(float(spearmanr(x[m], y[m]).statistic))
    out["within_instruction_spearman"] = float(np.mean(within)) if within else math.nan
    if honest_mask is not None and honest_mask.sum() >= 3:
        out["spearman_honest"] = _correlations(x[honest_mask], y[honest_mask])[0]
    out["mean"] = float(np.mean(x)) if len(x) else math.nan
    out["std"] = float(np.std(x)) if len(x) else math.nan
    return out


def combined_labels(
    self_eval: list[float], cosine: list[float], quality: list[float], folds: list[int], *,
    cosine_weights: list[float], n_folds: int, fit_mask: list[bool] | None = None,
) -> tuple[dict[str, list[float]], tuple[float, float, float] | None]:
    """Every label of the family for one self-evaluation: ``weighted_mean``/``rank_mean`` at each cosine weight, and
    ``fitted`` cross-fitted (each fold's weights come from the other folds' instructions). Rows with a NaN
    self-evaluation stay NaN. Also returns the weights fitted on all rows (to pass as ``weights=`` when labeling).

    ``fit_mask`` limits which rows the weights are fitted on (the report leaves out the models built to game GPT-4:
    fitted to them, the weights learn that text unlike the reference is good, i.e. to reward gibberish); every row is
    still labeled and scored."""
    from .labeling import combine_labels, fit_combination

    s = np.asarray(self_eval, dtype=float)
    ok = np.flatnonzero(np.isfinite(s))
    fit_ok = [int(i) for i in ok if fit_mask is None or fit_mask[int(i)]]
    out: dict[str, list[float]] = {}

    def spread(idx: np.ndarray, values: list[float]) -> list[float]:
        full = [math.nan] * len(s)
        for i, v in zip(idx, values):
            full[int(i)] = float(v)
        return full

    s_ok, c_ok = [float(s[i]) for i in ok], [float(cosine[i]) for i in ok]
    for combination in ("weighted_mean", "rank_mean"):
        for w in cosine_weights:
            out[f"{combination}/w={w:g}"] = spread(ok, combine_labels(s_ok, c_ok, cosine_weight=w,
                                                                     combination=combination))
    fitted = [math.nan] * len(s)
    f = np.asarray(folds)
    full_weights = None
    try:
        for k in range(n_folds):
            train = [i for i in fit_ok if f[i] != k]
            test = [int(i) for i in ok if f[i] == k]
            if not test:
                continue
            weights = fit_combination([s[i] for i in train], [cosine[i] for i in train], [quality[i] for i in train])
            for i, v in zip(test, combine_labels([float(s[i]) for i in test], [float(cosine[i]) for i in test],
                                                 combination="fitted", weights=weights)):
                fitted[i] = float(v)
        full_weights = fit_combination([s[i] for i in fit_ok], [cosine[i] for i in fit_ok], [quality[i] for i in fit_ok])
    except SelfJInputError:  # too few rows or constant quality in a fold (tiny test slices): no fitted label
        fitted = [math.nan] * len(s)
    out["fitted/cross-fitted"] = fitted
    return out, full_weights


# ---------------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------------
def run_signal(config: SignalConfig) -> dict[str, Any]:
    """Score, correlate, write ``signal_report.json`` and ``signal_report.md`` into ``output_dir``; return the report."""
    started = time.perf_counter()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    rows = load_train_rows(config.data_dir, config.n_instructions, models=config.models, seed=config.seed,
                           max_instruction_chars=config.max_instruction_chars)
    if {r["split"] for r in rows} != {"train"}:  # load_train_rows guarantees it; a report on test rows must never exist
        raise SelfJInputError("refusing to measure on non-train rows.")
    scores, info, timing = compute_components(config, rows)
    scored_at = time.perf_counter()
    quality = [r["gpt4_win_prob"] for r in rows]
    clusters = [r["id"] for r in rows]
    honest = [r["model"] not in ADVERSARIAL_MODELS for r in rows]
    folds = [r["instruction_rank"] % config.fit_folds for r in rows]

    def summary(values: list[float]) -> dict:
        return correlation_summary(values, quality, clusters, n_bootstrap=config.n_bootstrap, seed=config.seed,
                                   honest=honest)

    components = {name: {**info[name], **summary(values)} for name, values in
                  tqdm(scores.items(), desc="correlations", file=sys.stderr, leave=False)}
    # the self-evaluations `selfj-trl label` can produce (so every combined label below is one it can make)
    candidates = [n for n, i in info.items() if i.get("with_reference") and "normalisation" not in i and
                  (i.get("readout") == "expected" or i["kind"] == "likelihood")]
    combined: dict[str, dict] = {}
    fitted_weights: dict[str, list[float] | None] = {}
    for name in tqdm(candidates, desc="combined labels", file=sys.stderr, leave=False):
        labels, weights = combined_labels(scores[name], scores["cosine"], quality, folds,
                                          cosine_weights=config.cosine_weights, n_folds=config.fit_folds,
                                          fit_mask=honest if config.fit_without_adversarial else None)
        fitted_weights[name] = list(weights) if weights is not None else None
        for variant, values in labels.items():
            combined[f"{name} + cosine | {variant}"] = {"self_eval": name, "label": variant, **summary(values)}

    def best(table: dict[str, dict], where: Callable[[str, dict], bool], key: str = "spearman") -> str | None:
        pool = [(v[key], k) for k, v in table.items()
                if where(k, v) and v.get(key) is not None and math.isfinite(v[key])]
        return max(pool)[1] if pool else None

    report = {
        "policy": config.policy,
        "embedder": config.embedder,
        "quality": "gpt4_win_prob (GPT-4-turbo's probability that the response beats the reference)",
        "data": {"dir": str(Path(config.data_dir) if config.data_dir else default_data_dir()), "splits_used": ["train"],
                 "n_instructions": len({r["id"] for r in rows}), "n_rows": len(rows),
                 "instruction_ids": list(dict.fromkeys(r["id"] for r in rows)),
                 "models": sorted({r["model"] for r in rows}), "seed": config.seed},
        "components": components,
        "combined": combined,
        "fitted_weights_all_rows": fitted_weights,
        "best": {
            "self_eval_with_reference": best(components, lambda k, v: k in candidates),
            "self_eval_without_reference": best(components, lambda k, v: not v.get("with_reference")
                                                and v["kind"] in ("digits", "likelihood")),
            "label": best(combined, lambda k, v: True),
            "label_honest": best(combined, lambda k, v: True, key="spearman_honest"),
        },
        "timing": {"components": timing, "scoring_s_this_run": round(scored_at - started, 1),
                   "total_s_this_run": round(time.perf_counter() - started, 1)},
        "config": asdict(config),
    }
    report["recommended"] = recommended_settings(report)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "signal_report.json").write_text(json.dumps(report, indent=2, default=_json_default), encoding="utf-8")
    (out / "signal_report.md").write_text(markdown_report(report), encoding="utf-8")
    return report


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def signal_report(
    policy: str = DEFAULT_POLICY, embedder: str = DEFAULT_EMBEDDER, n_instructions: int = 24,
    models: list[str] | None = None, seed: int = 0, output_dir: str = "outputs/signal", **options: Any,
) -> dict[str, Any]:
    """Measure every label component of ``policy`` against GPT-4 on a seeded train slice (see the module docstring).

    ``options`` are the other :class:`SignalConfig` fields (``data_dir``, ``digit_variants``, ``max_length``, ...).
    """
    return run_signal(SignalConfig(policy=policy, embedder=embedder, n_instructions=n_instructions, models=models,
                                   seed=seed, output_dir=output_dir, **options))


def recommended_settings(report: dict[str, Any]) -> dict[str, Any] | None:
    """The ``selfj-trl label`` settings of the best fixed-weight label: highest mean of the Spearman without the
    GPT-4-gaming models and the within-instruction Spearman.

    Why both: selective following and model ranking compare answers to different instructions, while best-of-n,
    GRPO/RLOO advantages and DPO pairs compare answers to the same one; a label good at only one makes a judge good
    at only one. Why honest rows: GPT-4 prefers NullModel's constant junk, so ranking by all rows would reward labels
    that like junk (the evaluation harness scores quality on honest rows too). ``fitted`` is left out: it needs a
    labelled dev slice, which a user may not have. Returns None when no label could be scored.
    """
    pool = []
    for key, v in report["combined"].items():
        scores = (v.get("spearman_honest"), v.get("within_instruction_spearman"))
        if not v["label"].startswith("fitted") and all(x is not None and math.isfinite(x) for x in scores):
            pool.append((sum(scores) / 2, key))
    if not pool:
        return None
    criterion, key = max(pool)
    entry = report["combined"][key]
    combination, _, weight = entry["label"].partition("/w=")
    se = report["components"][entry["self_eval"]]
    settings: dict[str, Any] = {"self_eval_method": se["kind"]}
    if se["kind"] == "likelihood":
        settings["likelihood_method"] = se["method"]
    else:
        settings["prompt_style"] = se["style"]
    settings.update(cosine_weight=float(weight), combination=combination)
    return {"settings": settings, "label": key, "criterion": criterion, "spearman_honest": entry["spearman_honest"],
            "within_instruction_spearman": entry["within_instruction_spearman"], "spearman": entry["spearman"],
            "spearman_ci": entry["spearman_ci"]}


def label_flags(settings: dict[str, Any]) -> str:
    """Recommended settings as ``selfj-trl label`` flags (the report and the bench summary print the same line)."""
    return " ".join(f"--{k} {v:g}" if isinstance(v, float) else f"--{k} {v}" for k, v in settings.items())


def _fmt(v: float | None, signed: bool = True) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _ci(ci: list[float]) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def markdown_report(report: dict[str, Any]) -> str:
    """Component-by-component table, then the label family, in Markdown."""
    d = report["data"]
    lines = [
        f"# Labeling signal vs GPT-4: {report['policy']}",
        "",
        (f"AlpacaEval **train** split only: {d['n_instructions']} instructions x {len(d['models'])} models = "
         f"{d['n_rows']} rows (seed {d['seed']}). Quality = GPT-4-turbo win probability against the reference. "
         "95% intervals: percentile bootstrap over instructions. *honest* = without NullModel and gpt4_gamed; "
         "*within* = mean Spearman inside each instruction."),
        "",
        "## Components",
        "",
        "| component | ref | Spearman [95% CI] | Pearson [95% CI] | honest | within | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in report["components"].items():
        notes = []
        if "digit_mass" in c and c["digit_mass"] is not None and math.isfinite(c["digit_mass"]):
            notes.append(f"digit mass {c['digit_mass']:.2f}")
        if c.get("response_truncated"):
            notes.append(f"resp cut {c['response_truncated']:.0%}")
        if c.get("unscorable"):
            notes.append(f"{c['unscorable']} unscorable")
        if "mean_gain" in c and c["mean_gain"] is not None:
            notes.append(f"mean gain {_fmt(c['mean_gain'])}")
        lines.append(
            f"| {name} | {'yes' if c.get('with_reference') else 'no'} | {_fmt(c['spearman'])} {_ci(c['spearman_ci'])} "
            f"| {_fmt(c['pearson'])} {_ci(c['pearson_ci'])} | {_fmt(c.get('spearman_honest'))} "
            f"| {_fmt(c['within_instruction_spearman'])} | {'; '.join(notes)} |"
        )
    weights = sorted({k.split(" | ")[1] for k in report["combined"]},
                     key=lambda v: (v.split("/")[0] != "weighted_mean", v.split("/")[0] != "rank_mean", v))
    lines += ["", "## Combined label (Spearman with GPT-4; cosine weight w; fitted = cross-fitted over instructions)",
              "", "| self-evaluation | " + " | ".join(weights) + " |", "|---" * (len(weights) + 1) + "|"]
    by_se: dict[str, dict[str, dict]] = defaultdict(dict)
    for v in report["combined"].values():
        by_se[v["self_eval"]][v["label"]] = v
    for se, cells in by_se.items():
        lines.append(f"| {se} | " + " | ".join(_fmt(cells[w]["spearman"]) if w in cells else "" for w in weights) + " |")
    b = report["best"]
    lines += ["", "## Best", ""]
    for key, name in b.items():
        if name is None:
            continue
        table = report["combined"] if key.startswith("label") else report["components"]
        c = table[name]
        lines.append(f"- {key}: `{name}`: Spearman {_fmt(c['spearman'])} {_ci(c['spearman_ci'])}, "
                     f"Pearson {_fmt(c['pearson'])} {_ci(c['pearson_ci'])}, honest {_fmt(c.get('spearman_honest'))}")
    rec = report.get("recommended")
    if rec:
        flags = label_flags(rec["settings"])
        lines += ["", "## Recommended labeling settings", "",
                  f"Best fixed-weight label by the mean of the Spearman without the GPT-4-gaming models and the "
                  f"within-instruction Spearman: `{rec['label']}` (honest {_fmt(rec['spearman_honest'])}, within "
                  f"{_fmt(rec['within_instruction_spearman'])}; all rows {_fmt(rec['spearman'])} "
                  f"{_ci(rec['spearman_ci'])}):", "",
                  f"    selfj-trl label --policy {report['policy']} {flags} ..."]
    lines += ["", "## Compute (cumulative over cached runs)", "", "| component | rows | seconds | s/row |",
              "|---|---|---|---|"]
    for name, t in report["timing"]["components"].items():
        rate = t["seconds"] / t["rows"] if t["rows"] else math.nan
        lines.append(f"| {name} | {t['rows']} | {t['seconds']:.0f} | {_fmt(rate, signed=False)} |")
    lines.append(f"\nThis run: {report['timing']['total_s_this_run']} s.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    (config,) = TrlParser(SignalConfig).parse_args_and_config(argv)
    report = run_signal(config)
    out = Path(config.output_dir).resolve()
    print(markdown_report(report))
    print(f"wrote {out / 'signal_report.json'} and {out / 'signal_report.md'}")
    return 0


if __name__ == "__main__":
    from .cli import main as cli_main

    sys.exit(cli_main(["signal", *sys.argv[1:]]))
