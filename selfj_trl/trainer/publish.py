"""The published judge: what :meth:`SelfJRewardTrainer.save_judge` writes next to the weights.

A judge folder is a plain ``AutoModelForSequenceClassification`` (LoRA merged unless told otherwise) whose config
carries a ``selfj`` section (input format, score scale, the Self-J settings it was trained with), mirrored in
``selfj.json`` (an unmerged adapter has no config.json), plus a model card, and the completion marker
(:data:`~selfj_trl.io.MANIFEST_NAME`: each judge file and its size) written LAST. A folder without a valid marker
was not completely written (a killed ``selfj-trl train``) and is refused by ``SelfJudge.from_pretrained`` and
``selfj-trl push``.

Saving goes through :func:`staged_judge`: the judge is written into a staging folder inside ``output_dir`` (same
filesystem), its files are renamed into place, and the marker is renamed in last; the old marker is dropped before
the first file of the old judge is touched. A kill at any point leaves either no marker (refused: rerun training)
or a complete judge. Whatever else ``output_dir`` holds (checkpoints, trainer state, logs) is left as it is.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..cards import hub_id_for, package_version
from ..hub import render_judge_card
from ..io import MANIFEST_NAME, atomic_write_text, fsync_dir, read_manifest, write_manifest
from ..judge_views import judge_format_config
from .config import JUDGE_FORMATS, SelfJRewardConfig


#: Mirror of ``config.selfj`` written next to every judge: an adapter-only (unmerged LoRA) judge has no config.json.
SELFJ_JSON = "selfj.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json")
FULL_MODEL_PATTERNS = ("config.json", "model*.safetensors", "model.safetensors.index.json")
#: The staging folder inside ``output_dir`` that a judge is written to before it is moved into place.
STAGING_NAME = ".selfj-judge-staging"
#: Files in a judge folder that are not part of the judge (the card is re-rendered on push; the trainer's records
#: may be rewritten after the save): not listed in the marker, never moved or removed by a save.
NOT_JUDGE_FILES = (
    "README.md",
    "trainer_state.json",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "training_args.bin",
)


def judge_config_section(
    tokenizer: Any,
    args: SelfJRewardConfig,
    *,
    base_model: str | None,
    dataset: str | None,
    max_length: int | None,
    lora: dict | None,
    view_cuts: dict | None = None,
    length_records: dict | None = None,
    quantization: dict | None = None,
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
        # The Hub id when there is one (an offline alias's local folder maps to its model's id): the config is
        # published, and a folder path of the training machine means nothing to a Hub user.
        "base_model": hub_id_for(base_model) or base_model,
        "dataset": dataset,
        "teacher_weight": args.teacher_weight,
        "student_weight": args.student_weight,
        "distill_weight": args.distill_weight,
        "distill_warmup_ratio": args.distill_warmup_ratio,
        "distill_loss": args.distill_loss,
        "loss_type": args.loss_type,
        "use_margin": args.use_margin,
        "pairs_per_row": args.pairs_per_row,
        "length_control": length_control_section(args, length_records or {}),
        "label_max": args.label_max,
        "max_length": max_length,
        # what the arithmetic ran in; the saved weights are the fp32 (or --dtype) master weights either way
        "training_precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "view_cuts": view_cuts or {},
        "quantization": quantization,
        "lora": lora,
        "selfj_trl_version": package_version(),
    }


def length_control_section(args: SelfJRewardConfig, records: dict[str, dict]) -> dict:
    """``{"method", "slope": {dataset: s}}``, plus for ``matched`` the ratio and ``{dataset: [kept, of]}`` pairs, for
    ``decorrelated`` the penalty's weight."""
    section = {"method": args.length_control, "slope": {k: r["slope"] for k, r in records.items() if "slope" in r}}
    if args.length_control == "decorrelated":
        section["weight"] = args.length_decorrelation_weight
    if args.length_control == "matched":
        section["ratio"] = args.length_match_ratio
        section["pairs_kept"] = {k: [r["pairs_kept"], r["pairs"]] for k, r in records.items() if "pairs" in r}
    return section


def quantization_settings(config: Any) -> dict | None:
    """What the base weights were frozen as during training (QLoRA), from its ``BitsAndBytesConfig``, or None.

    A card must say it: the adapter learned against the quantized weights, and merged into full-precision ones it
    scores a little differently from the model that was trained."""
    if config is None:
        return None
    if getattr(config, "load_in_4bit", False):
        return {
            "bits": 4,
            "quant_type": config.bnb_4bit_quant_type,
            "compute_dtype": str(config.bnb_4bit_compute_dtype),
        }
    return {"bits": 8, "quant_type": "int8", "compute_dtype": None}


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

    A folder holding both would load as whichever transformers looks for first, not as the judge just trained. The
    completion marker goes first: from here until :func:`write_judge_files` writes it again the folder is refused.
    """
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
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
    if selfj.get("reward_stats"):
        merged.config.update({"mean": selfj["reward_stats"]["mean"], "std": selfj["reward_stats"]["std"]})
    return merged


def write_judge_files(output_dir: Path, selfj: dict, judge_repo: str | None) -> None:
    """``selfj.json``, the model card, then the completion marker (last); drops ``training_args.bin`` (a pickle: the
    settings live in config.selfj). Call it after the weights and tokenizer are written."""
    output_dir = Path(output_dir)
    (output_dir / "training_args.bin").unlink(missing_ok=True)
    atomic_write_text(output_dir / SELFJ_JSON, json.dumps(selfj, indent=2) + "\n")
    write_judge_card(output_dir, judge_repo)
    write_manifest(output_dir, judge_files(output_dir), what="judge")


def write_judge_card(output_dir: Path, judge_repo: str | None) -> None:
    atomic_write_text(Path(output_dir) / "README.md", str(render_judge_card(output_dir, judge_repo=judge_repo)))


def judge_files(folder: Path) -> list[str]:
    """The files of the judge in ``folder``: its top-level files, less the card, the trainer's records and anything
    hidden or temporary (sub-folders are checkpoints and logs, never part of the judge)."""
    folder = Path(folder)
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and ".tmp" not in p.name
        and p.name not in NOT_JUDGE_FILES
        and p.name != MANIFEST_NAME
    )


@contextmanager
def staged_judge(
    output_dir: str | os.PathLike, *, judge_repo: str | None = None, should_save: bool = True
) -> Iterator[Path]:
    """Write a judge into the staging folder this yields, then move it into ``output_dir`` (see the module doc).

    Inside the block, save the weights and tokenizer to the yielded folder and finish with :func:`write_judge_files`
    on it. On a clean exit its files replace the judge files of ``output_dir`` and the marker is renamed in last; if
    the block raises, ``output_dir`` is not touched. Every process of a distributed run enters it (the save is
    collective) with the same folder; only the one with ``should_save`` touches files.
    """
    output_dir = Path(output_dir)
    staging = output_dir / STAGING_NAME
    if should_save:
        output_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed save
        staging.mkdir()
    try:
        yield staging
        if should_save:
            swap_in_judge(staging, output_dir, judge_repo=judge_repo)
    finally:
        if should_save:
            shutil.rmtree(staging, ignore_errors=True)


def swap_in_judge(staging: Path, output_dir: Path, judge_repo: str | None = None) -> None:
    """Move the complete judge in ``staging`` into ``output_dir``: drop the old marker, remove old judge files the new
    judge does not have (the other kind of weights, old shards), rename each new file in, re-render the card (with
    the run's eval_results.json), and rename the marker in last."""
    staging, output_dir = Path(staging), Path(output_dir)
    new = read_manifest(staging)
    if new is None:
        raise RuntimeError(
            f"{staging} holds no complete judge: call write_judge_files on it before leaving the block."
        )
    old = read_manifest(output_dir) or {}
    (output_dir / MANIFEST_NAME).unlink(missing_ok=True)  # from here until the last rename, the folder is refused
    fsync_dir(output_dir)
    stale = set(old)
    for pattern in (*FULL_MODEL_PATTERNS, *ADAPTER_FILES, SELFJ_JSON):
        stale.update(p.name for p in output_dir.glob(pattern) if p.is_file())
    for name in sorted(stale - set(new)):
        (output_dir / name).unlink(missing_ok=True)
    for name in sorted(new):
        os.replace(staging / name, output_dir / name)
    if (staging / "README.md").exists():
        os.replace(staging / "README.md", output_dir / "README.md")
        if (output_dir / "eval_results.json").exists():  # the card shows the run's evaluation, kept outside staging
            write_judge_card(output_dir, judge_repo)
    fsync_dir(output_dir)
    os.replace(staging / MANIFEST_NAME, output_dir / MANIFEST_NAME)
    fsync_dir(output_dir)
