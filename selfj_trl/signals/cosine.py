"""``cosine``: the cosine of the sentence embeddings of the answer and the reference, in [-1, 1] (the label's
similarity term)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from . import register_signal


def cosine_similarities(
    embedder: Any, responses: list[str], references: list[str], batch_size: int = 32
) -> list[float]:
    """Cosine of normalised sentence embeddings of each response and its reference, in [-1, 1]."""
    if not responses:
        return []
    emb_r = embedder.encode(
        responses, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False
    )
    # Many rows share a reference (every answer to one instruction): embed each distinct reference once.
    unique = list(dict.fromkeys(references))
    emb_u = embedder.encode(
        unique, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False
    )
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
