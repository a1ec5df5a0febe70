"""Scorers: anything with ``score(instructions, responses, references=None, batch_size=...) -> list[float]``.

A trained judge (:class:`selfj_trl.judge.SelfJudge`, loaded from a folder or Hub id; ``PATH:teacher`` scores its
teacher view, with the reference shown, which is the label's ceiling for that judge; ``PATH`` alone is the student
view TRL's loops see) or a baseline by name:

* ``length`` (characters; ``length:words`` for whitespace words): what a judge that merely likes long answers does;
* ``random`` (``random:SEED``): a seeded score per row, the floor;
* ``cosine`` (``cosine:EMBEDDER``): cosine of response and reference embeddings (all-MiniLM-L6-v2 by default). It
  needs the reference, which a judge never sees, so it is an oracle-ish baseline; rows without one are left out;
* ``self_eval_noref:POLICY``: the policy's own digit self-evaluation, prompted without the reference (what Self-J
  distils away from).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SelfJInputError
from ..io import folder_identity, is_hub_id
from ..judge_views import VIEW_RULE_VERSION
from ..models import DEFAULT_EMBEDDER, dtype_name, load_embedder, load_policy


BASELINE_HELP = "length, length:words, random, random:SEED, cosine, cosine:EMBEDDER, self_eval_noref:POLICY"


def row_hash(instruction: str, response: str, reference: str | None) -> str:
    """Identity of a scored row: its texts (the reference only for scorers that read it)."""
    return hashlib.sha1(json.dumps([instruction, response, reference], ensure_ascii=False).encode()).hexdigest()


class LengthScorer:
    """Response length: the bias every learned judge is suspected of, as a scorer of its own."""

    needs_reference = False

    def __init__(self, unit: str = "chars"):
        if unit not in ("chars", "words"):
            raise SelfJInputError(f"length baseline unit must be 'chars' or 'words', got {unit!r}.")
        self.unit = unit
        self.name = "length" if unit == "chars" else "length:words"
        self.cache_id = f"length:{unit}"

    def score(self, instructions, responses, references=None, batch_size: int = 0) -> list[float]:
        return [float(len(r) if self.unit == "chars" else len(r.split())) for r in responses]


class RandomScorer:
    """A seeded uniform score derived from the row's text, so it does not depend on row order or batching."""

    needs_reference = False

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.name = "random" if self.seed == 0 else f"random:{self.seed}"
        self.cache_id = f"random:{self.seed}"

    def score(self, instructions, responses, references=None, batch_size: int = 0) -> list[float]:
        out = []
        for instruction, response in zip(instructions, responses, strict=False):
            key = int(row_hash(instruction, response, None)[:15], 16)
            out.append(float(np.random.default_rng([self.seed, key]).random()))
        return out


class CosineScorer:
    """Cosine of the response's and the reference's sentence embeddings (normalised), as in Self-J's label.

    References repeat across responses to the same instruction, so their embeddings are kept in memory.
    """

    needs_reference = True

    def __init__(self, embedder: str = DEFAULT_EMBEDDER, dtype: str = "auto"):
        self.embedder, self.dtype = embedder, dtype
        self.name = "cosine" if embedder == DEFAULT_EMBEDDER else f"cosine:{embedder}"
        self.cache_id = f"cosine:{embedder}:{dtype_name(dtype)}"
        self._model = None
        self._reference_vectors: dict[str, np.ndarray] = {}

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        from ..signals.cosine import unit_embeddings

        if self._model is None:
            self._model = load_embedder(self.embedder, dtype=self.dtype)
        return unit_embeddings(self._model, texts, batch_size).cpu().numpy()

    def score(self, instructions, responses, references=None, batch_size: int = 32) -> list[float]:
        if references is None:
            raise SelfJInputError("the cosine baseline needs `references`; this set has none.")
        new = sorted({r for r in references if r is not None and r not in self._reference_vectors})
        if new:
            self._reference_vectors.update(zip(new, self._encode(new, batch_size), strict=False))
        vectors = self._encode(list(responses), batch_size)
        return [
            float(np.dot(v, self._reference_vectors[r])) if r is not None else math.nan
            for v, r in zip(vectors, references, strict=False)
        ]


def _digit_self_evaluation(
    model: Any, tokenizer: Any, instructions: list[str], responses: list[str], max_length: int | None
) -> list[float]:
    """The labeler's digit self-evaluation without the reference: the one place this module reaches the signal
    (imported lazily, as it pulls in torch)."""
    from ..signals.digits import self_evaluate

    return list(self_evaluate(model, tokenizer, instructions, responses, references=None, max_length=max_length))


class SelfEvalScorer:
    """The policy's reference-free digit self-evaluation (expected digit 0-9), the labeling stage's own code."""

    needs_reference = False

    def __init__(self, policy: str, max_length: int | None = 1024, dtype: str = "auto"):
        self.policy, self.dtype = policy, dtype
        self.max_length = max_length
        self.name = f"self_eval_noref:{policy}"
        self.cache_id = f"self_eval_noref:{folder_identity(policy)}:{max_length}:{dtype_name(dtype)}"
        self._policy = None

    def score(self, instructions, responses, references=None, batch_size: int = 8) -> list[float]:
        if self._policy is None:
            self._policy = load_policy(self.policy, dtype=self.dtype)
        model, tokenizer = self._policy
        return _digit_self_evaluation(model, tokenizer, list(instructions), list(responses), self.max_length)


def baseline_scorer(spec: str, embedder: str = DEFAULT_EMBEDDER, seed: int = 0, dtype: str = "auto") -> Any | None:
    """The baseline a name stands for, or None when ``spec`` is not a baseline name."""
    name, _, arg = spec.partition(":")
    if name == "length":
        return LengthScorer(arg or "chars")
    if name == "random":
        if arg and not arg.lstrip("-").isdigit():
            raise SelfJInputError(f"random baseline seed must be an integer, got {arg!r}.")
        return RandomScorer(int(arg) if arg else seed)
    if name == "cosine":
        return CosineScorer(arg or embedder, dtype)
    if name in ("self_eval_noref", "self_eval"):
        if not arg:
            raise SelfJInputError("self_eval_noref needs the policy: `self_eval_noref:smollm2-135m-instruct`.")
        return SelfEvalScorer(arg, dtype=dtype)
    return None


def judge_cache_id(kind: str, path: str, judge: Any) -> str:
    """A judge's scores are the same only for the same weights, the same length and the same cutting rule."""
    dtype = getattr(getattr(judge, "model", None), "dtype", None)
    return f"{kind}:{folder_identity(path)}:L{getattr(judge, 'max_length', None)}:{dtype}:v{VIEW_RULE_VERSION}"


#: Suffix of a judge spec asking for its teacher view (``outputs/judge:teacher``).
TEACHER_SUFFIX = ":teacher"


class TeacherView:
    """A judge scored on its teacher view: ``SelfJudge.score(..., references=...)``, the reference shown.

    The student view (no reference) is what a reward model sees in use; the teacher view is what the judge was
    distilled from, so the two figures side by side say how much the reference helps this judge and how much of it
    the student kept. Rows without a reference cannot be scored this way and are left out (``needs_reference``).
    """

    needs_reference = True

    def __init__(self, judge: Any):
        self.judge = judge

    def score(self, instructions, responses, references=None, batch_size: int = 16) -> list[float]:
        if references is None:
            raise SelfJInputError("a judge's teacher view needs `references`; this set has none.")
        return list(
            self.judge.score(
                list(instructions), list(responses), references=list(references), batch_size=max(int(batch_size), 1)
            )
        )


@dataclass
class ScorerEntry:
    """A resolved scorer with the names the report and the cache use."""

    name: str
    cache_id: str
    scorer: Any
    kind: str  # "judge" | "baseline"
    needs_reference: bool = False


def load_judge(path: str, dtype: str = "auto") -> Any:
    """A trained judge as a scorer (``SelfJudge.from_pretrained``), with one-line errors for bad paths."""
    if not Path(path).is_dir() and not is_hub_id(path):
        raise SelfJInputError(
            f"judge {path!r}: no such folder, and not a baseline name ({BASELINE_HELP}); "
            "pass a judge folder or Hub id."
        )
    from ..judge import SelfJudge  # torch and transformers: only when a judge is evaluated

    try:
        return SelfJudge.from_pretrained(path, dtype=dtype)
    except SelfJInputError:
        raise
    except (OSError, ValueError) as err:
        raise SelfJInputError(f"judge {path!r} could not be loaded ({type(err).__name__}: {err}).") from err


def resolve_scorers(
    specs: Sequence[Any], embedder: str = DEFAULT_EMBEDDER, seed: int = 0, dtype: str = "auto"
) -> list[ScorerEntry]:
    """Baseline names, judge folders / Hub ids and scorer objects, as uniquely named entries."""
    entries: list[ScorerEntry] = []
    loaded: dict[str, Any] = {}  # PATH and PATH:teacher share one loaded judge
    for spec in specs:
        if isinstance(spec, str):
            if not spec.strip():
                raise SelfJInputError("an empty judge / baseline name was given.")
            baseline = baseline_scorer(spec.strip(), embedder, seed, dtype)
            if baseline is not None:
                entries.append(
                    ScorerEntry(baseline.name, baseline.cache_id, baseline, "baseline", baseline.needs_reference)
                )
                continue
            teacher = spec.endswith(TEACHER_SUFFIX) and not Path(spec).exists()
            path = spec[: -len(TEACHER_SUFFIX)] if teacher else spec
            if path not in loaded:
                loaded[path] = load_judge(path, dtype)
            judge = loaded[path]
            name = Path(path.rstrip("/")).name or path
            if teacher:
                entries.append(
                    ScorerEntry(
                        name + TEACHER_SUFFIX,
                        judge_cache_id("judge-teacher", path, judge),
                        TeacherView(judge),
                        "judge",
                        True,
                    )
                )
                continue
            entries.append(
                ScorerEntry(
                    name,
                    judge_cache_id("judge", path, judge),
                    judge,
                    "judge",
                    bool(getattr(judge, "needs_reference", False)),
                )
            )
        elif callable(getattr(spec, "score", None)):
            name = str(getattr(spec, "name", None) or type(spec).__name__)
            cache_id = str(getattr(spec, "cache_id", None) or f"object:{name}")
            entries.append(
                ScorerEntry(
                    name, cache_id, spec, getattr(spec, "kind", "judge"), bool(getattr(spec, "needs_reference", False))
                )
            )
        else:
            raise SelfJInputError(
                "judge must be a folder, a Hub id, a baseline name or an object with .score(), "
                f"got {type(spec).__name__}."
            )
    seen: dict[str, int] = {}
    for entry in entries:  # two judges called "judge" in different folders must stay apart in the report
        seen[entry.name] = seen.get(entry.name, 0) + 1
        if seen[entry.name] > 1:
            entry.name = f"{entry.name}#{seen[entry.name]}"
    return entries
