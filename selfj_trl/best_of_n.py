"""Best-of-n sampling with a Self-J judge, and DPO pairs from its scores.

TRL 1.16 has no ``BestOfNSampler``, so this module provides one: the policy samples ``n`` answers per prompt (batched,
left-padded, in its own chat template or the plain prompt format), the judge scores every answer, and the table keeps
all of them with their scores. The same table answers two questions:

* what the judge picked: ``first_score`` (one sample) against ``best_score`` (its pick). These are the judge's own
  scores, so the pick's score is the highest by construction: they say nothing about quality. A best-of-n gain
  needs an independent grader (``selfj-trl evaluate``'s best-of-k pick, graded by GPT-4 on held-out answers);
* training data: :func:`build_dpo_pairs` turns best and worst into ``prompt/chosen/rejected`` rows for ``DPOTrainer``.

CLI: ``selfj-trl best-of-n --policy smollm2-135m-instruct --judge JUDGE --dataset prompts.jsonl --output_dir out``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

from .artifacts import staged_folder
from .errors import SelfJInputError
from .flags import dtype_field
from .generation import sample_responses
from .io import atomic_write_json
from .judge import SelfJudge
from .models import load_policy
from .prompts import PLAIN_PROMPT_TEMPLATE, check_text
from .tables import load_table, require_columns


def best_of_n(
    policy: Any,
    tokenizer: Any,
    judge: SelfJudge | str | Path,
    prompts: Sequence[str],
    n: int,
    generation_config: Any = None,
    *,
    batch_size: int = 8,
    judge_batch_size: int = 16,
    seed: int | None = None,
    show_progress: bool | None = None,
) -> Dataset:
    """Sample ``n`` answers per prompt, score them all with the judge, keep everything in a Hub-style table.

    Columns: ``prompt`` (the instruction), ``prompt_text`` (what the policy saw), ``responses``, ``scores``,
    ``best_response/best_score`` (the judge's argmax, first on ties), ``worst_response/worst_score``, and
    ``first_response/first_score``: the first sample, i.e. what the policy answers without best-of-n (the "before").
    """
    if isinstance(judge, (str, Path)):
        judge = SelfJudge.from_pretrained(str(judge))
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise SelfJInputError("`prompts` is empty: nothing to sample.")
    for i, p in enumerate(prompts):
        check_text(p, f"prompts[{i}]")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SelfJInputError(f"`n` must be a positive integer, got {n!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SelfJInputError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    texts, responses = sample_responses(
        policy, tokenizer, prompts, n, generation_config, batch_size=batch_size, seed=seed, show_progress=show_progress
    )
    flat_scores = judge.score(
        [prompt for prompt, answers in zip(prompts, responses, strict=True) for _ in answers],
        [answer for answers in responses for answer in answers],
        batch_size=judge_batch_size,
        show_progress=show_progress,
    )
    rows = []
    for i, (prompt, text, answers) in enumerate(zip(prompts, texts, responses, strict=True)):
        scores = flat_scores[i * n : (i + 1) * n]
        best = max(range(n), key=lambda k: (scores[k], -k))
        worst = min(range(n), key=lambda k: (scores[k], k))
        rows.append(
            {
                "prompt": prompt,
                "prompt_text": text,
                "responses": answers,
                "scores": scores,
                "best_response": answers[best],
                "best_score": scores[best],
                "worst_response": answers[worst],
                "worst_score": scores[worst],
                "first_response": answers[0],
                "first_score": scores[0],
            }
        )
    return Dataset.from_list(rows)


#: What :func:`summarize`'s figures are, written into every summary so nobody reads them as a quality gain.
JUDGE_SCORES_NOTE = (
    "judge scores, not quality: the judge's pick has the highest judge score by construction; grade "
    "picks with an independent grader (selfj-trl evaluate: best-of-k pick on held-out answers)"
)


def summarize(dataset: Dataset) -> dict[str, float | str]:
    """Mean judge score of one sample, of the judge's pick and of its worst answer: how far apart the judge puts them.

    Not a quality measure: the pick's judge score is the maximum by construction (``note`` says so in the summary).
    """
    first = _mean(dataset["first_score"])
    best = _mean(dataset["best_score"])
    return {
        "prompts": len(dataset),
        "n": len(dataset[0]["responses"]),
        "mean_first_score": first,
        "mean_best_score": best,
        "mean_worst_score": _mean(dataset["worst_score"]),
        "best_of_n_gain": best - first,
        "note": JUDGE_SCORES_NOTE,
    }


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values))


# ----------------------------------------------------------------------------------------------------------------
# DPO pairs
# ----------------------------------------------------------------------------------------------------------------
def build_dpo_pairs(dataset: Dataset, min_gap: float = 0.0, *, conversational: bool | None = None) -> Dataset:
    """``prompt/chosen/rejected`` rows (chosen = best, rejected = worst) for TRL's ``DPOTrainer``.

    A row is kept only when ``best_score - worst_score >= min_gap``, the gap is positive and the two answers differ:
    a pair the judge barely separates (or ties) teaches DPO mostly noise. ``conversational`` (default: whether the
    policy was prompted with a chat template) writes message lists, which ``DPOTrainer`` formats with the policy's
    template; otherwise the prompt is the exact text the policy continued and chosen/rejected are its continuations.
    """
    needed = ["prompt", "best_response", "best_score", "worst_response", "worst_score"]
    require_columns(dataset, needed, "best-of-n table", "Build it with best_of_n() or `selfj-trl best-of-n`.")
    if isinstance(min_gap, bool) or not isinstance(min_gap, (int, float)) or math.isnan(min_gap) or min_gap < 0:
        raise SelfJInputError(f"`min_gap` must be a number >= 0, got {min_gap!r}.")
    has_text = "prompt_text" in dataset.column_names
    if conversational is None:
        first = dataset[0]
        conversational = has_text and first["prompt_text"] != PLAIN_PROMPT_TEMPLATE.format(instruction=first["prompt"])
    rows = []
    for row in dataset:
        gap = row["best_score"] - row["worst_score"]
        if gap < min_gap or gap <= 0 or row["best_response"] == row["worst_response"]:
            continue
        if conversational:
            prompt: Any = [{"role": "user", "content": row["prompt"]}]
            chosen: Any = [{"role": "assistant", "content": row["best_response"]}]
            rejected: Any = [{"role": "assistant", "content": row["worst_response"]}]
        else:
            prompt = row["prompt_text"] if has_text else PLAIN_PROMPT_TEMPLATE.format(instruction=row["prompt"])
            chosen, rejected = row["best_response"], row["worst_response"]
        rows.append(
            {
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "score_chosen": row["best_score"],
                "score_rejected": row["worst_score"],
            }
        )
    if not rows:
        raise SelfJInputError(
            f"no row has a score gap >= {min_gap} between two different answers; lower `min_gap` or raise `n`."
        )
    return Dataset.from_list(rows)


# ----------------------------------------------------------------------------------------------------------------
# CLI: selfj-trl best-of-n
# ----------------------------------------------------------------------------------------------------------------
BEST_OF_N_COMMAND = "selfj-trl best-of-n"


@dataclass
class BestOfNConfig:
    """``selfj-trl best-of-n``: sample n answers per prompt, score them with a judge, keep all (and DPO pairs)."""

    policy: str = field(metadata={"help": "Policy (causal LM) folder, Hub id or offline alias."})
    judge: str = field(metadata={"help": "Judge folder, Hub id or offline alias."})
    dataset: str = field(metadata={"help": "Prompts: JSONL/CSV/Parquet file, save_to_disk folder or Hub id."})
    output_dir: str = field(metadata={"help": "Where the table goes (save_to_disk folder + best_of_n.jsonl)."})
    split: str = field(default="train", metadata={"help": "Split of a Hub dataset or DatasetDict folder."})
    prompt_column: str = field(default="instruction", metadata={"help": "Column holding the instructions."})
    n: int = field(default=4, metadata={"help": "Answers sampled per prompt."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest answer, in tokens."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling mass."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call (each makes n answers)."})
    judge_batch_size: int = field(default=16, metadata={"help": "Pairs per judge forward pass."})
    max_prompts: int | None = field(default=None, metadata={"help": "Use only the first N prompts (smoke runs)."})
    seed: int = field(default=42, metadata={"help": "Sampling seed."})
    dpo_pairs_dir: str | None = field(default=None, metadata={"help": "Also write DPO pairs (save_to_disk) here."})
    min_gap: float = field(default=0.0, metadata={"help": "Least best-worst score gap for a DPO pair."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: best available)."})
    dtype: str = dtype_field()
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})


def run_best_of_n(config: BestOfNConfig) -> tuple[Dataset, dict[str, float]]:
    """Run the CLI stage: returns the table and its summary (also written next to it).

    Under ``accelerate launch`` each process samples its share of the prompts (seeded per process) and the main
    process gathers and writes the whole table. The output folder (and the DPO pairs folder) is written into a
    staging folder and renamed into place with its completion marker last, so a killed run leaves the previous
    folder, none, or one that readers refuse: never a partial table (:mod:`selfj_trl.artifacts`).
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    table = load_table(config.dataset, config.split)
    require_columns(table, [config.prompt_column], f"dataset {config.dataset}", "Map yours with --prompt_column.")
    prompts = table[config.prompt_column]
    if config.max_prompts is not None:
        prompts = prompts[: config.max_prompts]
    state = PartialState()
    device = config.device or (state.device if state.num_processes > 1 else None)
    policy, tokenizer = load_policy(
        config.policy, device=device, dtype=config.dtype, trust_remote_code=config.trust_remote_code
    )
    judge = SelfJudge.from_pretrained(
        config.judge, device=device, dtype=config.dtype, trust_remote_code=config.trust_remote_code
    )
    generation = {"max_new_tokens": config.max_new_tokens, "temperature": config.temperature, "top_p": config.top_p}
    with state.split_between_processes(list(prompts)) as shard:
        rows = (
            best_of_n(
                policy,
                tokenizer,
                judge,
                shard,
                config.n,
                generation,
                batch_size=config.batch_size,
                judge_batch_size=config.judge_batch_size,
                seed=config.seed + state.process_index,
                show_progress=state.is_local_main_process,
            ).to_list()
            if shard
            else []
        )  # more processes than prompts leaves some with none
    if state.num_processes > 1:
        rows = gather_object(rows)
    result = Dataset.from_list(rows)
    summary = {"policy": config.policy, "judge": config.judge, **summarize(result)}
    if state.is_main_process:
        with staged_folder(config.output_dir, "best-of-n table", BEST_OF_N_COMMAND) as staging:
            result.save_to_disk(str(staging))
            result.to_json(str(staging / "best_of_n.jsonl"), lines=True, force_ascii=False)
            atomic_write_json(staging / "summary.json", summary)
        if config.dpo_pairs_dir:
            pairs = build_dpo_pairs(result, config.min_gap)
            with staged_folder(config.dpo_pairs_dir, "DPO pairs table", BEST_OF_N_COMMAND) as staging:
                pairs.save_to_disk(str(staging))
    state.wait_for_everyone()
    return result, summary


def main(argv: list[str] | None = None) -> int:
    from .flags import parse

    (config,) = parse((BestOfNConfig,), argv, prog="selfj-trl best-of-n", description=BestOfNConfig.__doc__)
    _, summary = run_best_of_n(config)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    print(json.dumps(summary, indent=2))
    print(
        f"wrote {config.output_dir} (save_to_disk folder, best_of_n.jsonl, summary.json)"
        + (f" and DPO pairs in {config.dpo_pairs_dir}" if config.dpo_pairs_dir else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
