"""The fitted combination: label weights learned on a labelled dev slice scored by the same policy and embedder."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from ..errors import SelfJInputError
from ..io import atomic_write_text
from ..labels import combine_labels, fit_combination
from ..signals import ModelSet
from ..stats import spearman
from ..tables import load_table, require_columns
from .config import LabelingConfig
from .scoring import score_signals


def load_fit_rows(config: LabelingConfig) -> list[dict[str, Any]]:
    """Dev rows (instruction, reference, response, quality) for ``combination=fitted``.

    An AlpacaEval-style folder gives its train split only, without the two models built to game GPT-4 (fitted to
    them, the weights learn that text unlike the reference is good).
    """
    folder = Path(str(config.fit_dataset))
    if folder.is_dir() and (folder / "instructions.jsonl").exists() and (folder / "responses.jsonl").exists():
        from ..eval_sets import ADVERSARIAL_MODELS, load_alpaca_train_rows

        rows = load_alpaca_train_rows(folder, config.fit_max_instructions, seed=config.seed)
        return [
            {
                "instruction": r["instruction"],
                "reference": r["reference"],
                "response": r["response"],
                "quality": r["gpt4_win_prob"],
            }
            for r in rows
            if r["model"] not in ADVERSARIAL_MODELS
        ]
    table = load_table(config.fit_dataset, "train")
    cols = [config.instruction_column, config.reference_column, config.fit_response_column, config.fit_quality_column]
    require_columns(
        table,
        cols,
        f"fit_dataset {config.fit_dataset}",
        "Map them with --instruction_column/--reference_column/--fit_response_column/--fit_quality_column.",
    )
    rows = []
    for i, ex in enumerate(table):
        texts = [ex[c] for c in cols[:3]]
        if not all(isinstance(t, str) and t.strip() for t in texts):
            continue  # an empty or missing text cannot be scored; the fit uses the rest
        quality = ex[config.fit_quality_column]
        if not isinstance(quality, (int, float)) or not math.isfinite(quality):
            raise SelfJInputError(
                f"fit_dataset row {i}: `{config.fit_quality_column}` must be a finite number, got {quality!r}."
            )
        rows.append({"instruction": texts[0], "reference": texts[1], "response": texts[2], "quality": float(quality)})
    return rows


def fit_path(shard_dir: Path, config: LabelingConfig) -> Path:
    key = json.dumps(
        [
            str(config.fit_dataset),
            config.fit_quality_column,
            config.fit_response_column,
            config.instruction_column,
            config.reference_column,
            config.fit_max_instructions,
            config.seed,
        ]
    )
    return shard_dir / f"fit-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsonl"


def score_fit_rows(config: LabelingConfig, shard_dir: Path, models: ModelSet) -> Path:
    """Score the dev slice once with the labeling policy and embedder; the file is the unit of resume."""
    path = fit_path(shard_dir, config)
    if path.exists():
        return path
    rows = load_fit_rows(config)
    if len(rows) < 3:
        raise SelfJInputError(f"fit_dataset {config.fit_dataset}: {len(rows)} usable rows; fitting needs at least 3.")
    self_eval, _, cosine = score_signals(
        config,
        models,
        [r["instruction"] for r in rows],
        [r["response"] for r in rows],
        [r["reference"] for r in rows],
        with_noref=False,
    )
    for r, s, c in zip(rows, self_eval, cosine, strict=True):
        r.update(self_eval_score=float(s), cosine_similarity=float(c))
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


def fitted_weights(config: LabelingConfig, shard_dir: Path) -> tuple[tuple[float, float, float], dict[str, Any]]:
    """The fitted combination's weights and what the card says about them (source, rows, fit quality)."""
    if config.fit_weights is not None:
        b0, b1, b2 = (float(w) for w in config.fit_weights)
        return (b0, b1, b2), {"weights": [b0, b1, b2], "source": "given (--fit_weights)"}
    rows = [json.loads(line) for line in fit_path(shard_dir, config).read_text(encoding="utf-8").splitlines()]
    s, c, q = ([r[k] for r in rows] for k in ("self_eval_score", "cosine_similarity", "quality"))
    weights = fit_combination(s, c, q)
    in_sample = combine_labels(s, c, combination="fitted", weights=weights)
    rho = spearman(in_sample, q) if len(set(in_sample)) > 1 else float("nan")
    return weights, {
        "weights": list(weights),
        "source": str(config.fit_dataset),
        "rows": len(rows),
        "in_sample_spearman": rho,
    }
