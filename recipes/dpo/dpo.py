"""Offline DPO on preference pairs that a Self-J judge built by best-of-n sampling.

Two steps in one script: (1) unless ``--pairs`` points at existing pairs, the policy samples ``n`` answers per prompt,
the judge scores them, and ``build_dpo_pairs`` keeps best vs worst where the judge's gap is at least ``min_gap``
(main process only; saved to ``<output_dir>/pairs``); (2) TRL's ``DPOTrainer`` trains the policy on those pairs.
By hand:

    accelerate launch recipes/dpo/dpo.py --config recipes/dpo/dpo.yaml
    accelerate launch recipes/dpo/dpo.py --config recipes/dpo/dpo.yaml --pairs outputs/dpo_pairs   # reuse pairs

``--pairs`` takes a folder written by ``selfj-trl best-of-n --dpo_pairs_dir`` (prompt/chosen/rejected) or a best-of-n
table (then pairs are built from it). Any ``DPOConfig`` field works as a flag or YAML key.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from datasets import Dataset, load_from_disk
from transformers import AutoTokenizer
from trl import DPOConfig, DPOTrainer

from selfj_trl.best_of_n import best_of_n, build_dpo_pairs
from selfj_trl.cli import run_main
from selfj_trl.judge import SelfJudge
from selfj_trl.models import load_policy, resolve_model
from selfj_trl.recipes import parse_recipe_args
from selfj_trl.tables import load_table, require_columns


@dataclass
class DPORecipeArguments:
    """Where the pairs come from: existing ones, or best-of-n sampling with the judge."""

    policy: str = field(default="smollm2-135m-instruct", metadata={"help": "Policy folder, Hub id or offline alias."})
    judge: str = field(
        default="outputs/judges/minilm",
        metadata={"help": "Judge folder (stage 2 writes outputs/judges/minilm) or Hub id."},
    )
    pairs: str | None = field(default=None, metadata={"help": "Existing pairs or best-of-n table (skips sampling)."})
    dataset: str = field(default="selfj_trl/data/instructions.jsonl", metadata={"help": "Prompts for best-of-n."})
    split: str = field(default="train", metadata={"help": "Split of a Hub dataset or DatasetDict folder."})
    prompt_column: str = field(default="instruction", metadata={"help": "Column holding the instructions."})
    max_prompts: int | None = field(default=None, metadata={"help": "Use only the first N prompts."})
    n: int = field(default=4, metadata={"help": "Answers sampled per prompt."})
    max_new_tokens: int = field(default=128, metadata={"help": "Longest sampled answer, in tokens."})
    sampling_temperature: float = field(default=0.8, metadata={"help": "Sampling temperature for best-of-n."})
    sampling_batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})
    min_gap: float = field(default=0.0, metadata={"help": "Least judge-score gap between chosen and rejected."})


def make_pairs(script_args: DPORecipeArguments, seed: int, output_dir: str) -> Dataset:
    """Pairs from ``--pairs`` or fresh best-of-n sampling (done once, by the main process)."""
    if script_args.pairs:
        table = load_table(script_args.pairs)
        if {"prompt", "chosen", "rejected"} <= set(table.column_names):
            return table
        return build_dpo_pairs(table, script_args.min_gap)
    state = PartialState()
    pairs_dir = Path(output_dir) / "pairs"
    if state.is_main_process:
        prompts_table = load_table(script_args.dataset, script_args.split)
        require_columns(
            prompts_table, [script_args.prompt_column], "prompt dataset", "Map yours with --prompt_column."
        )
        prompts = prompts_table[script_args.prompt_column][: script_args.max_prompts]
        policy, tokenizer = load_policy(script_args.policy)
        judge = SelfJudge.from_pretrained(script_args.judge)
        generation = {"max_new_tokens": script_args.max_new_tokens, "temperature": script_args.sampling_temperature}
        table = best_of_n(
            policy,
            tokenizer,
            judge,
            prompts,
            script_args.n,
            generation,
            batch_size=script_args.sampling_batch_size,
            seed=seed,
        )
        table.save_to_disk(str(Path(output_dir) / "best_of_n"))
        build_dpo_pairs(table, script_args.min_gap).save_to_disk(str(pairs_dir))
        del policy, judge  # free the sampling copies before training
    state.wait_for_everyone()
    return load_from_disk(str(pairs_dir))


def build_trainer(script_args: DPORecipeArguments, training_args: DPOConfig) -> DPOTrainer:
    pairs = make_pairs(script_args, training_args.seed, training_args.output_dir)
    policy = resolve_model(script_args.policy)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return DPOTrainer(model=policy, args=training_args, train_dataset=pairs, processing_class=tokenizer)


def main(argv: list[str] | None = None) -> int:
    script_args, training_args = parse_recipe_args((DPORecipeArguments, DPOConfig), argv, prog="dpo")
    trainer = build_trainer(script_args, training_args)
    trainer.train()
    trainer.save_model(training_args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="dpo"))
