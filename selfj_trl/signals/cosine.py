"""``cosine``: the cosine of the sentence embeddings of the answer and the reference, in [-1, 1] (the label's
similarity term)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from . import register_signal


def unit_embeddings(embedder: Any, texts: list[str], batch_size: int = 32) -> Any:
    """fp32 unit vectors of ``texts``: normalised after the cast, so that a bf16 embedder's text has cosine 1 with
    itself (normalising in bf16 leaves norms up to 1.005)."""
    import torch

    vectors = embedder.encode(
        texts, batch_size=max(batch_size, 1), convert_to_tensor=True, show_progress_bar=False
    ).float()
    return torch.nn.functional.normalize(vectors, dim=-1)


def cosine_similarities(
    embedder: Any, responses: list[str], references: list[str], batch_size: int = 32
) -> list[float]:
    """Cosine of normalised sentence embeddings of each response and its reference, in [-1, 1]."""
    if not responses:
        return []
    emb_r = unit_embeddings(embedder, responses, batch_size)
    # Many rows share a reference (every answer to one instruction): embed each distinct reference once.
    unique = list(dict.fromkeys(references))
    emb_u = unit_embeddings(embedder, unique, batch_size)
    where = {ref: k for k, ref in enumerate(unique)}
    emb_g = emb_u[[where[ref] for ref in references]]
    return (emb_r * emb_g).sum(-1).clamp(-1.0, 1.0).tolist()


@register_signal("cosine", kind="similarity", describe=lambda settings: f"cosine ({settings.embedder})")
def score(
    models: Any,
    instructions: list[str],
    responses: list[str],
    references: list[str] | None,
    settings: Any,
    stats: Counter | None = None,
) -> list[float]:
    return cosine_similarities(
        models.embedder, responses, references, batch_size=getattr(settings, "embed_batch_size", 32)
    )
