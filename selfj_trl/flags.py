"""Every command's flags, parsed and checked in one place.

:func:`parse` wraps ``trl.TrlParser(...).parse_args_and_config`` and checks the parsed values before any dataclass is
built, from the field types and one table keyed by field name (:data:`NUMERIC_FLAGS`), so a new flag is checked by
adding one line, and every mistake becomes one :class:`~selfj_trl.errors.SelfJInputError` naming the flag:

- a float that is not finite (any field, any dataclass, TRL's and transformers' included);
- a number outside its range (:data:`NUMERIC_FLAGS`), or of the wrong type (a YAML list where a number belongs);
- an empty string given to one of this package's text flags;
- a path of the wrong kind: an output file that is an existing folder, a folder that is an existing file;
- a ``device`` torch cannot use on this machine (``cuda`` without CUDA).

argparse's own errors (a missing required flag, ``--n abc``) become the same one line instead of usage + error.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import typing
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from typing import Any, NamedTuple

from .errors import SelfJInputError


class Bounds(NamedTuple):
    """A numeric flag's type and range: ``low``/``high`` (None: unbounded), each included when its ``*_ok`` is set."""

    kind: type
    low: float | None = None
    low_ok: bool = True
    high: float | None = None
    high_ok: bool = True


def _positive(kind: type = int) -> Bounds:
    return Bounds(kind, 1, True) if kind is int else Bounds(kind, 0, False)


def _at_least(low: float, kind: type = int) -> Bounds:
    return Bounds(kind, low, True)


_UNIT = Bounds(float, 0, True, 1, True)  # [0, 1]
_PROBABILITY = Bounds(float, 0, False, 1, True)  # (0, 1]

#: Every numeric flag of every command with its range, keyed by field name (one meaning per name across commands).
#: None passes wherever the field's type allows it. ``max_steps`` is checked by the trainer config: -1 means epochs.
NUMERIC_FLAGS: dict[str, Bounds] = {
    # training (selfj-trl train, quickstart)
    "num_train_epochs": _positive(float),
    "learning_rate": _positive(float),
    "weight_decay": _at_least(0, float),
    "max_grad_norm": _at_least(0, float),
    "per_device_train_batch_size": _positive(),
    "per_device_eval_batch_size": _positive(),
    "gradient_accumulation_steps": _positive(),
    "label_max": _positive(float),
    "teacher_weight": _at_least(0, float),
    "student_weight": _at_least(0, float),
    "distill_weight": _at_least(0, float),
    "distill_warmup_ratio": Bounds(float, 0, True, 1, False),
    "min_label_gap": _at_least(0, float),
    "length_match_ratio": _at_least(1, float),
    "length_decorrelation_weight": _at_least(0, float),
    "pairs_per_row": _at_least(0, float),
    "lora_r": _positive(),
    "lora_alpha": _positive(),
    "lora_dropout": Bounds(float, 0, True, 1, False),
    # lengths, counts and batch sizes
    "max_length": _positive(),
    "max_new_tokens": _positive(),
    "max_target_tokens": _positive(),
    "likelihood_target_tokens": _positive(),
    "max_instruction_chars": _positive(),
    "max_chars_per_text": _positive(),
    "max_request_bytes": _positive(),
    "max_texts_per_request": _positive(),
    "max_pending_texts": _positive(),
    "max_rows": _positive(),
    "max_prompts": _positive(),
    "max_instructions": _positive(),
    "eval_max_instructions": _positive(),
    "fit_max_instructions": _at_least(2),
    "n_instructions": _at_least(2),
    "n_train_instructions": _at_least(0),
    "n_seed_tasks": _at_least(0),
    "n_bundled_instructions": _at_least(2),
    "calibration_prompts": _positive(),
    "bon_prompts": _positive(),
    "bon_n": _positive(),
    "n": _positive(),
    "num_samples": _at_least(0),
    "chunk_size": _positive(),
    "batch_size": _positive(),
    "max_batch_size": _positive(),
    "judge_batch_size": _positive(),
    "generation_batch_size": _positive(),
    "embed_batch_size": _positive(),
    "fit_folds": _at_least(2),
    "num_threads": _positive(),
    "bootstrap_resamples": _at_least(0),
    "n_bootstrap": _at_least(0),
    "seed": _at_least(0),
    "port": Bounds(int, 0, True, 65535, True),
    # sampling, weights and thresholds
    "temperature": _positive(float),
    "top_p": _PROBABILITY,
    "min_gap": _at_least(0, float),
    "max_wait_ms": _at_least(0, float),
    "cosine_weight": _UNIT,
    "cosine_weights": _UNIT,
    "target_coverage": _PROBABILITY,
    "target_coverages": _PROBABILITY,
    "confidence_level": Bounds(float, 0, False, 1, False),
}

#: Flags of this package's own dataclasses that take one of a few words.
CHOICE_FLAGS: dict[str, tuple[str, ...]] = {
    "dtype": ("auto", "float32", "bfloat16"),
    "judge_dtype": ("auto", "float32", "bfloat16"),
}


def dtype_field() -> Any:
    """The ``--dtype`` every model-loading command takes (:func:`selfj_trl.models.compute_dtype` resolves it)."""
    return dataclasses.field(
        default="auto",
        metadata={
            "help": "auto | float32 | bfloat16: the dtype models run in. auto: bf16 where the device computes it "
            "natively (CUDA with bf16, a CPU with AMX or AVX512-BF16), float32 elsewhere; float32 is the exact "
            "path.",
        },
    )


#: Fields naming a file this package writes: an existing folder there is refused.
OUTPUT_FILES = frozenset({"output_file"})
#: Fields naming a folder (written or read): an existing file there is refused.
FOLDERS = frozenset({"output_dir", "dpo_pairs_dir", "judge_dir", "dataset_dir", "data_dir"})
#: Fields naming the torch device to run on.
DEVICES = frozenset({"device"})


def parse(
    dataclass_types: type | Sequence[type],
    argv: Iterable[str] | None,
    prog: str,
    description: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> tuple:
    """``TrlParser(dataclass_types).parse_args_and_config(argv)``, with every value checked before the dataclasses
    are built; any mistake raises one :class:`SelfJInputError` naming the flag. ``defaults`` replace the dataclasses'
    own defaults (the YAML and the flags still decide), as ``parser.set_defaults`` would."""
    import yaml

    types = tuple(dataclass_types) if isinstance(dataclass_types, Sequence) else (dataclass_types,)
    argv = list(argv) if argv is not None else None
    # A parser is reused unless --config or `defaults` change its defaults (building one for TrainingArguments
    # takes ~0.1 s).
    fresh = argv is None or "--config" in argv or bool(defaults)
    parser = (_checked_parser.__wrapped__ if fresh else _checked_parser)(types, prog, description)
    if defaults:
        parser.set_defaults(**defaults)
    try:
        return tuple(parser.parse_args_and_config(argv))
    except SelfJInputError:
        raise
    except yaml.YAMLError as err:
        raise SelfJInputError(f"--config is not valid YAML: {_one_line(err)}") from err
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise SelfJInputError(f"--config cannot be read: {_one_line(err)}") from err
    except ValueError as err:  # TrlParser's config checks and the dataclasses' own (transformers' TrainingArguments)
        raise SelfJInputError(_one_line(err)) from err


@functools.lru_cache(maxsize=16)
def _checked_parser(types: tuple[type, ...], prog: str, description: str | None):
    from trl import TrlParser

    class CheckedParser(TrlParser):
        def error(self, message: str):  # argparse's usage + message + exit(2), as one line the CLI prints
            raise SelfJInputError(message)

        def parse_known_args(self, args=None, namespace=None):
            namespace, rest = super().parse_known_args(args, namespace)
            for dtype in types:
                check_values(
                    dtype,
                    {
                        f.name: getattr(namespace, f.name)
                        for f in dataclasses.fields(dtype)
                        if f.init and hasattr(namespace, f.name)
                    },
                )
            return namespace, rest

    return CheckedParser(types, prog=prog, description=description)


# ---------------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------------
def check_values(dtype: type, values: dict[str, Any]) -> None:
    """Check ``values`` (field name -> value) meant for the dataclass ``dtype``; the first problem is raised."""
    hints = field_types(dtype)
    own = own_fields(dtype)
    defaults = {f.name: f.default for f in dataclasses.fields(dtype)}
    for name, value in values.items():
        hint = hints.get(name)
        if value is None and allows_none(hint):
            continue
        check_finite(name, value)
        if name in NUMERIC_FLAGS:
            check_number(name, value, NUMERIC_FLAGS[name])
        if name in own and value != defaults.get(name):
            check_not_empty(name, value)
        if name in CHOICE_FLAGS and name in own and value not in CHOICE_FLAGS[name]:
            raise SelfJInputError(f"`--{name}` must be one of {' | '.join(CHOICE_FLAGS[name])}, got {value!r}.")
        if name in OUTPUT_FILES or name in FOLDERS:
            check_path_kind(name, value)
        if name in DEVICES:
            check_device(name, value)


def check_instance(obj: Any) -> None:
    """:func:`check_values` on a built dataclass (for configs made in Python rather than parsed)."""
    check_values(type(obj), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})


def check_finite(name: str, value: Any) -> None:
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, float) and not math.isfinite(item):
            raise SelfJInputError(f"`--{name}` must be a finite number, got {value!r}.")


def check_number(name: str, value: Any, bounds: Bounds) -> None:
    """Refuse, in one line naming the flag, a value (or list item) that is not a ``bounds.kind`` within its range."""
    kind, low, low_ok, high, high_ok = bounds
    for item in value if isinstance(value, (list, tuple)) else [value]:
        typed = isinstance(item, Integral if kind is int else Real) and not isinstance(item, bool)
        ok = typed and math.isfinite(item)
        if ok and low is not None:
            ok = item >= low if low_ok else item > low
        if ok and high is not None:
            ok = item <= high if high_ok else item < high
        if not ok:
            raise SelfJInputError(f"`--{name}` must be {describe(bounds)}, got {value!r}.")


def describe(bounds: Bounds) -> str:
    kind, low, low_ok, high, high_ok = bounds
    what = "an integer" if kind is int else "a finite number"
    if low is not None and high is not None:
        return f"{what} in {'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"
    if low is not None:
        return f"{what} {'>=' if low_ok else '>'} {low:g}"
    return what


def check_not_empty(name: str, value: Any) -> None:
    items = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(item, str) and not item.strip() for item in items):
        raise SelfJInputError(f"`--{name}` is empty; give a value or leave the flag out.")


def check_path_kind(name: str, value: Any) -> None:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        return
    path = os.path.expanduser(str(value))
    if name in OUTPUT_FILES and os.path.isdir(path):
        raise SelfJInputError(f"`--{name}` {value} is an existing folder; name a file to write.")
    if name in FOLDERS and os.path.exists(path) and not os.path.isdir(path):
        raise SelfJInputError(f"`--{name}` {value} is an existing file; name a folder.")


def check_device(name: str, value: Any) -> None:
    """A device string torch parses and this machine has (``cuda:1`` needs two CUDA devices)."""
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise SelfJInputError(f"`--{name}` {value!r} is not a torch device; use cpu, cuda, cuda:1, mps, ...") from None
    if device.type == "cpu":
        return
    if device.type == "mps":
        available, count = torch.backends.mps.is_available(), 1
    else:
        backend = getattr(torch, device.type, None)
        is_available = getattr(backend, "is_available", None)
        available = bool(is_available()) if callable(is_available) else False
        count = backend.device_count() if available and hasattr(backend, "device_count") else 0
    if not available:
        raise SelfJInputError(f"`--{name}` {value}: no {device.type} device is available here; use --{name} cpu.")
    if device.index is not None and device.index >= count:
        raise SelfJInputError(f"`--{name}` {value}: this machine has {count} {device.type} device(s).")


# ---------------------------------------------------------------------------------------------------------------
# Field types
# ---------------------------------------------------------------------------------------------------------------
@functools.cache
def field_types(dtype: type) -> dict[str, Any]:
    return typing.get_type_hints(dtype)


@functools.cache
def own_fields(dtype: type) -> frozenset[str]:
    """The fields this package declares (not those inherited from TRL's or transformers' dataclasses)."""
    names = {f.name for f in dataclasses.fields(dtype)}
    for base in dtype.__mro__[1:]:
        if dataclasses.is_dataclass(base) and not base.__module__.startswith("selfj_trl"):
            names -= {f.name for f in dataclasses.fields(base)}
    return frozenset(names)


def allows_none(hint: Any) -> bool:
    return hint is None or type(None) in typing.get_args(hint)


def numeric_kind(hint: Any) -> type | None:
    """``int`` or ``float`` for a numeric field (optional or a list of numbers), else None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    for arg in args:
        inner = typing.get_args(arg) if typing.get_origin(arg) in (list, tuple) else (arg,)
        for kind in (float, int):
            if kind in inner:
                return kind
    return None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
