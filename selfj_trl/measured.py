"""Measured findings live in the recipes, not in code: ``recipes/<policy>/label/measured_label.yaml`` and
``recipes/<judge base>/train/config_judge.yaml``.

A ``measured_label.yaml`` holds the label settings ``selfj-trl signal`` measured best for one policy and what that
label scored against GPT-4 (see the README beside it). The labeler reads it to fill the settings a user left unset and
the dataset card reads it to print the figures. A judge base's ``config_judge.yaml`` holds the Self-J loss weights
chosen for it by cross-validation on train instructions; the quickstart trains with them, so that the judge it shows
is the recipe's. The recipes ship inside the package as ``selfj_trl.recipes``; a source checkout reads ``recipes/``
directly.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any


MEASURED_LABEL_FILE = "measured_label.yaml"
JUDGE_RECIPE_FILE = "config_judge.yaml"
JUDGE_LOSS_KEYS = ("teacher_weight", "student_weight", "distill_weight", "distill_warmup_ratio")


def recipes_dir() -> Path | None:
    """The recipes folder: the checkout's ``recipes/``, else the copy installed as ``selfj_trl.recipes``."""
    checkout = Path(__file__).resolve().parent.parent / "recipes"
    if checkout.is_dir():
        return checkout
    from importlib.resources import files
    from importlib.util import find_spec

    if find_spec("selfj_trl.recipes") is None:
        return None
    return Path(str(files("selfj_trl.recipes")))


def recipe_yaml(alias: str, stage: str, name: str) -> dict[str, Any] | None:
    """``recipes/<alias>/<stage>/<name>`` parsed, or None when ``alias`` is not an offline alias with that file (a
    folder or a Hub id never reads a recipe)."""
    import yaml

    root = recipes_dir()
    if root is None or not alias or "/" in alias or "\\" in alias or alias.startswith("."):
        return None
    path = root / alias / stage / name
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


@cache
def measured_label(policy: str) -> dict[str, Any] | None:
    """``{"settings": {...}, "quality": {"label": (all, honest, within), "length": (...)}}`` measured for ``policy``
    (an offline alias with a recipe folder), or None when nobody measured it."""
    data = recipe_yaml(policy, "label", MEASURED_LABEL_FILE)
    if data is None:
        return None
    quality = {k: tuple(float(x) for x in v) for k, v in (data.get("quality") or {}).items()}
    return {"settings": dict(data.get("settings") or {}), "quality": quality or None}


@cache
def measured_judge_loss(judge_base: str) -> dict[str, float]:
    """The Self-J loss weights of ``judge_base``'s recipe (an offline alias with a recipe folder); empty when it has
    none, and the trainer's own defaults (the paper's weights) apply."""
    data = recipe_yaml(judge_base, "train", JUDGE_RECIPE_FILE) or {}
    return {key: float(data[key]) for key in JUDGE_LOSS_KEYS if key in data}


def measured_policies() -> list[str]:
    """Every policy with a measured label in the recipes."""
    root = recipes_dir()
    if root is None:
        return []
    return sorted(p.parent.parent.name for p in root.glob(f"*/label/{MEASURED_LABEL_FILE}"))
