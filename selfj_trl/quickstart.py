"""``selfj-trl quickstart``: the whole Self-J loop on real offline models, on a CPU, in minutes.

label (policy samples, self-evaluates against the reference, MiniLM cosine) -> train (SelfJRewardTrainer with the
judge base's recipe weights, on a small encoder base) -> evaluate (a slice of the held-out AlpacaEval test split, against
the cheap baselines; without the data folder, from AlpacaEval's public files, fetched once and cached) -> use
(best-of-n picks, selective following with a threshold calibrated on a separate slice).

Nothing here grades itself. A judge's mean score of its own best-of-n picks rises by construction, so it is not
reported: the best-of-n figure is the evaluation stage's best-of-15 pick, graded by GPT-4's win probabilities on
held-out answers (or, when no held-out data can be had, a plain statement that no independent grader exists). The
selective-following threshold is chosen on answers to held-apart instructions, never on the answers it then gates.

Every stage writes into its own folder under ``output_dir`` and leaves a ``.done`` marker: re-running skips finished
stages (``--fresh`` starts over). Slices are small by default so that the first run, model set-up included, fits in
15 minutes on 2 CPU cores; raise them for better judges.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path

from datasets import Dataset

from .errors import SelfJInputError
from .flags import dtype_field
from .io import atomic_write_json, atomic_write_text, read_jsonl, shared_data_dir
from .measured import measured_judge_loss
from .models import DEFAULT_EMBEDDER, DEFAULT_POLICY, MINILM_ALIAS, resolve_model


STAGES = ("setup", "label", "train", "evaluate", "use")
#: Instructions with full-length references, written for this package (Apache-2.0): what the quickstart labels when
#: no data folder is found. Open questions, advice, writing, code and explanations, answered at the length and care
#: of a good assistant, so that the label's reference is as long and as good as the answers a judge will score.
BUNDLED_REFERENCES = "selfj_trl/data/quickstart_references.jsonl"


@dataclass
class QuickstartConfig:
    output_dir: str = "outputs/quickstart"
    policy: str = field(
        default=DEFAULT_POLICY, metadata={"help": "Policy: gemma-3-270m | smollm2-135m-instruct | folder."}
    )
    embedder: str = DEFAULT_EMBEDDER
    judge_base: str = field(
        default=MINILM_ALIAS, metadata={"help": "Base model of the judge (a small encoder trains fast)."}
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "The shared data folder (default: ../shared/data if present)."}
    )
    n_train_instructions: int = field(default=14, metadata={"help": "AlpacaEval train-split instructions to label."})
    n_seed_tasks: int = field(default=6, metadata={"help": "Self-Instruct seed tasks to label."})
    n_bundled_instructions: int = field(
        default=43,
        metadata={
            "help": "Without the data folder: instructions of the bundled reference set to label "
            f"({BUNDLED_REFERENCES}, written for this package, Apache-2.0)."
        },
    )
    num_samples: int = 3
    given_answers: bool = field(
        default=True,
        metadata={
            "help": "Also label, per instruction, its reference, another instruction's reference and the reference "
            "cut to a third (labeled by Self-J like the samples; see selfj_trl.labeling.contrast)."
        },
    )
    max_new_tokens: int = 64
    self_eval_method: str | None = field(
        default=None, metadata={"help": "digits | likelihood; default: measured best for the policy (see label)."}
    )
    likelihood_method: str | None = None
    prompt_style: str | None = None
    cosine_weight: float | None = field(default=None, metadata={"help": "Default: measured best for the policy."})
    combination: str = "weighted_mean"
    num_train_epochs: float = 4.0
    learning_rate: float = 5e-5
    distill_weight: float | None = field(
        default=None,
        metadata={
            "help": "Self-distillation weight; default: the judge base's recipe (recipes/<judge_base>/train/"
            "config_judge.yaml, chosen by cross-validation), else the trainer's default (the paper's 2.0)."
        },
    )
    eval_max_instructions: int = field(default=12, metadata={"help": "AlpacaEval test instructions (x 17 models)."})
    bon_prompts: int = 3
    bon_n: int = 4
    calibration_prompts: int = field(
        default=3,
        metadata={
            "help": "Held-apart instructions whose sampled answers only choose the selective-following threshold."
        },
    )
    target_coverage: float = 0.7
    seed: int = 42
    fresh: bool = field(default=False, metadata={"help": "Delete earlier outputs and run every stage again."})
    stages: list[str] = field(
        default_factory=lambda: list(STAGES),
        metadata={"help": f"Stages to run now ({', '.join(STAGES)}); the ones before must be done already."},
    )
    dtype: str = dtype_field()
    tiny: bool = field(default=False, metadata={"help": "Tests only: policy/judge_base are tiny local folders."})


@dataclass
class StageResult:
    name: str
    seconds: float
    path: Path
    summary: str
    cached: bool = False


def _run_stage(name: str, folder: Path, fn: Callable[[Path], str], results: list[StageResult]) -> None:
    """Run ``fn`` unless its ``.done`` marker exists; record timing and a one-line summary either way."""
    marker = folder / ".done"
    if marker.exists():
        info = json.loads(marker.read_text())
        results.append(StageResult(name, info["seconds"], folder, info["summary"], cached=True))
        print(f"[quickstart] {name}: cached ({folder})")
        return
    print(f"\n[quickstart] === {name} ===")
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = fn(folder)
    seconds = time.perf_counter() - start
    atomic_write_json(marker, {"seconds": seconds, "summary": summary}, indent=None)
    results.append(StageResult(name, seconds, folder, summary))
    print(f"[quickstart] {name}: {summary} ({seconds:.0f} s) -> {folder}")


# ---------------------------------------------------------------------------------------------------------------
def instruction_slice(config: QuickstartConfig) -> tuple[Dataset, str]:
    """Instructions with references: the shared data's train split + seed tasks, or the bundled set."""
    from .labeling import LabelingConfig, prepare_rows

    root = Path(config.data_dir) if config.data_dir else shared_data_dir()
    rng = random.Random(config.seed)
    if root is None or not (root / "alpaca_eval_gpt4" / "instructions.jsonl").exists():
        path = files("selfj_trl").joinpath(BUNDLED_REFERENCES.removeprefix("selfj_trl/"))
        rows = [{"instruction": r["instruction"], "reference": r["reference"]} for r in read_jsonl(str(path))]
        picked = rng.sample(rows, min(config.n_bundled_instructions, len(rows)))
        return Dataset.from_list(picked), BUNDLED_REFERENCES
    alpaca = read_jsonl(root / "alpaca_eval_gpt4" / "instructions.jsonl")
    train = [r for r in alpaca if r["split"] == "train"]  # never the test split: it is for evaluation only
    picked = rng.sample(train, min(config.n_train_instructions, len(train)))
    rows = [{"instruction": r["instruction"], "reference": r["reference"]} for r in picked]
    seed_file = root / "self_instruct_seed" / "seed_tasks.jsonl"
    if config.n_seed_tasks and seed_file.exists():
        seeds = read_jsonl(seed_file)
        seed_rows, _ = prepare_rows(
            Dataset.from_list(rng.sample(seeds, min(config.n_seed_tasks, len(seeds)))),
            LabelingConfig(instances_column="instances"),
        )
        rows += [{"instruction": r["instruction"], "reference": r["reference"]} for r in seed_rows]
    return Dataset.from_list(rows), "AlpacaEval train split + Self-Instruct seed tasks"


#: The contrast answers put beside the policy's samples (``given_answers``; :mod:`selfj_trl.labeling.contrast`): a
#: policy's own samples to a few instructions differ mostly in length, and a judge trained on them alone learned to
#: prefer short answers (an anti-judge on every held-out set). Their labels are still Self-J's.
GIVEN_ANSWER_KINDS = ("reference", "other_instruction", "cut")


def stage_label(config: QuickstartConfig, folder: Path) -> str:
    from .labeling import LabelingConfig, label_dataset, self_eval_detail

    source, name = instruction_slice(config)
    cfg = LabelingConfig(
        contrast_answers=list(GIVEN_ANSWER_KINDS) if config.given_answers else None,
        dataset_name=name,
        output_dir=str(folder),
        policy=config.policy,
        embedder=config.embedder,
        num_samples=config.num_samples,
        max_new_tokens=config.max_new_tokens,
        cosine_weight=config.cosine_weight,
        combination=config.combination,
        self_eval_method=config.self_eval_method,
        likelihood_method=config.likelihood_method,
        prompt_style=config.prompt_style,
        seed=config.seed,
        max_length=768,
        chunk_size=4,
        dtype=config.dtype,
    )
    table = label_dataset(cfg, dataset=source)
    n_instructions = len(set(table["instruction"]))
    kinds = (
        f" ({cfg.num_samples} samples and {len(GIVEN_ANSWER_KINDS)} contrast answers each)"
        if config.given_answers
        else ""
    )
    return (
        f"{len(table)} labeled responses to {n_instructions} instructions{kinds} ({name}); self-evaluation "
        f"{self_eval_detail(cfg)}, cosine weight {cfg.cosine_weight:g} ({cfg.defaults_source})"
    )


def judge_training_args(config: QuickstartConfig, folder: Path):
    """The quickstart's own budget (epochs, rate, length) with the loss weights of the judge base's recipe, and the
    pointwise loss whatever the recipe's ``loss_type``: the use stage gates answers by a threshold on the score, which
    needs the label's absolute level, and a handful of answers per instruction gives the pairwise loss few pairs."""
    from .trainer import SelfJRewardConfig

    loss = dict(measured_judge_loss(config.judge_base))
    if config.distill_weight is not None:
        loss["distill_weight"] = config.distill_weight
    if config.dtype != "auto":  # bf16 mixed precision or not; auto leaves the trainer's choice for the machine
        loss["bf16"] = config.dtype == "bfloat16"
    return SelfJRewardConfig(
        output_dir=str(folder),
        num_train_epochs=config.num_train_epochs,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=8,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        seed=config.seed,
        max_length=384,
        disable_tqdm=False,
        **loss,
    )


def stage_train(config: QuickstartConfig, labeled: Path, folder: Path) -> str:
    from trl import ModelConfig

    from .trainer import SelfJScriptArguments, train_judge

    args = judge_training_args(config, folder)
    model_args = ModelConfig(model_name_or_path=resolve_model(config.judge_base))
    train_judge(SelfJScriptArguments(dataset_name=str(labeled)), args, model_args)
    state = json.loads((folder / "trainer_state.json").read_text())
    steps = [e for e in state["log_history"] if "loss" in e]
    mean_loss = next((e["train_loss"] for e in reversed(state["log_history"]) if "train_loss" in e), None)
    summary = f"judge trained: {state['global_step']} steps"
    if steps:
        summary += f", loss {steps[0]['loss']:.3f} (step {steps[0]['step']}) -> {steps[-1]['loss']:.3f} (step {steps[-1]['step']})"
    if mean_loss is not None:
        summary += f", mean training loss {mean_loss:.3f}"
    return summary


def stage_evaluate(config: QuickstartConfig, judge: Path, folder: Path) -> str:
    """The held-out AlpacaEval slice: from the data folder, else from AlpacaEval's public files (fetched once and
    cached); when neither can be had, one line says what was not evaluated and how to get the data, and the run
    goes on (the skip is cached like any finished stage: the line says which folder to remove to evaluate later)."""
    from .eval_sets import PublicDataUnavailable, load_eval_set
    from .evaluation import evaluate_judges

    try:  # before any model is loaded: an unavailable set costs nothing
        held_out = load_eval_set(
            "alpaca_eval", data_dir=config.data_dir, max_instructions=config.eval_max_instructions, seed=config.seed
        )
    except PublicDataUnavailable as err:
        line = f"skipped, nothing evaluated on held-out data: {err} Then remove {folder} and re-run to evaluate."
        atomic_write_text(folder / "report.md", line + "\n")
        return line
    baselines = ["length", "random"] if config.tiny else ["length", "random", "cosine"]
    metrics = evaluate_judges(
        [str(judge)],
        [held_out],
        folder,
        baselines=baselines,
        max_instructions=config.eval_max_instructions,
        seed=config.seed,
        data_dir=config.data_dir,
        embedder=config.embedder,
        bootstrap_resamples=200,
        dtype=config.dtype,
    )
    return headline(metrics)


def headline(metrics: dict) -> str:
    """One line from the evaluation stage's metrics.json: Spearman with GPT-4 and the best-of-k pick of every
    scorer, labelled as the slice it is (a smoke run: the README's table is the full test split)."""
    res = metrics["eval_sets"]["alpaca_eval"]
    scorers = res["scorers"]
    n_instructions = metrics["config"].get("max_instructions")
    where = (
        f"slice of {n_instructions} held-out AlpacaEval test instructions ({res['n']} responses; a smoke run, "
        "not the full split)"
        if n_instructions
        else f"all {res['n']} held-out AlpacaEval test responses"
    )
    parts = [f"{name} {r['correlation']['spearman']:+.2f}" for name, r in scorers.items()]
    return f"on a {where}: Spearman with GPT-4 " + ", ".join(parts) + "; " + pick_line(metrics)


def pick_line(metrics: dict | None) -> str:
    """The best-of-k pick graded by GPT-4 (the evaluation stage's figure), or a plain statement that no independent
    grader is available, in which case no best-of-n gain is claimed at all."""
    res = (metrics or {}).get("eval_sets", {}).get("alpaca_eval") or {}
    reference = res.get("best_of_k")
    if not reference:
        return (
            "best-of-n: no independent grader is available (no held-out data), so no best-of-n gain is "
            "reported (the judge's own scores of its picks rise by construction)"
        )
    picks = [f"{name} {r['best_of_k']['pick']:.2f}" for name, r in res["scorers"].items() if r.get("best_of_k")]
    return (
        f"best-of-{reference['k_max']} pick graded by GPT-4 (mean win prob of the top answer): "
        + ", ".join(picks)
        + f", random pick {reference['random']:.2f}, oracle {reference['oracle']:.2f}"
    )


def stage_use(config: QuickstartConfig, judge_dir: Path, folder: Path) -> str:
    """Best-of-n picks and selective following, graded by nothing the judge produced itself.

    The policy samples ``bon_n`` answers to ``bon_prompts`` shown instructions and to ``calibration_prompts``
    held-apart ones; the threshold is calibrated at ``target_coverage`` on the held-apart answers only and then gates
    the shown answers (achieved coverage reported). The best-of-n figure is the evaluation stage's GPT-4-graded pick.
    """
    from .best_of_n import best_of_n
    from .judge import SelfJudge, calibrate_threshold
    from .models import load_policy

    source, _ = instruction_slice(QuickstartConfig(**{**asdict(config), "seed": config.seed + 1}))
    shown = source["instruction"][: config.bon_prompts]
    held_apart = source["instruction"][config.bon_prompts : config.bon_prompts + config.calibration_prompts]
    if not shown or not held_apart:
        raise SelfJInputError(
            f"best-of-n needs bon_prompts >= 1 and calibration_prompts >= 1 instructions beyond them; the slice has "
            f"{len(source)} (raise n_train_instructions / n_seed_tasks or lower bon_prompts / calibration_prompts)."
        )
    judge = SelfJudge.from_pretrained(str(judge_dir), dtype=config.dtype)
    policy, tokenizer = load_policy(config.policy, dtype=config.dtype)
    table = best_of_n(
        policy,
        tokenizer,
        judge,
        shown + held_apart,
        config.bon_n,
        seed=config.seed,
        batch_size=4,
        generation_config={
            "max_new_tokens": config.max_new_tokens,
            "do_sample": True,
            "temperature": 0.8,
            "top_p": 0.95,
        },
    )
    table.save_to_disk(str(folder / "best_of_n"))
    gated, calibration = table.select(range(len(shown))), table.select(range(len(shown), len(table)))
    calibration_scores = [s for row in calibration for s in row["scores"]]
    threshold = calibrate_threshold(calibration_scores, target_coverage=config.target_coverage)
    gated_scores = [s for row in gated for s in row["scores"]]
    answered = sum(s >= threshold for s in gated_scores)
    metrics_file = folder.parent / "evaluation" / "metrics.json"
    grade = pick_line(json.loads(metrics_file.read_text()) if metrics_file.exists() else None)
    lines = [
        "# Best-of-n picks\n",
        "The judge's scores below rank the answers; they do not grade them (a judge's mean score of its own picks "
        f"rises by construction). Graded independently: {grade}.\n",
    ]
    for row in gated:
        lines += [
            f"## {row['prompt']}",
            f"- first sample (judge {row['first_score']:.3f}): {row['first_response'][:300]!r}",
            f"- judge's pick (judge {row['best_score']:.3f}): {row['best_response'][:300]!r}",
            "",
        ]
    calibrated_on = (
        f"{len(calibration_scores)} sampled answers to {len(calibration)} held-apart instructions "
        "(none of them gated below)"
    )
    lines.append(
        f"# Selective instruction following (threshold {threshold:.3f}, target coverage "
        f"{config.target_coverage:.0%}, calibrated on {calibrated_on})\n"
    )
    lines.append(f"Achieved coverage on the gated answers: {answered}/{len(gated_scores)}.\n")
    for row in gated:
        for resp in row["responses"][:2]:
            decision = judge.decide(row["prompt"], resp, threshold)
            lines.append(
                f"- {decision['decision'].upper():7} score {decision['score']:.3f}: {row['prompt'][:60]!r} -> {resp[:80]!r}"
            )
    atomic_write_text(folder / "examples.md", "\n".join(lines) + "\n")
    atomic_write_json(
        folder / "summary.json",
        {
            "best_of_n_grade": grade,
            "threshold": threshold,
            "target_coverage": config.target_coverage,
            "calibration_instructions": list(held_apart),
            "calibration_answers": len(calibration_scores),
            "gated_instructions": list(shown),
            "gated_answers": len(gated_scores),
            "answered": int(answered),
        },
    )
    print("\n".join(lines))
    return (
        f"{grade}; selective following: threshold {threshold:.3f} calibrated on {calibrated_on} at target "
        f"coverage {config.target_coverage:.0%}, answered {answered}/{len(gated_scores)} of the other "
        f"{len(shown)} instructions' answers; examples in examples.md"
    )


def run_quickstart(config: QuickstartConfig) -> list[StageResult]:
    out = Path(config.output_dir)
    unknown = sorted(set(config.stages) - set(STAGES))
    if unknown:
        raise SelfJInputError(f"unknown stage(s) {unknown}; choose from {list(STAGES)}.")
    if config.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[str, str, Path, Callable[[Path], str]]] = [
        (
            "setup",
            "0. set up offline models",
            out / "models",
            lambda f: ", ".join(
                f"{role} {m} ready"
                for role, m in (
                    ("policy", config.policy),
                    ("embedder", config.embedder),
                    ("judge base", config.judge_base),
                )
                if resolve_model(m)
            ),
        ),
        ("label", "1. label (Self-J)", out / "labeled", lambda f: stage_label(config, f)),
        ("train", "2. train judge", out / "judge", lambda f: stage_train(config, out / "labeled", f)),
        ("evaluate", "3. evaluate", out / "evaluation", lambda f: stage_evaluate(config, out / "judge", f)),
        ("use", "4. best-of-n + selective following", out / "use", lambda f: stage_use(config, out / "judge", f)),
    ]
    results: list[StageResult] = []
    total = time.perf_counter()
    for key, name, folder, fn in plan:
        if key not in config.stages or (key == "setup" and config.tiny):
            continue
        _run_stage(name, folder, fn, results)
    print_summary(results, time.perf_counter() - total)
    return results


def print_summary(results: list[StageResult], total: float) -> None:
    width = max(len(r.name) for r in results)
    print("\n" + "=" * 100)
    print(f"{'stage':<{width}}  {'time':>7}  summary")
    for r in results:
        t = "cached" if r.cached else f"{r.seconds:5.0f} s"
        print(f"{r.name:<{width}}  {t:>7}  {r.summary}\n{'':<{width}}           -> {r.path.resolve()}")
    print(f"total wall time this run: {total:.0f} s")


def main(argv: list[str] | None = None) -> int:
    from .flags import parse

    (config,) = parse((QuickstartConfig,), argv, prog="selfj-trl quickstart")
    if config.n_train_instructions + config.n_seed_tasks < 2:
        raise SelfJInputError("label at least 2 instructions (n_train_instructions + n_seed_tasks).")
    run_quickstart(config)
    return 0


if __name__ == "__main__":
    from .cli import main as cli_main

    sys.exit(cli_main(["quickstart", *sys.argv[1:]]))
