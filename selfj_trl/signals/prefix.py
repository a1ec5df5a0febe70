"""Forward passes over rows that share a token prefix: the prefix runs once and its key/value cache is reused.

Rows that share an instruction share a prefix (the instruction, the few-shot examples, often the reference), so a
digit or likelihood self-evaluation of many answers to one instruction pays for that prefix once.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

import torch


def common_prefix_len(seqs: list[list[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


def rows_by_group(keys: list[Any]) -> dict[Any, list[int]]:
    """Row indices per group key, in order of first appearance."""
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        groups[k].append(i)
    return groups


def span_log_prob(logits: torch.Tensor, target: torch.Tensor, chunk: int = 8) -> float:
    """sum_t log softmax(logits_t)[target_t], without materialising the log-softmax over the vocabulary.

    With a 262k-token vocabulary (Gemma) and 256 target tokens, ``log_softmax`` writes a 268 MB tensor per row only
    for 256 of its values to be read back; the picked logits minus each position's logsumexp are the same numbers.
    The logsumexp runs ``chunk`` positions at a time in fp32 (bf16 logits upcast chunk by chunk): the 8 MB upcast stays
    in cache, which halved its time on 150 x 262k bf16 logits here (110 -> 48 ms), with the fp32 result unchanged.
    """
    picked = logits.gather(-1, target[:, None]).squeeze(-1).float()
    lse = torch.cat([torch.logsumexp(logits[i : i + chunk].float(), -1) for i in range(0, len(logits), chunk)])
    return float((picked - lse).sum())


@torch.inference_mode()
def forward_group(
    model: Any,
    seqs: list[list[int]],
    *,
    span_starts: list[int] | None = None,
    keep_ids: list[int] | None = None,
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
    prefix = max(0, min(common_prefix_len(seqs), limit)) if len(seqs) > 1 else 0
    device = model.device
    cache = None
    if prefix > 0:
        cache = model(
            input_ids=torch.tensor([seqs[0][:prefix]], device=device), use_cache=True, logits_to_keep=1
        ).cache
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
        logits = model(input_ids=suffix, cache=past, use_cache=past is not None, logits_to_keep=n - start + 1).logits[
            0, :-1
        ]
        target = torch.tensor(seq[start:], device=logits.device)
        out.append((span_log_prob(logits, target), len(target)))
    return out
