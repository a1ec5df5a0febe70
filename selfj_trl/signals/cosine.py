"""``cosine``: the cosine of the sentence embeddings of the answer and the reference, in [-1, 1] (the label's
similarity term)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from . import register_signal


def cosine_similarities(embedder: Any, responses: list[str], references: list[str], batch_size: int = 32) -> list[float]:
    """Cosine of normalised sentence embeddings of each response and its reference, in [-1, 1]."""
    if not responses:
        return []
    emb_r = embedder.encode(responses, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True,
                            show_progress_bar=False)
    emb_g = embedder.encode(references, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True,
                            show_progress_bar=False)
    return (emb_r * emb_g).sum(-1).clamp(-1.0, 1.0).tolist()


@register_signal("cosine", kind="similarity", describe=lambda settings: f"cosine ({settings.embedder})")
def score(models: Any, instructions: list[str], responses: list[str], references: list[str] | None, settings: Any,
          stats: Counter | None = None) -> list[float]:
    return cosine_similarities(models.embedder, responses, references,
                               batch_size=getattr(settings, "embed_batch_size", 32))
