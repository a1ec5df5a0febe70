"""The published judge: what :meth:`SelfJRewardTrainer.save_judge` writes next to the weights.

A judge folder is a plain ``AutoModelForSequenceClassification`` (LoRA merged unless told otherwise) whose config
carries a ``selfj`` section (input format, score scale, the Self-J settings it was trained with), mirrored in
``selfj.json`` (an unmerged adapter has no config.json), plus a model card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..hub import hub_id_for, package_version, render_judge_card
from ..prompts import judge_format_config
from .config import JUDGE_FORMATS, SelfJRewardConfig


#: Mirror of ``config.selfj`` written next to every judge: an adapter-only (unmerged LoRA) judge has no config.json.
SELFJ_JSON = "selfj.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json")
FULL_MODEL_PATTERNS = ("config.json", "model*.safetensors", "model.safetensors.index.json")


def judge_config_section(
    tokenizer: Any,
    args: SelfJRewardConfig,
    *,
    base_model: str | None,
    dataset: str | None,
    max_length: int | None,
    lora: dict | None,
    view_cuts: dict | None = None,
) -> dict:
    """The ``config.selfj`` section: input format, score scale and the Self-J settings of this judge.

    ``max_length`` is THE judge's length: :class:`~selfj_trl.judge.SelfJudge` (and through it scoring, the reward
    callable, the server and evaluation) cuts views to it by the same rule as training. ``view_cuts`` counts, per
    dataset, the rows whose instruction, response or reference was cut to fit it.
    """
    section = judge_format_config(tokenizer, chat=JUDGE_FORMATS[args.judge_format], score_scale=(0.0, 1.0))
    if args.loss_type == "pairwise":
        section["score_scale"] = None  # Bradley-Terry scores are unbounded logits; only their order means much
    return section | {
        "base_model": hub_id_for(base_model) or base_model,
        "dataset": dataset,
        "teacher_weight": args.teacher_weight,
        "student_weight": args.student_weight,
        "distill_weight": args.distill_weight,
        "distill_warmup_ratio": args.distill_warmup_ratio,
        "loss_type": args.loss_type,
        "use_margin": args.use_margin,
        "label_max": args.label_max,
        "max_length": max_length,
        "view_cuts": view_cuts or {},
        "lora": lora,
        "selfj_trl_version": package_version(),
    }


def lora_settings(model: Any, merged: bool) -> dict | None:
    """The LoRA settings of a peft-wrapped ``model`` for ``config.selfj`` (None without an adapter)."""
    peft_config = getattr(model, "peft_config", None)
    if not peft_config:
        return None
    cfg = peft_config.get("default") or next(iter(peft_config.values()))
    targets = cfg.target_modules
    return {
        "r": getattr(cfg, "r", None),
        "lora_alpha": getattr(cfg, "lora_alpha", None),
        "lora_dropout": getattr(cfg, "lora_dropout", None),
        "target_modules": sorted(targets) if isinstance(targets, (set, list, tuple)) else targets,
        "merged": merged,
    }


def remove_stale_weights(folder: Path, adapter_only: bool) -> None:
    """Drop the other kind of weights left by an earlier save in the same folder (full model vs adapter only).

    A folder holding both would load as whichever transformers looks for first, not as the judge just trained.
    """
    for pattern in FULL_MODEL_PATTERNS if adapter_only else ADAPTER_FILES:
        for path in folder.glob(pattern):
            path.unlink()


def replace_adapter_with_merged(output_dir: Path, merged: Any) -> None:
    """Swap the saved adapter files for the merged full weights, so the judge needs no peft to load."""
    for name in ADAPTER_FILES:
        (output_dir / name).unlink(missing_ok=True)
    merged.save_pretrained(str(output_dir), safe_serialization=True)


def merge_saved_adapter(output_dir: Path, tokenizer: Any, selfj: dict) -> Any:
    """Reload base + the adapter saved in ``output_dir`` on CPU and merge them (ZeRO-3 shards the live weights)."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForSequenceClassification

    from ..models import resolve_model

    adapter = PeftConfig.from_pretrained(str(output_dir))
    base = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(adapter.base_model_name_or_path), num_labels=1
    )
    if base.get_input_embeddings().num_embeddings != len(tokenizer):
        base.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(base, str(output_dir)).merge_and_unload()
    merged.config.update({"selfj": selfj, "pad_token_id": tokenizer.pad_token_id})
    return merged


def write_judge_files(output_dir: Path, selfj: dict, judge_repo: str | None) -> None:
    """``selfj.json`` and the model card; drops ``training_args.bin`` (a pickle: the settings live in config.selfj)."""
    (output_dir / "training_args.bin").unlink(missing_ok=True)
    (output_dir / SELFJ_JSON).write_text(json.dumps(selfj, indent=2) + "\n")
    write_judge_card(output_dir, judge_repo)


def write_judge_card(output_dir: Path, judge_repo: str | None) -> None:
    render_judge_card(output_dir, judge_repo=judge_repo).save(output_dir / "README.md")
