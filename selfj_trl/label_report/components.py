"""Every label component's score per row, computed once and cached under ``<output_dir>/cache/``.

Components: the ``digits`` signal for each digit variant (three readouts each), the ``likelihood`` signal for each
method (per token and summed), the ``cosine`` signal, and response length (the baseline every judge must beat).
Each is cached per row in a :class:`~selfj_trl.io.JsonlCache` keyed by the signal's fingerprint, appended group by
group, so reruns and added variants only compute what is new.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..io import JsonlCache, atomic_write_json, slug
from ..models import dtype_name
from ..signals import ModelSet, get_signal
from ..signals.cosine import cosine_similarities
from ..signals.digits import DIGIT_READOUTS, digit_logprobs, digit_score
from ..signals.likelihood import gain_to_score, likelihood_gains
from .config import LabelReportConfig, parse_digit_variant


def row_key(row: dict) -> str:
    return f"{row['id']}|{row['model']}"


class TimedCache(JsonlCache):
    """A component's score cache plus the seconds it took to fill (``<name>.time.json``, cumulative over runs)."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.time_path = Path(path).with_suffix(".time.json")
        self.timing = (
            json.loads(self.time_path.read_text()) if self.time_path.exists() else {"seconds": 0.0, "rows": 0}
        )

    def add_timed(self, items: dict[str, Any], seconds: float) -> None:
        self.add(items)
        self.timing = {"seconds": self.timing["seconds"] + seconds, "rows": self.timing["rows"] + len(items)}
        atomic_write_json(self.time_path, self.timing, indent=None)


def fill_cache(
    cache: TimedCache,
    rows: list[dict],
    compute: Callable[..., Any],
    desc: str,
    prepare: Callable[[], Any] | None = None,
) -> None:
    """Compute the rows missing from ``cache`` with ``compute(skip=..., on_group=...)``, saving group by group.

    ``prepare`` (loading the model) runs before the clock starts, so cached timings are scoring time only."""
    keys = [row_key(r) for r in rows]
    missing = {i for i, k in enumerate(keys) if k not in cache}
    if not missing:
        return
    if prepare is not None:
        prepare()
    skip = set(range(len(rows))) - missing
    bar = tqdm(total=len(missing), desc=desc, unit="row", file=sys.stderr)
    clock = [time.perf_counter()]

    def on_group(idx: list[int], values: list[Any]) -> None:
        now = time.perf_counter()
        cache.add_timed({keys[i]: v for i, v in zip(idx, values, strict=True)}, now - clock[0])
        clock[0] = now
        bar.update(len(idx))

    compute(skip=skip, on_group=on_group)
    bar.close()


def scored(value: Any) -> dict | None:
    """A cached record, or None for a row that could not be scored (stored as null, read back as NaN)."""
    return value if isinstance(value, dict) else None


def compute_components(
    config: LabelReportConfig, rows: list[dict]
) -> tuple[dict[str, list[float]], dict[str, dict], dict]:
    """Every component's score per row (NaN where a row could not be scored), their descriptions, and timings."""
    models = ModelSet(config.policy, config.embedder, trust_remote_code=config.trust_remote_code, dtype=config.dtype)
    cache_root = Path(config.output_dir) / "cache"
    ins = [r["instruction"] for r in rows]
    resp = [r["response"] for r in rows]
    refs = [r["reference"] for r in rows]
    groups = [r["id"] for r in rows]
    keys = [row_key(r) for r in rows]
    scores: dict[str, list[float]] = {}
    info: dict[str, dict] = {}
    timing: dict[str, dict] = {}
    policy_dir = cache_root / slug(f"{config.policy}-{dtype_name(config.dtype)}")

    def load_policy() -> Any:
        return models.policy

    digits = get_signal("digits")
    for text in config.digit_variants:
        v = parse_digit_variant(text, config.max_length)
        cache = TimedCache(policy_dir / f"{v.name.replace('/', '-')}-{digits.fingerprint()}.jsonl")

        def run_digits(skip, on_group, v=v):
            return digit_logprobs(
                models.policy,
                models.tokenizer,
                ins,
                resp,
                refs if v.with_reference else None,
                groups=groups,
                prompt_style=v.style,
                max_length=v.max_length,
                use_chat_template=config.use_chat_template,
                on_group=on_group,
                skip=skip,
            )

        fill_cache(cache, rows, run_digits, v.name, prepare=load_policy)
        values = [scored(cache.get(k)) for k in keys]
        ok = [x for x in values if x is not None]
        one_id = all(np.allclose(x["lp"], x["lp_single"], atol=1e-5) for x in ok)
        for readout in DIGIT_READOUTS:
            if readout == "single_id" and one_id:
                continue  # one id per digit: identical to "expected"
            name = f"{v.name}/{readout}"
            scores[name] = [digit_score(x, v.style, readout) for x in values]
            info[name] = {
                "kind": "digits",
                "style": v.style,
                "with_reference": v.with_reference,
                "max_length": v.max_length,
                "readout": readout,
            }
        info[f"{v.name}/expected"].update(
            digit_mass=float(np.mean([x["mass"] for x in ok])) if ok else math.nan,
            response_truncated=float(np.mean([x["response_truncated"] for x in ok])) if ok else math.nan,
            reference_truncated=float(np.mean([x["reference_truncated"] for x in ok])) if ok else math.nan,
            unscorable=len(values) - len(ok),
        )
        timing[v.name] = cache.timing

    likelihood = get_signal("likelihood")
    for method in config.likelihood_methods:
        name = f"likelihood/{method}/L{config.max_length}"
        cache = TimedCache(
            policy_dir / f"{name.replace('/', '-')}-{likelihood.fingerprint(config.max_target_tokens)}.jsonl"
        )

        def run_likelihood(skip, on_group, method=method):
            return likelihood_gains(
                models.policy,
                models.tokenizer,
                ins,
                resp,
                refs,
                method=method,
                groups=groups,
                use_chat_template=config.use_chat_template,
                max_length=config.max_length,
                max_target_tokens=config.max_target_tokens,
                on_group=on_group,
                skip=skip,
            )

        fill_cache(cache, rows, run_likelihood, name, prepare=load_policy)
        values = [scored(cache.get(k)) for k in keys]
        scores[f"{name}/score"] = [gain_to_score(x["gain"], method) if x else math.nan for x in values]
        info[f"{name}/score"] = {
            "kind": "likelihood",
            "method": method,
            "max_target_tokens": config.max_target_tokens,
            "with_reference": True,
            "max_length": config.max_length,
            "mean_gain": float(np.nanmean([x["gain"] for x in values if x])) if any(values) else math.nan,
        }
        # Not length-normalised: the gain summed over the target's tokens (same cache, no extra compute). For
        # reference_gain the target is the reference, so this only reweighs instructions against each other.
        scores[f"{name}/sum"] = [x["gain"] * x["n_tokens"] if x else math.nan for x in values]
        info[f"{name}/sum"] = {
            "kind": "likelihood",
            "method": method,
            "with_reference": True,
            "max_length": config.max_length,
            "normalisation": "sum over target tokens",
        }
        if method == "response_gain":  # the baseline context holds no reference: the reference-free loglik
            scores["likelihood/response_loglik"] = [x["base"] if x else math.nan for x in values]
            info["likelihood/response_loglik"] = {
                "kind": "likelihood",
                "method": "response mean log p given the "
                "instruction in the likelihood context with an empty reference "
                "(perplexity baseline)",
                "with_reference": False,
            }
        timing[name] = cache.timing

    cache = TimedCache(cache_root / slug(f"{config.embedder}-{dtype_name(config.dtype)}") / "cosine.jsonl")

    def run_cosine(skip, on_group):
        todo = [i for i in range(len(rows)) if i not in skip]
        for start in range(0, len(todo), 64):
            idx = todo[start : start + 64]
            on_group(idx, cosine_similarities(models.embedder, [resp[i] for i in idx], [refs[i] for i in idx]))

    fill_cache(cache, rows, run_cosine, "cosine")
    scores["cosine"] = [cache.get(k) for k in keys]
    info["cosine"] = {"kind": "cosine", "embedder": config.embedder, "with_reference": True}
    timing["cosine"] = cache.timing
    scores["length_words"] = [float(len(r["response"].split())) for r in rows]
    info["length_words"] = {"kind": "baseline", "with_reference": False}
    return scores, info, timing
