"""RLOO (REINFORCE leave-one-out) with a Self-J judge as the reward model, given to TRL by path.

TRL calls ``from_pretrained`` on the judge itself, exactly as it would for any reward model.

By hand, on the offline SmolLM2 policy and the quickstart's judge:

    accelerate launch recipes/rloo/rloo.py --config recipes/rloo/rloo.yaml
    accelerate launch recipes/rloo/rloo.py --config recipes/rloo/rloo.yaml --policy gemma-3-270m --judge PATH

Any ``RLOOConfig`` field works as a flag or YAML key. A chat policy gets conversational prompts and a base policy
(e.g. ``gemma-3-270m``) plain ones; the judge's recorded format must match, or pass ``--judge_as callable`` to let
``SelfJudge.as_reward_func`` reformat for it. An encoder judge (BERT-style, e.g. MiniLM: a table of 512 positions)
cannot be given by path, since TRL passes it the whole prompt + completion; the default ``--judge_as auto`` hands it
over as the callable, which cuts views to the judge's recorded ``max_length``. PPO-style loops in other TRL versions
take the same judge folder: it is an ordinary one-label ``AutoModelForSequenceClassification``.
"""

from __future__ import annotations

import sys

from trl import RLOOConfig, RLOOTrainer

from selfj_trl.cli import run_main
from selfj_trl.recipes import parse_recipe_args
from selfj_trl.rewards import JudgeRecipeArguments, loop_inputs


def build_trainer(script_args: JudgeRecipeArguments, training_args: RLOOConfig) -> RLOOTrainer:
    policy, tokenizer, dataset, reward_funcs = loop_inputs(script_args, training_args)
    return RLOOTrainer(
        model=policy, reward_funcs=reward_funcs, args=training_args, train_dataset=dataset, processing_class=tokenizer
    )


def main(argv: list[str] | None = None) -> int:
    script_args, training_args = parse_recipe_args((JudgeRecipeArguments, RLOOConfig), argv, prog="rloo")
    trainer = build_trainer(script_args, training_args)
    trainer.train()
    trainer.save_model(training_args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], prog="rloo"))
