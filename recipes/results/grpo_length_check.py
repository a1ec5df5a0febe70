"""Does the loop buy reward by writing more? A short GRPO run with the judge as reward, with and without the length
control, logging per step the mean completion length and a quality measure the policy never sees.

Each setting is the GRPO recipe (``recipes/grpo/grpo.yaml``) with ``--monitor_reference_column reference``: the
cosine of each completion to its prompt's reference answer, computed and logged by TRL as a reward of weight 0
(``rewards/reference_cosine/mean``), beside TRL's own ``completions/mean_length``. The prompts must be instructions
the judge was not trained on, with references: by default AlpacaEval's **train** split from the data folder (the
quickstart's judge without the data folder never saw them), else the bundled prompts.

    python recipes/results/grpo_length_check.py --judge outputs/quickstart/judge --out outputs/grpo_length_check

Settings: ``judge`` (the judge alone), ``judge_overlong`` (the recipe: TRL's soft overlong punishment beside it),
and with ``--controlled_judge`` a judge trained with a length control (``controlled_judge``: that judge alone). Fold
judges of ``distill_cv.py`` saw half the train instructions: ``--heldout_fold K`` keeps the prompts of fold K only.
Resumable: a finished setting (its ``log_history.json``) is kept; the plot and table are rebuilt from what is there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from selfj_trl.io import atomic_savefig, atomic_write_json, atomic_write_text, load_script, read_jsonl, shared_data_dir
from selfj_trl.models import DEFAULT_EMBEDDER


RECIPE = Path(__file__).resolve().parents[1] / "grpo"
#: Recipe keys dropped per setting (the rest of grpo.yaml is kept as is).
SETTINGS = {
    "judge": ("overlong_cache", "reward_weights"),
    "judge_overlong": (),
    "controlled_judge": ("overlong_cache", "reward_weights"),
}
LENGTH, QUALITY = "completions/mean_length", "rewards/reference_cosine/mean"


def prompt_file(out: Path, given: str | None, fold: tuple[int, int] | None = None) -> str:
    """The prompts with references: the user's file, AlpacaEval's train split (written once into ``out``; with
    ``fold`` = (k, folds), only the instructions of distill_cv's fold k), or the bundled prompts."""
    if given:
        return given
    root = shared_data_dir()  # a folder only when it holds AlpacaEval's instructions.jsonl
    if root is None:
        return "selfj_trl/data/instructions.jsonl"
    path = out / (
        "alpaca_eval_train_prompts.jsonl" if fold is None else f"alpaca_eval_train_prompts_fold{fold[0]}.jsonl"
    )
    if not path.exists():  # never the test split
        rows = [r for r in read_jsonl(root / "alpaca_eval_gpt4" / "instructions.jsonl") if r["split"] == "train"]
        if fold is not None:
            fold_of = load_script(Path(__file__).with_name("distill_cv.py")).fold_of
            rows = [r for r in rows if fold_of(r["instruction"], fold[1]) == fold[0]]
        atomic_write_text(
            path, "".join(json.dumps({k: r[k] for k in ("instruction", "reference")}) + "\n" for r in rows)
        )
    return str(path)


def run_setting(name: str, args: argparse.Namespace, prompts: str) -> Path:
    folder = Path(args.out) / name
    done = folder / "log_history.json"
    if done.exists():
        print(f"[length-check] {name}: done ({done})")
        return done
    config = yaml.safe_load((RECIPE / "grpo.yaml").read_text())
    for key in SETTINGS[name]:
        config.pop(key, None)
    if "overlong_cache" in config:  # the recipe's share of the length limit, at whatever limit is asked
        scaled = config["overlong_cache"] * args.max_completion_length // config["max_completion_length"]
        config["overlong_cache"] = max(1, scaled)
    config.update(
        judge=args.controlled_judge if name == "controlled_judge" else args.judge,
        policy=args.policy,
        monitor_embedder=args.embedder,
        dataset=prompts,
        max_prompts=args.prompts,
        output_dir=str(folder),
        max_steps=args.steps,
        max_completion_length=args.max_completion_length,
        learning_rate=args.learning_rate,
        monitor_reference_column="reference",
        seed=args.seed,
    )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    recipe = load_script(RECIPE / "grpo.py", "grpo_recipe")
    script_args, training_args = recipe.parse_recipe_args(
        (recipe.JudgeRecipeArguments, recipe.GRPOConfig), ["--config", str(folder / "config.yaml")], prog="grpo"
    )
    trainer = recipe.build_trainer(script_args, training_args)
    trainer.train()
    atomic_write_json(done, [e for e in trainer.state.log_history if LENGTH in e])
    return done


def window_mean(values: list[float], head: bool, k: int) -> float:
    part = values[:k] if head else values[-k:]
    return sum(part) / len(part)


def rolling_mean(values: list[float], k: int) -> list[float]:
    """Trailing mean over up to ``k`` steps: two prompts a step make the raw curves mostly prompt-to-prompt noise."""
    return [sum(values[max(0, i - k + 1) : i + 1]) / (i - max(0, i - k + 1) + 1) for i in range(len(values))]


def summarise(out: Path, names: list[str], window: int) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    lines = [
        f"| setting | steps | length, first {window} -> last {window} steps (tokens) | reference cosine (unseen by "
        "the policy) | judge reward |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        path = out / name / "log_history.json"
        if not path.exists():
            continue
        rows = json.loads(path.read_text())
        steps = [r["step"] for r in rows]
        judge = next(k for k in rows[0] if k.startswith("rewards/") and k.endswith("/mean"))  # the first reward
        cells = []
        for ax, key, title in zip(
            axes,
            (LENGTH, QUALITY, judge),
            ("mean completion length (tokens)", "cosine to the reference (not trained on)", "judge reward"),
            strict=True,
        ):
            values = [r[key] for r in rows]
            line = ax.plot(steps, values, alpha=0.3, linewidth=0.8)[0]
            ax.plot(steps, rolling_mean(values, window), color=line.get_color(), label=f"{name} ({window}-step mean)")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("step")
            first, last = window_mean(values, True, window), window_mean(values, False, window)
            digits = 1 if key == LENGTH else 3
            cells.append(f"{first:.{digits}f} -> {last:.{digits}f} ({last - first:+.{digits}f})")
        lines.append(f"| {name} | {steps[-1]} | " + " | ".join(cells) + " |")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, out / "grpo_length_check.png", dpi=110)
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "summary.md", table)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", default="outputs/quickstart/judge")
    parser.add_argument("--policy", default="smollm2-135m-instruct")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="The reference-cosine monitor's embedder.")
    parser.add_argument("--prompts_file", default=None, help="JSONL with instruction and reference columns.")
    parser.add_argument("--prompts", type=int, default=128, help="Use the first N prompts.")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--learning_rate", type=float, default=1e-5)
    parser.add_argument("--window", type=int, default=10, help="Steps averaged at each end and in the curves.")
    parser.add_argument("--controlled_judge", help="a judge trained with a length control: setting controlled_judge")
    parser.add_argument(
        "--max_completion_length", type=int, default=128, help="tokens; room to grow is what length hacking needs"
    )
    parser.add_argument("--heldout_fold", type=int, help="AlpacaEval prompts of this distill_cv fold only")
    parser.add_argument("--folds", type=int, default=2, help="with --heldout_fold: distill_cv's --folds")
    parser.add_argument(
        "--settings", nargs="+", choices=list(SETTINGS), help="default: every setting the judges allow"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="outputs/grpo_length_check")
    args = parser.parse_args(argv)
    if args.settings is None:
        args.settings = [n for n in SETTINGS if n != "controlled_judge" or args.controlled_judge]
    if "controlled_judge" in args.settings and not args.controlled_judge:
        parser.error("setting controlled_judge needs --controlled_judge PATH")
    if args.heldout_fold is not None and not 0 <= args.heldout_fold < args.folds:
        parser.error(f"--heldout_fold must lie in 0..{args.folds - 1}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fold = None if args.heldout_fold is None else (args.heldout_fold, args.folds)
    prompts = prompt_file(out, args.prompts_file, fold)
    for name in args.settings:
        run_setting(name, args, prompts)
    print(summarise(out, args.settings, args.window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
