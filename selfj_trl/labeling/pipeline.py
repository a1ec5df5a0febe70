"""Stage 1 end to end: rows -> shards (resumable, shardable across ``accelerate launch`` processes) -> labels over the
whole table -> a dataset folder with its card (and a push when asked).

Labels are computed when the shards are gathered, over the whole table, so rank-based combinations see every row.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from datasets import Dataset
from tqdm.auto import tqdm

from ..artifacts import staged_folder, stamp
from ..errors import SelfJInputError
from ..io import atomic_write_text
from ..labels import combine_labels, label_formula
from ..models import dtype_name
from ..signals import ModelSet, get_signal
from .config import LOW_DIGIT_MASS, LabelingConfig, digit_mass, measured_quality, self_eval_detail
from .contrast import add_contrast_answers
from .fit import fitted_weights, score_fit_rows
from .rows import check_instruction_budget, load_source, prepare_rows
from .scoring import label_chunk
from .shards import (
    check_or_write_manifest,
    chunk_sizes,
    read_shards,
    remove_partial_files,
    shard_path,
    stat_totals,
    write_shard,
)


logger = logging.getLogger(__name__)

#: What the stamp of a labeled dataset folder says it is, and the command that finishes it.
LABELED_DATASET = "labeled dataset"
LABEL_COMMAND = "selfj-trl label"


def label_dataset(config: LabelingConfig, dataset: Dataset | None = None) -> Dataset:
    """Run stage 1 end to end (resumable, shardable across ``accelerate launch`` processes); returns the table."""
    from accelerate import PartialState

    state = PartialState()
    source = dataset if dataset is not None else load_source(config)
    rows, skipped = prepare_rows(source, config)
    if config.contrast_answers:
        rows = add_contrast_answers(rows, config.contrast_answers, config.seed)
    check_instruction_budget(rows, config)
    shard_dir = Path(config.output_dir) / "shards"
    if state.is_main_process:
        # Ours from the first shard on: until the dataset is published, readers refuse the folder instead of
        # loading the shards' JSONL as if it were the table.
        stamp(config.output_dir, LABELED_DATASET, LABEL_COMMAND)
        check_or_write_manifest(shard_dir, config)
        remove_partial_files(shard_dir)
    state.wait_for_everyone()

    sizes = chunk_sizes(len(rows), config.chunk_size)
    mine = [c for c in range(len(sizes)) if c % state.num_processes == state.process_index]
    todo = [c for c in mine if not shard_path(shard_dir, c, sizes[c]).exists()]
    models = ModelSet(
        config.policy,
        config.embedder,
        trust_remote_code=config.trust_remote_code,
        dtype=config.dtype,
        load_in_4bit=config.load_in_4bit,
    )
    if todo:
        done_rows = sum(sizes[c] for c in mine if c not in todo)
        bar = tqdm(
            total=sum(sizes[c] for c in mine),
            initial=done_rows,
            desc=f"labeling (process {state.process_index})",
            unit="instr",
            position=state.process_index,
        )
        for chunk in todo:
            stats: Counter = Counter()
            chunk_rows = rows[chunk * config.chunk_size : (chunk + 1) * config.chunk_size]
            labeled = label_chunk(chunk_rows, chunk, config, models, stats)
            write_shard(shard_dir, chunk, sizes[chunk], labeled, stats)
            bar.update(len(chunk_rows))
        bar.close()
    if state.is_main_process and config.combination == "fitted" and config.fit_weights is None:
        score_fit_rows(config, shard_dir, models)
    state.wait_for_everyone()
    if not state.is_main_process:
        return Dataset.from_list([])
    return finalize(config, sizes, skipped, source_rows=len(rows))


def finalize(config: LabelingConfig, sizes: list[int], skipped: Counter, source_rows: int) -> Dataset:
    """Gather shards in order, compute labels, save the dataset with its card (and push when asked)."""
    shard_dir = Path(config.output_dir) / "shards"
    records = read_shards(shard_dir, sizes)
    if not records:
        raise SelfJInputError("labeling produced no rows (every sampled or given response was empty).")
    weights, fit_info = fitted_weights(config, shard_dir) if config.combination == "fitted" else (None, None)
    labels = combine_labels(
        [r["self_eval_score"] for r in records],
        [r["cosine_similarity"] for r in records],
        cosine_weight=config.cosine_weight,
        combination=config.combination,
        weights=weights,
    )
    for r, label in zip(records, labels, strict=True):
        r["label"] = float(label)
    columns = [
        "instruction_id",
        "instruction",
        "reference",
        "response",
        "sample_index",
        "source",
        "model",
        "self_eval_score",
        "self_eval_noref_score",
        "cosine_similarity",
        "label",
    ]
    table = Dataset.from_dict({c: [r[c] for r in records] for c in columns})
    stats = stat_totals(shard_dir, sizes)
    mass = digit_mass(stats)
    if mass is not None and mass < LOW_DIGIT_MASS:
        logger.warning(
            "the policy put only %.1f%% of its next-token probability on the digits: its ratings are mostly noise. "
            "Try another --prompt_style (rating_lead, few_shot) or --self_eval_method likelihood (see "
            "`selfj-trl signal`).",
            100 * mass,
        )
    save_labeled(table, config, skipped=skipped, stats=stats, num_instructions=source_rows, fit=fit_info)
    return table


def self_eval_prompt(config: LabelingConfig) -> str:
    """What the policy read to make each self-evaluation, as the card shows it."""
    signal = get_signal(config.self_eval_method)
    return signal.prompt_text(config) if signal.prompt_text is not None else signal.description(config)


def card_info(
    table: Dataset,
    config: LabelingConfig,
    *,
    skipped: Counter,
    stats: Counter,
    num_instructions: int,
    fit: dict | None = None,
) -> dict:
    """Everything the dataset card says about a labeled table."""
    hist = [0] * 10
    for label in table["label"]:
        hist[min(int(label), 9)] += 1
    mass = digit_mass(stats)
    return {
        "source": config.dataset_name if isinstance(config.dataset_name, str) else "in-memory dataset",
        "split": config.dataset_split,
        "filter": config.dataset_filter,
        "policy": config.policy,
        "embedder": config.embedder,
        "dtype": dtype_name(config.dtype),
        "num_rows": len(table),
        "num_instructions": num_instructions,
        "num_samples": config.num_samples,
        "contrast_answers": config.contrast_answers,
        "sources": dict(Counter(table["source"])) if "source" in table.column_names else None,
        "label_formula": label_formula(config, tuple(fit["weights"]) if fit else None),
        "cosine_weight": config.cosine_weight,
        "combination": config.combination,
        "fit": fit,
        "self_eval_method": config.self_eval_method,
        "self_eval_detail": self_eval_detail(config),
        "noref_prompt_style": config.prompt_style if config.noref_baseline else None,
        "noref_baseline": config.noref_baseline,
        "defaults_source": config.defaults_source,
        "measured_quality": measured_quality(config),
        "generation": {
            "max_new_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "do_sample": config.do_sample,
            "seed": config.seed,
        },
        "skipped": {**dict(skipped), **{k: v for k, v in stats.items() if k == "empty_response"}},
        "truncated": {k: v for k, v in stats.items() if k.endswith("truncated")},
        "digit_mass": mass,
        "digit_mass_low": mass is not None and mass < LOW_DIGIT_MASS,
        "label_histogram": hist,
        "judge_prompt": self_eval_prompt(config),
        "config": {k: v for k, v in asdict(config).items() if "token" not in k},
    }


def save_labeled(
    table: Dataset,
    config: LabelingConfig,
    *,
    skipped: Counter,
    stats: Counter,
    num_instructions: int,
    fit: dict | None = None,
) -> None:
    """The ``save_to_disk`` table, README.md and labeling_config.json, staged and published into the output folder
    with its completion marker last (:func:`~selfj_trl.artifacts.staged_folder`); the shards stay where they are."""
    from ..hub import dataset_card, push_labeled_dataset

    info = card_info(table, config, skipped=skipped, stats=stats, num_instructions=num_instructions, fit=fit)
    card = dataset_card(info)
    with staged_folder(config.output_dir, LABELED_DATASET, LABEL_COMMAND) as staging:
        table.save_to_disk(str(staging))
        atomic_write_text(staging / "README.md", str(card))
        atomic_write_text(staging / "labeling_config.json", json.dumps(info["config"], indent=2, default=str))
    if config.push_to_hub:
        push_labeled_dataset(table, info, config.hub_dataset_id, private=config.hub_private)


def make_parser():
    """The stage's parser, as TRL's scripts expose theirs (``selfj-trl label --accelerate_config`` splits by it)."""
    from trl import TrlParser

    return TrlParser((LabelingConfig,), prog="selfj-trl label")


def main(argv: list[str] | None = None) -> int:
    """``selfj-trl label``: parse a :class:`LabelingConfig` (``--config`` YAML and flags) and label."""
    from accelerate import PartialState

    from ..flags import parse

    (config,) = parse((LabelingConfig,), argv, prog="selfj-trl label")
    if not config.dataset_name:
        raise SelfJInputError("--dataset_name is required (a Hub id, a folder or a JSONL file).")
    table = label_dataset(config)
    if PartialState().is_main_process:
        print(f"labeled {len(table)} rows -> {Path(config.output_dir).resolve()} (dataset + README.md card)")  # noqa: T201
    return 0
