"""Human pairwise preferences: LLMBar Natural/Adversarial, MT-Bench experts, FairEval, LLMEval2, PandaLM.

Particular to this set: LLMBar's four adversarial subsets, built to punish superficial preferences such as length,
are also reported together as one row.
"""

from __future__ import annotations

from pathlib import Path

from .base import PairwiseSet, load_shared_table, pairwise_from_table
from .registry import register
from .sources import HUMAN_PAIRWISE_SOURCE


HUMAN_PAIRWISE = "human_pairwise"

#: Subsets of the human pairwise set that LLMBar built to punish superficial preferences such as length.
LLMBAR_ADVERSARIAL = ("llmbar_adv_neighbor", "llmbar_adv_gptinst", "llmbar_adv_gptout", "llmbar_adv_manual")
#: Accuracy rows over several subsets together.
SUBSET_TOTALS = {"llmbar_adversarial (all 4)": LLMBAR_ADVERSARIAL}


@register(HUMAN_PAIRWISE, aliases=("human",), public=HUMAN_PAIRWISE_SOURCE)
def load_human_pairwise(
    data_dir: str | Path | None = None, max_instructions: int | None = None, seed: int = 0
) -> PairwiseSet:
    """1,884 human preferences (LLMBar Natural/Adversarial, MT-Bench experts, FairEval, LLMEval2, PandaLM)."""
    table = load_shared_table(data_dir, "human_pairwise/human_pairwise_llmbar_mtbench_pandalm.jsonl")
    return pairwise_from_table(
        HUMAN_PAIRWISE, "Human pairwise preferences", table, max_instructions, seed, subset_totals=SUBSET_TOTALS
    )
