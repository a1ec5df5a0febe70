"""Held-out sets by name: a set's file registers its loader with :func:`register`; :func:`load_eval_set` finds it.

A loader takes any of the keyword arguments ``data_dir``, ``split``, ``max_instructions`` and ``seed`` (it declares
only those it reads) and returns a :class:`~selfj_trl.eval_sets.base.PointwiseSet` or
:class:`~selfj_trl.eval_sets.base.PairwiseSet`. Anything that is not a registered name is read as a user's table.

A set that declares where it was published (``public=``, a :class:`~selfj_trl.eval_sets.sources.PublicSource`) is
also loadable without the project's data folder: asked for with no ``data_dir`` on a machine without
``../shared/data``, it is read from its public files (fetched and cached once) and its notes say so.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from ..errors import SelfJInputError
from ..io import is_hub_id, shared_data_dir
from .base import EvalSet, PairwiseSet, PointwiseSet
from .custom import load_custom_set
from .sources import PublicSource


LOADER_OPTIONS = ("data_dir", "split", "max_instructions", "seed")


@dataclass(frozen=True)
class RegisteredSet:
    """A named held-out set: its loader, the other names it answers to and where its data was published."""

    name: str
    loader: Callable[..., EvalSet]
    aliases: tuple[str, ...] = ()
    public: PublicSource | None = None

    def load(self, **options: Any) -> EvalSet:
        """Call the loader with the options it declares; without any data folder, on the set's public files."""
        accepted = inspect.signature(self.loader).parameters
        notes: list[str] = []
        if self.public is not None and options.get("data_dir") is None and shared_data_dir() is None:
            options["data_dir"], notes = self.public.ensure()
        ds = self.loader(**{k: v for k, v in options.items() if k in accepted})
        ds.notes.extend(notes)
        return ds


_REGISTRY: dict[str, RegisteredSet] = {}
_ALIASES: dict[str, str] = {}


def register(
    name: str,
    aliases: tuple[str, ...] = (),
    public: PublicSource | None = None,
) -> Callable[[Callable[..., EvalSet]], Callable[..., EvalSet]]:
    """Decorator registering a loader under ``name`` (and ``aliases``, matched case-insensitively); ``public`` says
    how to rebuild the set's files from where they were published, for machines without the data folder."""

    def decorate(loader: Callable[..., EvalSet]) -> Callable[..., EvalSet]:
        params = set(inspect.signature(loader).parameters)
        unknown = params - set(LOADER_OPTIONS)
        if unknown:
            raise TypeError(f"eval set loader {loader.__name__} takes {sorted(unknown)}; allowed: {LOADER_OPTIONS}.")
        if public is not None and "data_dir" not in params:
            raise TypeError(f"eval set loader {loader.__name__} declares public files but takes no data_dir.")
        keys = [k.strip().lower() for k in (name, *aliases)]
        taken = [k for k in keys if _ALIASES.get(k, name) != name]
        if taken:
            raise ValueError(f"eval set name(s) {taken} already belong to another set.")
        _REGISTRY[name] = RegisteredSet(name, loader, tuple(aliases), public)
        _ALIASES.update(dict.fromkeys(keys, name))
        return loader

    return decorate


def unregister(name: str) -> None:
    """Forget a registered set and its aliases (tests that register a set of their own clean up with it)."""
    _REGISTRY.pop(name, None)
    for alias in [a for a, target in _ALIASES.items() if target == name]:
        del _ALIASES[alias]


def registered_sets() -> dict[str, RegisteredSet]:
    """Every registered set by name, in registration order."""
    return dict(_REGISTRY)


def resolve_eval_set_name(spec: str) -> str | None:
    """The registered set a name refers to, or None when it is not a registered name."""
    return _ALIASES.get(spec.strip().lower())


def load_eval_set(
    spec: Any,
    *,
    data_dir: str | Path | None = None,
    split: str = "test",
    max_instructions: int | None = None,
    seed: int = 0,
    quality_column: str | None = None,
) -> EvalSet:
    """A registered set by name, an already loaded set, or a user's table (path, Hub id or ``Dataset``)."""
    if isinstance(spec, (PointwiseSet, PairwiseSet)):
        return spec
    if isinstance(spec, Dataset):
        return load_custom_set(spec, quality_column, split, max_instructions, seed)
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise SelfJInputError(f"eval set must be a name, a path or a Dataset, got {type(spec).__name__}.")
    text = str(spec)
    name = resolve_eval_set_name(text)
    if name is not None:
        return _REGISTRY[name].load(data_dir=data_dir, split=split, max_instructions=max_instructions, seed=seed)
    if Path(text).exists() or is_hub_id(text):
        return load_custom_set(text, quality_column, split, max_instructions, seed)
    raise SelfJInputError(
        f"unknown eval set {text!r}; use one of {list(_REGISTRY)} or a dataset path / Hub id with "
        "instruction, response and a quality column."
    )
