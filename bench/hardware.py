"""The machine's own ceilings, measured in the run that reports against them: a 2048 x 2048 matmul loop in fp32 and
in bf16 with torch's current thread count (on cores with AMX-BF16 or AVX512-BF16 the bf16 one is several times the
fp32 one). A benchmark measures both before and after its work and divides by the higher of the two."""

from __future__ import annotations

import time

import torch


def matmul_peak(n: int = 2048, seconds: float = 3.0, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of an n x n matmul loop in ``dtype`` on this machine, now."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    iters, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        iters += 1
    return 2 * n**3 * iters / (time.perf_counter() - t0)


def peaks(seconds: float = 3.0) -> dict[str, float]:
    return {"fp32": matmul_peak(seconds=seconds), "bf16": matmul_peak(seconds=seconds, dtype=torch.bfloat16)}


def non_embedding_parameters(model) -> int:
    """Parameters that multiply every token (the input embedding is a lookup, not a matmul)."""
    emb = model.get_input_embeddings().weight
    return sum(p.numel() for p in model.parameters()) - emb.numel()


def peak_line(before: dict[str, float], after: dict[str, float]) -> tuple[dict[str, float], str]:
    best = {k: max(before[k], after[k]) for k in before}
    text = ", ".join(
        f"{k} matmul peak (2048^2) {before[k] / 1e9:.1f} GFLOP/s before, {after[k] / 1e9:.1f} after" for k in before
    )
    return best, text
