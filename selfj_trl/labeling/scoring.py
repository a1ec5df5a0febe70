"""One chunk of instructions: take the responses the rows already hold and sample answers with the one sampler,
then score them all alike with the registered signals."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from ..generation import sample_responses
from ..signals import ModelSet, score_signal
from .config import LabelingConfig


def sampling_settings(config: LabelingConfig) -> dict[str, Any]:
    """The labeler's generation settings for :func:`~selfj_trl.generation.sample_responses` (``top_k=0``: nucleus
    sampling only, whatever the policy's own generation config says)."""
    settings: dict[str, Any] = {"max_new_tokens": config.max_new_tokens, "do_sample": config.do_sample}
    if config.do_sample:
        settings.update(temperature=config.temperature, top_p=config.top_p, top_k=0)
    return settings


def score_signals(
    config: LabelingConfig,
    models: ModelSet,
    instructions: list[str],
    responses: list[str],
    references: list[str],
    *,
    stats: Counter | None = None,
    with_noref: bool = True,
) -> tuple[list[float], list[float], list[float]]:
    """(self-evaluation with the reference, the reference-free digit baseline, cosine) for each row, as ``config``
    asks. One function for the labeled rows and the dev slice a fitted combination learns from, so both are scored
    alike."""
    with_ref = score_signal(config.self_eval_method, models, instructions, responses, references, config, stats)
    no_ref = score_signal("digits", models, instructions, responses, None, config) if with_noref else []
    cosine = score_signal("cosine", models, instructions, responses, references, config)
    return with_ref, no_ref, cosine


def label_chunk(
    rows: list[dict[str, Any]], chunk: int, config: LabelingConfig, models: ModelSet, stats: Counter
) -> list[dict[str, Any]]:
    """All labeled rows for one chunk of instructions (signals only; labels come at gather time): per instruction its
    given responses (``source="given"``, ``model`` = the response model column's value), its contrast answers
    (``source="contrast"``, ``model`` = the kind; :mod:`.contrast`), then the policy's samples
    (``source="policy"``, ``model`` = the policy); ``sample_index`` numbers them in that order. The chunk's seed
    depends on the chunk, not the process, so one process and N processes make the same rows."""
    samples: list[list[str]] = [[] for _ in rows]
    if config.num_samples > 0:
        _, samples = sample_responses(
            models.policy,
            models.tokenizer,
            [r["instruction"] for r in rows],
            config.num_samples,
            sampling_settings(config),
            batch_size=config.generation_batch_size,
            seed=config.seed + chunk,
            show_progress=False,
            use_chat_template=config.use_chat_template,
        )
    flat = []
    for row, responses in zip(rows, samples, strict=True):
        base = {k: row[k] for k in ("instruction_id", "instruction", "reference")}
        given = [("given", g) for g in row.get("given", [])] + [("contrast", c) for c in row.get("contrast", [])]
        for k, (source, g) in enumerate(given):
            flat.append({**base, "response": g["response"], "sample_index": k, "source": source, "model": g["model"]})
        for k, response in enumerate(responses):
            if not response.strip():
                stats["empty_response"] += 1
                continue
            flat.append(
                {
                    **base,
                    "response": response,
                    "sample_index": len(given) + k,
                    "source": "policy",
                    "model": config.policy,
                }
            )
    if not flat:
        return []
    with_ref, no_ref, cosine = score_signals(
        config,
        models,
        [r["instruction"] for r in flat],
        [r["response"] for r in flat],
        [r["reference"] for r in flat],
        stats=stats,
        with_noref=config.noref_baseline,
    )
    no_ref = no_ref or [math.nan] * len(flat)
    for r, s, s0, c in zip(flat, with_ref, no_ref, cosine, strict=True):
        r.update(self_eval_score=float(s), self_eval_noref_score=float(s0), cosine_similarity=float(c))
    return flat
