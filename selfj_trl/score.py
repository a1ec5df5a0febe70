"""``selfj-trl score``: add a judge score column to a table of (instruction, response) rows.

    selfj-trl score --judge outputs/judges/minilm --dataset rows.jsonl --output_file scores.jsonl
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .io import load_table, require_columns, temporary_sibling
from .judge import SelfJudge


@dataclass
class ScoreConfig:
    """``selfj-trl score``: add a judge score column to a table of (instruction, response) rows."""

    judge: str = field(metadata={"help": "Judge folder, Hub id or offline alias."})
    dataset: str = field(metadata={"help": "Rows to score: a JSONL/CSV/Parquet file, save_to_disk folder or Hub id."})
    output_file: str = field(metadata={"help": "Where to write the rows with their scores (JSONL)."})
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
    dtype: str | None = field(default=None, metadata={"help": "Weights dtype, e.g. float32 or bfloat16."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})


def run_score(config: ScoreConfig) -> Path:
    """Score ``config.dataset`` with ``config.judge`` and write JSONL; returns the output path."""
    # The judge first: a wrong judge path fails at once instead of after the dataset is read.
    judge = SelfJudge.from_pretrained(
        config.judge, device=config.device, dtype=config.dtype, trust_remote_code=config.trust_remote_code,
        max_length=config.max_length,
    )
    table = load_table(config.dataset, config.split)
    if config.max_rows is not None:
        table = table.select(range(min(config.max_rows, len(table))))
    columns = [config.instruction_column, config.response_column]
    if config.reference_column:
        columns.append(config.reference_column)
    require_columns(
        table, columns, f"dataset {config.dataset}",
        "Map yours with --instruction_column / --response_column / --reference_column.",
    )
    scores = judge.score(
        table[config.instruction_column],
        table[config.response_column],
        references=table[config.reference_column] if config.reference_column else None,
        batch_size=config.batch_size,
        show_progress=True,
    )
    if config.score_column in table.column_names:
        table = table.remove_columns(config.score_column)
    table = table.add_column(config.score_column, scores)
    out = Path(config.output_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_sibling(out, ".jsonl")  # renamed into place once complete
    table.to_json(str(partial), lines=True, force_ascii=False)
    os.replace(partial, out)
    mean = sum(scores) / len(scores)
    print(f"scored {len(scores)} rows with {config.judge} (mean {mean:.4f}) -> {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    parser = TrlParser((ScoreConfig,), prog="selfj-trl score", description=ScoreConfig.__doc__)
    (config,) = parser.parse_args_and_config(argv)
    run_score(config)
    return 0


if __name__ == "__main__":
    from .cli import main as cli_main

    sys.exit(cli_main(["score", *sys.argv[1:]]))
