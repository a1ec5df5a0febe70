"""Self-evaluation signals, registered by name: what the labeler and the label-quality report score rows with.

A signal is one file in this folder that registers itself::

    @register_signal("word_count", kind="self_eval")
    def word_count(models, instructions, responses, references, settings, stats=None):
        return [min(len(r.split()), 9) for r in responses]

* ``kind="self_eval"``: the policy's own rating of an answer on the 0-9 label scale; any such signal can be the
  label's self-evaluation (``selfj-trl label --self_eval_method NAME``).
* ``kind="similarity"``: a [-1, 1] similarity of answer and reference (the cosine term of the label).

The scorer reads the models it needs from ``models`` (a :class:`ModelSet`, loaded on first use) and its own settings
from ``settings`` (a LabelingConfig, or any object with those attributes); ``settings=("prompt_style",)`` names them,
so a resumed labeling run knows which settings its shards depend on. ``fingerprint`` hashes the prompt texts the
scores depend on (part of every score-cache key). Files here are imported when the package is, so a new file is
all a new signal needs.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..errors import SelfJInputError


SIGNAL_KINDS = ("self_eval", "similarity")


@dataclass(frozen=True)
class Signal:
    """A registered signal: its name, kind, scorer, the settings it reads and the fingerprint of its prompts."""

    name: str
    kind: str
    score: Callable[..., list[float]]
    settings: tuple[str, ...] = ()
    fingerprint: Callable[[], str] = field(default=lambda: "")
    describe: Callable[[Any], str] | None = None
    prompt_text: Callable[[Any], str] | None = None

    def description(self, settings: Any) -> str:
        """How the rows were scored, in the words the dataset card and the quickstart summary use."""
        return self.describe(settings) if self.describe is not None else self.name


SIGNALS: dict[str, Signal] = {}


def register_signal(
    name: str,
    *,
    kind: str = "self_eval",
    settings: tuple[str, ...] = (),
    fingerprint: Callable[[], str] | None = None,
    describe: Callable[[Any], str] | None = None,
    prompt_text: Callable[[Any], str] | None = None,
) -> Callable:
    """Decorator: register ``score(models, instructions, responses, references, settings, stats=None)``."""
    if kind not in SIGNAL_KINDS:
        raise SelfJInputError(f"signal kind must be one of {SIGNAL_KINDS}, got {kind!r}.")

    def wrap(score: Callable[..., list[float]]) -> Callable[..., list[float]]:
        SIGNALS[name] = Signal(name, kind, score, tuple(settings), fingerprint or (lambda: ""), describe, prompt_text)
        return score

    return wrap


def get_signal(name: str) -> Signal:
    if name not in SIGNALS:
        raise SelfJInputError(f"unknown signal {name!r}; registered: {sorted(SIGNALS)}.")
    return SIGNALS[name]


def self_eval_methods() -> tuple[str, ...]:
    """Names of the registered self-evaluation signals (the values ``--self_eval_method`` takes)."""
    return tuple(name for name, s in SIGNALS.items() if s.kind == "self_eval")


class ModelSet:
    """The policy (with its tokenizer and digit ids) and the embedder, each loaded on first use only: a run whose
    scores are all cached or whose shards are all written never loads a model."""

    def __init__(
        self,
        policy: str,
        embedder: str,
        *,
        trust_remote_code: bool = False,
        dtype: str = "auto",
        load_in_4bit: bool = False,
    ):
        self.policy_name, self.embedder_name, self.trust_remote_code = policy, embedder, trust_remote_code
        self.dtype, self.load_in_4bit = dtype, load_in_4bit

    @cached_property
    def _policy_and_tokenizer(self) -> tuple[Any, Any]:
        from .. import models

        return models.load_policy(
            self.policy_name,
            dtype=self.dtype,
            trust_remote_code=self.trust_remote_code,
            load_in_4bit=self.load_in_4bit,
        )

    @property
    def policy(self) -> Any:
        return self._policy_and_tokenizer[0]

    @property
    def tokenizer(self) -> Any:
        return self._policy_and_tokenizer[1]

    @cached_property
    def digit_ids(self) -> list[list[int]]:
        from ..prompts import digit_token_ids

        return digit_token_ids(self.tokenizer)

    @cached_property
    def embedder(self) -> Any:
        from .. import models

        return models.load_embedder(self.embedder_name, dtype=self.dtype)


def score_signal(
    name: str,
    models: ModelSet,
    instructions: list[str],
    responses: list[str],
    references: list[str] | None,
    settings: Any,
    stats: Counter | None = None,
) -> list[float]:
    """Score rows with the registered signal ``name``."""
    if len(instructions) != len(responses) or (references is not None and len(references) != len(responses)):
        raise SelfJInputError("instructions, responses and references must have the same length.")
    return list(get_signal(name).score(models, instructions, responses, references, settings, stats))


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
