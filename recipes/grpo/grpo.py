"""GRPO with a Self-J judge as the reward model, given to TRL by path (TRL calls ``from_pretrained`` itself).

By hand, on the offline SmolLM2 policy and the quickstart's judge:

    accelerate launch recipes/grpo/grpo.py --config recipes/grpo/grpo.yaml
    accelerate launch recipes/grpo/grpo.py --config recipes/grpo/grpo.yaml --policy gemma-3-270m --judge PATH

Any ``GRPOConfig`` field works as a flag or YAML key. A chat policy gets conversational prompts and a base policy
(e.g. ``gemma-3-270m``) plain ones; the judge's recorded format must match, or pass ``--judge_as callable`` to let
``SelfJudge.as_reward_func`` reformat for it. An encoder judge (BERT-style, e.g. MiniLM: a table of 512 positions)
cannot be given by path, since TRL passes it the whole prompt + completion; the default ``--judge_as auto`` hands it
over as the callable, which cuts views to the judge's recorded ``max_length``.

PPO-style loops read a reward model's ``score`` head on a decoder backbone (TRL's experimental PPO ``get_reward``,
OpenRLHF's reward loader): a judge on a decoder base (Gemma 3, SmolLM2) fits them by path; a MiniLM (BERT) judge has
a ``classifier`` head instead, so it goes into GRPO / RLOO / online DPO through the callable and into OpenRLHF through
``selfj-trl serve`` (a remote reward model: ``recipes/openrlhf/``).
"""

from __future__ import annotations

import sys

from trl import GRPOConfig, GRPOTrainer

from selfj_trl.cli import run_main
from selfj_trl.recipes import parse_recipe_args
from selfj_trl.rewards import JudgeRecipeArguments, loop_inputs


def build_trainer(script_args: JudgeRecipeArguments, training_args: GRPOConfig) -> GRPOTrainer:
    policy, tokenizer, dataset, reward_funcs = loop_inputs(script_args, training_args)
    return GRPOTrainer(
        model=policy, reward_funcs=reward_funcs, args=training_args, train_dataset=dataset, processing_class=tokenizer
    )


def main(argv: list[str] | None = None) -> int:
    script_args, training_args = parse_recipe_args((JudgeRecipeArguments, GRPOConfig), argv, prog="grpo")
    trainer = build_trainer(script_args, training_args)
    trainer.train()
    trainer.save_model(training_args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="grpo"))
