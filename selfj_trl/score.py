"""``selfj-trl score``: add a judge score column to a table of (instruction, response) rows.

    selfj-trl score --judge outputs/judges/minilm --dataset rows.jsonl --output_file scores.jsonl

Long runs resume: scores are appended, chunk by chunk, to a hidden cache next to the output
(``.<output name>.resume-<fingerprint>.jsonl``, an :class:`~selfj_trl.io.JsonlCache`), so the same command run again
after a kill scores only what is missing. The fingerprint covers the judge's files, the device, dtype, token cap and
batch size; each row's key is its text, so a changed judge or setting never reuses old scores, and a changed table
reuses only rows whose text is unchanged. Chunks are fixed slices of the table and a chunk with any row missing is
scored whole, so a resumed run writes the same scores as an uninterrupted one. The output file appears only when
complete (written under a temporary name, then renamed); the cache is deleted then.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .artifacts import crash_point, remove_stale_temporaries
from .flags import dtype_field
from .io import JsonlCache, content_hash, folder_identity, temporary_sibling
from .judge import SelfJudge
from .models import resolve_model
from .prompts import check_text
from .tables import load_table, require_columns


#: Batches scored between two appends to the resume cache: a kill loses at most this much work.
CHUNK_BATCHES = 8
#: Part of the cache fingerprint: bumped if the way scores are computed or stored changes.
CACHE_VERSION = 1


@dataclass
class ScoreConfig:
    """``selfj-trl score``: add a judge score column to a table of (instruction, response) rows.

    A killed run resumes: run the same command again and only rows not yet scored are scored (a hidden
    `.<output_file name>.resume-<fingerprint>.jsonl` next to the output keeps them; another judge or other settings
    start afresh). The output file appears only once complete.
    """

    judge: str = field(metadata={"help": "Judge folder, Hub id or offline alias."})
    dataset: str = field(metadata={"help": "Rows to score: a JSONL/CSV/Parquet file, save_to_disk folder or Hub id."})
    output_file: str = field(
        metadata={
            "help": "Where to write the rows with their scores (JSONL). Rerunning the same "
            "command after a kill resumes from the rows already scored."
        }
    )
    split: str = field(default="train", metadata={"help": "Split of a Hub dataset or DatasetDict folder."})
    instruction_column: str = field(default="instruction", metadata={"help": "Column holding the instructions."})
    response_column: str = field(default="response", metadata={"help": "Column holding the responses."})
    reference_column: str | None = field(
        default=None, metadata={"help": "Optional reference column: scores the teacher view instead of the student."}
    )
    score_column: str = field(default="score", metadata={"help": "Name of the column the scores go to."})
    batch_size: int = field(default=16, metadata={"help": "Pairs per forward pass."})
    max_length: int | None = field(default=None, metadata={"help": "Token cap per view (default: the model's)."})
    max_rows: int | None = field(default=None, metadata={"help": "Score only the first N rows (smoke runs)."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: best available)."})
    dtype: str = dtype_field()
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})


def resume_cache_path(output_file: str | os.PathLike, fingerprint: str) -> Path:
    out = Path(output_file)
    return out.with_name(f".{out.name}.resume-{fingerprint}.jsonl")


def score_fingerprint(config: ScoreConfig, judge: SelfJudge) -> str:
    """What the scores depend on besides each row's text: the judge's files and the settings of the forward pass."""
    return content_hash(
        CACHE_VERSION,
        folder_identity(resolve_model(config.judge)),
        str(judge.device),
        str(judge.model.dtype),
        judge.max_length,
        config.batch_size,
        CHUNK_BATCHES,
        length=12,
    )


def run_score(config: ScoreConfig) -> Path:
    """Score ``config.dataset`` with ``config.judge`` and write JSONL (resuming a killed run); returns the path."""
    # The judge first: a wrong judge path fails at once instead of after the dataset is read.
    judge = SelfJudge.from_pretrained(
        config.judge,
        device=config.device,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        max_length=config.max_length,
    )
    table = load_table(config.dataset, config.split)
    if config.max_rows is not None:
        table = table.select(range(min(config.max_rows, len(table))))
    columns = [config.instruction_column, config.response_column]
    if config.reference_column:
        columns.append(config.reference_column)
    require_columns(
        table,
        columns,
        f"dataset {config.dataset}",
        "Map yours with --instruction_column / --response_column / --reference_column.",
    )
    instructions = table[config.instruction_column]
    responses = table[config.response_column]
    references = table[config.reference_column] if config.reference_column else None
    for i, instruction in enumerate(instructions):  # every row checked before any is scored
        check_text(instruction, f"{config.instruction_column}[{i}]")
        check_text(responses[i], f"{config.response_column}[{i}]", allow_empty=True)
        if references is not None:
            check_text(references[i], f"{config.reference_column}[{i}]")
    out = Path(config.output_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    cache = JsonlCache(resume_cache_path(out, score_fingerprint(config, judge)))
    for stale in out.parent.glob(f".{out.name}.resume-*.jsonl"):  # another judge's or settings' scores
        if stale != cache.path:
            stale.unlink()
    keys = [
        content_hash(instructions[i], responses[i], None if references is None else references[i], length=20)
        for i in range(len(table))
    ]
    resumed = sum(k in cache for k in keys)
    chunk = config.batch_size * CHUNK_BATCHES
    with tqdm(total=len(keys), initial=resumed, desc="scoring", unit="row") as bar:
        for start in range(0, len(keys), chunk):
            rows = range(start, min(start + chunk, len(keys)))
            missing = sum(keys[i] not in cache for i in rows)
            if not missing:
                continue
            scores = judge.score(
                [instructions[i] for i in rows],
                [responses[i] for i in rows],
                references=None if references is None else [references[i] for i in rows],
                batch_size=config.batch_size,
                show_progress=False,
            )
            cache.add(dict(zip([keys[i] for i in rows], scores, strict=True)))
            bar.update(missing)
    scores = [cache.get(k) for k in keys]
    if config.score_column in table.column_names:
        table = table.remove_columns(config.score_column)
    table = table.add_column(config.score_column, scores)
    partial = temporary_sibling(out, ".jsonl")  # renamed into place once complete
    table.to_json(str(partial), lines=True, force_ascii=False)
    crash_point("staged")
    os.replace(partial, out)
    cache.path.unlink(missing_ok=True)
    mean = sum(scores) / len(scores)
    resumed_note = f", {resumed} resumed from an interrupted run" if resumed else ""
    print(f"scored {len(scores)} rows with {config.judge} (mean {mean:.4f}{resumed_note}) -> {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    from .flags import parse

    (config,) = parse((ScoreConfig,), argv, prog="selfj-trl score", description=ScoreConfig.__doc__)
    run_score(config)
    return 0


if __name__ == "__main__":
    from .cli import main as cli_main

    sys.exit(cli_main(["score", *sys.argv[1:]]))
