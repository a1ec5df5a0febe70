"""The held-out sets a judge is evaluated on, registered by name and loaded into one shape so every metric reads
the same arrays.

Built-in sets (one file each, read from the project's shared data folder ``../shared/data`` and never copied):
``alpaca_eval``, ``mtbench``, ``prometheus``, ``human_pairwise``. Without that folder each is rebuilt from where it
was published, fetched once into the ``datasets`` cache (:mod:`.sources`, which says how close each rebuild is;
``python -m selfj_trl.eval_sets`` fetches them ahead of an offline run); when that fails too, one line says so.
Any table with instruction/response and a quality column (file, ``save_to_disk`` folder, Hub id or ``Dataset``) is
a pointwise set too (:mod:`.custom`).

A new set is one new file in this folder: a loader decorated with ``@register("name")`` that returns a
:class:`PointwiseSet` or :class:`PairwiseSet`, with what is particular to the set (adversarial models, subsets
reported together, leaderboard) as attributes of that object. Every module in this folder is imported here, so the
file needs no other edit (``public=`` a :class:`~.sources.PublicSource` when the set's files are published
somewhere); code outside the package can register a set the same way.
"""

from __future__ import annotations

import importlib
import pkgutil

from .alpaca_eval import ADVERSARIAL_MODELS, ALPACA_EVAL, load_alpaca_eval, load_alpaca_train_rows
from .base import EvalSet, PairwiseSet, PointwiseSet, data_root, sample_groups
from .custom import QUALITY_CANDIDATES, load_custom_set
from .human_pairwise import HUMAN_PAIRWISE, LLMBAR_ADVERSARIAL, load_human_pairwise
from .mtbench import MTBENCH, load_mtbench
from .prometheus import PROMETHEUS, load_prometheus
from .registry import (
    RegisteredSet,
    load_eval_set,
    register,
    registered_sets,
    resolve_eval_set_name,
    unregister,
)
from .sources import PublicDataUnavailable, PublicSource


#: The sets that ship with the package (each registered by its own file); ``registered_sets()`` lists every set.
BUILTIN_SETS = (ALPACA_EVAL, MTBENCH, PROMETHEUS, HUMAN_PAIRWISE)

for _module in pkgutil.iter_modules(__path__):  # a set added as a new file registers itself on import
    if _module.name != "__main__":  # the fetch command, run by ``python -m selfj_trl.eval_sets``
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "ADVERSARIAL_MODELS",
    "ALPACA_EVAL",
    "BUILTIN_SETS",
    "HUMAN_PAIRWISE",
    "LLMBAR_ADVERSARIAL",
    "MTBENCH",
    "PROMETHEUS",
    "QUALITY_CANDIDATES",
    "PublicDataUnavailable",
    "PublicSource",
    "EvalSet",
    "PairwiseSet",
    "PointwiseSet",
    "RegisteredSet",
    "data_root",
    "load_alpaca_eval",
    "load_alpaca_train_rows",
    "load_custom_set",
    "load_eval_set",
    "load_human_pairwise",
    "load_mtbench",
    "load_prometheus",
    "register",
    "registered_sets",
    "resolve_eval_set_name",
    "sample_groups",
    "unregister",
]
