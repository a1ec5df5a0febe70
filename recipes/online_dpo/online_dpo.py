"""Online DPO with a Self-J judge ranking each pair of fresh samples (``trl.experimental.online_dpo``).

For every prompt the policy samples two answers; the judge (given by path: TRL calls ``from_pretrained``) scores both
and the higher one is the chosen answer of a DPO step. By hand:

    accelerate launch recipes/online_dpo/online_dpo.py --config recipes/online_dpo/online_dpo.yaml

Any ``OnlineDPOConfig`` field works as a flag or YAML key; ``--judge_as callable`` uses ``SelfJudge.as_reward_func``.
The online DPO trainer lives in ``trl.experimental`` in TRL 1.16 (its API may change between TRL releases).
"""

from __future__ import annotations

import os
import sys


os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # we chose the experimental trainer knowingly

from transformers import AutoModelForCausalLM  # noqa: E402
from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer  # noqa: E402

from selfj_trl.cli import run_main  # noqa: E402
from selfj_trl.recipes import parse_recipe_args  # noqa: E402
from selfj_trl.rewards import JudgeRecipeArguments, loop_inputs  # noqa: E402


def build_trainer(script_args: JudgeRecipeArguments, training_args: OnlineDPOConfig) -> OnlineDPOTrainer:
    policy_path, tokenizer, dataset, reward_funcs = loop_inputs(script_args, training_args)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Loaded here rather than by path: the trainer would default to device_map="auto", which fights
    # `accelerate launch` over device placement.
    policy = AutoModelForCausalLM.from_pretrained(policy_path, **(training_args.model_init_kwargs or {}))
    training_args.model_init_kwargs = None
    return OnlineDPOTrainer(
        model=policy, reward_funcs=reward_funcs, args=training_args, train_dataset=dataset, processing_class=tokenizer
    )


def main(argv: list[str] | None = None) -> int:
    script_args, training_args = parse_recipe_args((JudgeRecipeArguments, OnlineDPOConfig), argv, prog="online_dpo")
    trainer = build_trainer(script_args, training_args)
    trainer.train()
    trainer.save_model(training_args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="online_dpo"))
