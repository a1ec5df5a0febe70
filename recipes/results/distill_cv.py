"""Choose the self-distillation defaults by cross-validation over AlpacaEval's TRAIN instructions, never the test split.

The labeled pool (``selfj-trl label --config recipes/gemma-3-270m/label/config_alpaca_train_pool.yaml``) is split
by instruction into folds. For each setting and fold, a judge is trained with ``selfj-trl train`` on the other folds'
labels and scored on the held-out fold's answers, student view (no reference: what a reward model sees) and teacher
view (the reference shown: the label's ceiling for this judge), against GPT-4-turbo's win probability (read only
here, for train-split rows, to choose settings; the labels never read it). The label itself, response length and a
random scorer are scored on the same rows. Metrics come from the evaluation harness (``evaluate_pointwise``) on the
15 honest models' answers: Spearman, mean within-instruction Spearman and the best-of-15 pick, with
cluster-bootstrap intervals over instructions.

    python recipes/results/distill_cv.py --labeled outputs/labeled/pool_gemma_512 --out outputs/distill_cv

``--baselines_only`` trains nothing and scores the label alone, which is how the label's own settings are chosen:
``--cosine_weights`` remakes it at other cosine weights, ``--second_labeled`` sets a second labeling run beside it
(label_mix.py).

Resumable: a finished judge (its completion marker) and finished scores are kept, so a killed run is re-run as is.
Settings run in the order given, all folds of one before the next, so a partial run still compares whole settings.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from datasets import Dataset, concatenate_datasets, load_from_disk

from selfj_trl.eval_sets.custom import load_custom_set
from selfj_trl.evaluation.set_metrics import evaluate_pointwise
from selfj_trl.io import atomic_write_json, atomic_write_text, check_complete, content_hash, read_jsonl
from selfj_trl.labels import combine_labels
from selfj_trl.stats import mean_within_group_spearman, spearman


def sibling(name: str):
    """A module beside this script (the recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


label_mix = sibling("label_mix")
contrast_cv = sibling("contrast_pairs")
SOURCED_KINDS = contrast_cv.SOURCED_KINDS


#: The paper's pointwise loss, by epochs (``--num_train_epochs`` in ``--train_flags``), whatever the recipe's loss.
POINTWISE = [
    "--loss_type",
    "pointwise",
    "--per_device_train_batch_size",
    "16",
    "--max_steps",
    "-1",
    "--pairs_per_row",
    "0",
]
#: Bradley-Terry on pairs of answers to one instruction: only the within-instruction order of the labels is learnt
#: (the label's per-instruction offset needs the reference; see label_probe.py --targets centered). 8 pairs a step
#: are 32 forwards like 16 pointwise rows; one pair per labeled row matches the forwards of two pointwise epochs.
PAIRWISE_LOSS = ["--loss_type", "pairwise", "--per_device_train_batch_size", "8", "--max_steps", "-1"]
PAIRWISE = [*PAIRWISE_LOSS, "--pairs_per_row", "1.0"]
#: name -> extra ``selfj-trl train`` flags; the MiniLM recipe's own values apply to everything not named here.
SETTINGS = {
    "distill2": [*POINTWISE, "--distill_weight", "2.0"],
    "distill0": [*POINTWISE, "--distill_weight", "0.0"],
    "distill2_warmup": [*POINTWISE, "--distill_weight", "2.0", "--distill_warmup_ratio", "0.3"],
    "distill1": [*POINTWISE, "--distill_weight", "1.0"],
    "distill0.5": [*POINTWISE, "--distill_weight", "0.5"],
    "distill2_student1": [*POINTWISE, "--distill_weight", "2.0", "--student_weight", "1.0"],
    "distill2_student0": [*POINTWISE, "--distill_weight", "2.0", "--student_weight", "0.0"],
    # Without distillation the student view (the one a reward model is used with) learns only from its own label term.
    "distill0_student1": [*POINTWISE, "--distill_weight", "0.0", "--student_weight", "1.0"],
    "pairwise": [*PAIRWISE, "--distill_weight", "0.0"],
    # The student view is the one a reward model is used with; the recipe weighs its label term 0.3 against 1.0.
    "pairwise_student1": [*PAIRWISE, "--distill_weight", "0.0", "--student_weight", "1.0"],
    "pairwise_distill1": [*PAIRWISE, "--distill_weight", "1.0"],
    "pairwise_distill2_warmup": [*PAIRWISE, "--distill_weight", "2.0", "--distill_warmup_ratio", "0.3"],
    # Distil only the teacher's order within an instruction (KL between the two views' pair preferences), not its
    # score level, which comes from the reference the student never sees.
    "pairwise_pdistill1": [*PAIRWISE, "--distill_weight", "1.0", "--distill_loss", "preference"],
    # Twice the pairs (and steps) on the same labels: whether the judge is short of steps or of labels.
    "pairwise_pairs2": [*PAIRWISE_LOSS, "--pairs_per_row", "2.0", "--distill_weight", "0.0"],
    # The recipe on labels whose within-instruction trend in log length is taken out: what the length lean costs.
    "pairwise_length_residual": [*PAIRWISE, "--distill_weight", "0.0", "--length_control", "residual"],
    # The recipe on pairs whose answers are within 1.5x of each other in words: no pair's order is told by length.
    "pairwise_length_matched": [*PAIRWISE, "--distill_weight", "0.0", "--length_control", "matched"],
    # The recipe beside a fixed length-only preference model (a product of experts): the judge learns the rest.
    "pairwise_length_explained": [*PAIRWISE, "--distill_weight", "0.0", "--length_control", "explained"],
    # The recipe with the squared batch correlation of its score differences with log length differences penalised.
    "pairwise_length_decorrelated": [*PAIRWISE, "--distill_weight", "0.0", "--length_control", "decorrelated"],
    # The same penalty at 0.3 of its default weight: whether a weaker pull keeps what the judge learns.
    "pairwise_length_decorrelated0.3": [
        *PAIRWISE,
        "--distill_weight",
        "0.0",
        "--length_control",
        "decorrelated",
        "--length_decorrelation_weight",
        "0.3",
    ],
}
#: Settings trained on their fold's labels plus the ``--contrast`` rows of the same training instructions
#: (answers said twice, padded, cut, written for another instruction: contrast_pool.py), with the flags of the
#: setting named: the one difference from it is those rows.
CONTRAST_SETTINGS = {"pairwise_contrast": "pairwise"}
ADVERSARIAL = ("NullModel", "gpt4_gamed")
#: Scorers that need no judge, shown once: the label and its two parts (on the labeled dev rows), length, random.
BASELINES = ["label", "self_eval", "cosine", "length", "random"]


def fold_of(instruction: str, folds: int) -> int:
    return int(content_hash(instruction, length=8), 16) % folds


def dev_rows(data_dir: Path, instructions: set[str]) -> list[dict]:
    """GPT-4-graded answers of the honest models to the given TRAIN instructions (the truth that chooses settings)."""
    train = {r["id"]: r for r in read_jsonl(data_dir / "instructions.jsonl") if r.get("split") == "train"}
    rows = []
    for r in read_jsonl(data_dir / "responses.jsonl"):
        ins = train.get(r["id"])
        if ins is None or ins["instruction"] not in instructions or r["model"] in ADVERSARIAL:
            continue
        rows.append(
            {
                "question_id": str(r["id"]),
                "instruction": ins["instruction"],
                "reference": ins["reference"],
                "response": r["response"] or "",
                "model": r["model"],
                "gpt4_win_prob": r["gpt4_win_prob"],
            }
        )
    return rows


def labels_so_far(run_dir: Path, cosine_weight: float) -> Dataset:
    """The finished shards of a labeling run still in progress, labeled the way it will label them (weighted mean:
    a row's label depends on that row alone, so it is the label the finished dataset will hold)."""
    rows = [r for shard in sorted((run_dir / "shards").glob("chunk-*.jsonl")) for r in read_jsonl(shard)]
    if not rows:
        raise SystemExit(f"{run_dir}/shards holds no finished shard yet.")
    values = combine_labels(
        [r["self_eval_score"] for r in rows], [r["cosine_similarity"] for r in rows], cosine_weight=cosine_weight
    )
    return Dataset.from_list([{**r, "label": float(v)} for r, v in zip(rows, values, strict=True)])


def training_rows(labeled: Dataset, folds: dict[str, int], k: int) -> Dataset:
    """The labels a judge scored on fold ``k`` trains on: every other fold's."""
    return labeled.filter(
        lambda r: folds[r["instruction"]] != k, keep_in_memory=True
    )  # no cache in the labels' folder


def with_contrast(rows: Dataset, contrast: Dataset, folds: dict[str, int], k: int) -> Dataset:
    """A fold's training rows and the contrast rows of the same instructions (the columns both have)."""
    extra = training_rows(contrast, folds, k)
    columns = [c for c in rows.column_names if c in extra.column_names]
    return concatenate_datasets([rows.select_columns(columns), extra.select_columns(columns)])


def save_training_rows(rows: Dataset, folder: Path) -> None:
    """Save under a temporary name, then rename: a run killed mid-save leaves no ``train`` that looks whole, and
    what it left under the temporary name is cleared by the next run, not saved into."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rows.save_to_disk(str(tmp))
    tmp.rename(folder)


def rows_key(rows: Dataset) -> str:
    return content_hash(*([r["instruction"], r["response"], r["label"]] for r in rows), length=16)


def train_judge(train_folder: Path, judge_dir: Path, flags: list[str], train_flags: list[str]) -> None:
    if judge_dir.exists() and not check_complete(judge_dir, "judge"):
        return
    cmd = [
        sys.executable,
        "-m",
        "selfj_trl.cli",
        "train",
        "--config",
        "recipes/all-minilm-l6-v2/train/config_judge.yaml",
        "--dataset_name",
        str(train_folder),
        "--output_dir",
        str(judge_dir),
        *train_flags,
        *flags,
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def headline(metrics: dict) -> dict[str, float]:
    ci = metrics.get("ci", {})
    pick = metrics.get("best_of_k") or {}
    return {
        "spearman": metrics["correlation"]["spearman"],
        "spearman_ci": ci.get("spearman"),
        "within": metrics["within_question"]["spearman"],
        "within_ci": ci.get("within_spearman"),
        "pick": pick.get("pick", math.nan),
        "pick_ci": ci.get("pick"),
        "random_pick": pick.get("random", math.nan),
        "oracle_pick": pick.get("oracle", math.nan),
        # The 15 models ordered by their mean score on the fold against their mean GPT-4 win probability there:
        # what a ranking of models asks, on rows the judge never trained on.
        "ranking": ((metrics.get("ranking") or {}).get("all") or {}).get("spearman", math.nan),
        # Within-instruction Spearman with the word count: what writing more buys from this scorer (length: +1).
        "lean": metrics.get("length_lean", math.nan),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labeled", required=True, help="labeled pool (save_to_disk folder of `selfj-trl label`)")
    parser.add_argument("--out", default="outputs/distill_cv")
    parser.add_argument("--data_dir", default="../shared/data/alpaca_eval_gpt4")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=[*SETTINGS, *CONTRAST_SETTINGS])
    parser.add_argument(
        "--contrast",
        help="labeled contrast answers of the same instructions (contrast_pool.py, then selfj-trl label): added to "
        "the training rows of the *_contrast settings, and every judge's order of them against their sources shown",
    )
    parser.add_argument("--train_flags", default="", help="extra flags for every judge, e.g. '--max_length 384'")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--from_shards",
        action="store_true",
        help="--labeled is a labeling run still in progress: use its finished shards",
    )
    parser.add_argument("--cosine_weight", type=float, default=0.25, help="with --from_shards: the run's weight")
    parser.add_argument(
        "--baselines_only",
        action="store_true",
        help="train no judge: the label, its parts, length and random on every fold (minutes, not hours)",
    )
    parser.add_argument(
        "--second_labeled",
        help="with --baselines_only: another labeling run of the same answers (another policy, template or view); "
        "its self-evaluation and the mean of both (each standardised over the pool) are scored beside the first's, "
        "on the rows both labeled",
    )
    parser.add_argument(
        "--cosine_weights",
        type=float,
        nargs="+",
        default=[],
        help="with --baselines_only: also the weighted-mean label remade from the rows' self-evaluation and cosine "
        "at each weight (`label_w0.25`), to choose the label's mix on train folds",
    )
    args = parser.parse_args(argv)
    if args.cosine_weights and not args.baselines_only:
        parser.error("--cosine_weights needs --baselines_only")
    if any(not 0.0 <= w <= 1.0 for w in args.cosine_weights):
        parser.error("--cosine_weights must lie in [0, 1]")
    if args.second_labeled and not args.baselines_only:
        parser.error("--second_labeled needs --baselines_only")
    out, data_dir = Path(args.out), Path(args.data_dir)
    labeled = (
        labels_so_far(Path(args.labeled), args.cosine_weight) if args.from_shards else load_from_disk(args.labeled)
    )
    if args.second_labeled:
        labeled = label_mix.with_second_self_eval(labeled, load_from_disk(args.second_labeled))
        if not len(labeled):
            print(f"distill_cv: {args.second_labeled} labeled none of the answers in {args.labeled}.", file=sys.stderr)
            return 2
    contrast = load_from_disk(args.contrast) if args.contrast else None
    if contrast is not None and (stray := set(contrast["instruction"]) - set(labeled["instruction"])):
        print(f"distill_cv: {len(stray)} --contrast instruction(s) are not in --labeled.", file=sys.stderr)
        return 2
    if contrast is None and any(name in CONTRAST_SETTINGS for name in args.settings):
        print("distill_cv: the *_contrast settings need --contrast DIR.", file=sys.stderr)
        return 2
    instructions = sorted(set(labeled["instruction"]))
    folds = {ins: fold_of(ins, args.folds) for ins in instructions}
    if len(filled := set(folds.values())) < args.folds:  # a fold with no instruction leaves another with no training
        print(
            f"distill_cv: the {len(instructions)} labeled instructions fill {len(filled)} of {args.folds} folds; "
            "label more instructions (folds are drawn by a hash of the instruction's text).",
            file=sys.stderr,
        )
        return 2
    for k in range(args.folds):  # a fold's judges were trained on its saved rows: other labels must not reuse them
        saved = out / f"fold{k}" / "train"
        if saved.exists() and rows_key(load_from_disk(str(saved))) != rows_key(training_rows(labeled, folds, k)):
            print(
                f"distill_cv: {saved} (and the judges beside it) came from other labels than {args.labeled}; "
                "use another --out.",
                file=sys.stderr,
            )
            return 2
    print(f"{len(labeled)} labeled rows, {len(instructions)} train instructions, {args.folds} folds", flush=True)
    results: dict[str, dict] = {}
    for name in ["baselines"] if args.baselines_only else args.settings:
        per_fold = [
            row
            for k in range(args.folds)
            if (row := run_fold(args, labeled, folds, k, name, out / f"fold{k}", data_dir, contrast)) is not None
        ]
        results[name] = {"folds": per_fold}
        atomic_write_json(out / "results.json", results)
        atomic_write_text(out / "results.md", table(results))
        print(table(results), flush=True)
    return 0


def run_fold(
    args: argparse.Namespace,
    labeled: Dataset,
    folds: dict[str, int],
    k: int,
    name: str,
    fold_dir: Path,
    data_dir: Path,
    contrast: Dataset | None = None,
) -> dict | None:
    """Train (or reuse) one setting's judge without fold ``k`` and score fold ``k``'s GPT-4-graded answers (and,
    with ``contrast``, its contrast answers against their sources)."""
    from selfj_trl.judge import SelfJudge

    dev = dev_rows(data_dir, {ins for ins, f in folds.items() if f == k})
    if not dev:
        return None
    ds = load_custom_set(Dataset.from_list(dev), "gpt4_win_prob", name=f"dev{k}")
    labels = {(r["instruction"], r["response"]): r for r in labeled if folds[r["instruction"]] == k}
    keys = [(r["instruction"], r["response"]) for r in dev]
    scores = {
        b: np.array([labels.get(key, {}).get(column, math.nan) for key in keys], dtype=float)
        for b, column in (("label", "label"), ("self_eval", "self_eval_score"), ("cosine", "cosine_similarity"))
    }
    for view in label_mix.SECOND_VIEWS:
        if view in labeled.column_names:
            scores[view] = np.array([labels.get(key, {}).get(view, math.nan) for key in keys], dtype=float)
    scores["length"] = np.array([len(r["response"].split()) for r in dev], dtype=float)
    scores["random"] = np.random.default_rng(0).random(len(dev))
    if args.baselines_only:
        return scored_row(ds, {**scores, **label_mix.remade_labels(scores, args.cosine_weights)}, dev)
    train_folder = fold_dir / "train"
    if not train_folder.exists():
        save_training_rows(training_rows(labeled, folds, k), train_folder)
    if name in CONTRAST_SETTINGS:
        contrast_folder = fold_dir / "train_contrast"
        rows = with_contrast(load_from_disk(str(train_folder)), contrast, folds, k)
        if contrast_folder.exists() and rows_key(load_from_disk(str(contrast_folder))) != rows_key(rows):
            raise SystemExit(f"distill_cv: {contrast_folder} came from other contrast rows; use another --out.")
        if not contrast_folder.exists():
            save_training_rows(rows, contrast_folder)
        train_folder, flags = contrast_folder, SETTINGS[CONTRAST_SETTINGS[name]]
    else:
        flags = SETTINGS[name]
    judge_dir = fold_dir / name
    train_judge(train_folder, judge_dir, flags, args.train_flags.split())
    judge = SelfJudge.from_pretrained(str(judge_dir))
    ins, resp, refs = ([r[c] for r in dev] for c in ("instruction", "response", "reference"))
    for view, view_refs in (("student", None), ("teacher", refs)):
        path = fold_dir / f"{name}.{view}.json"
        if not path.exists():
            atomic_write_json(
                path, judge.score(ins, resp, references=view_refs, batch_size=args.batch_size), indent=None
            )
        scores[view] = np.array(json.loads(path.read_text()), dtype=float)
    row = scored_row(ds, scores, dev)
    # How much of its label each view learned, on instructions it never saw: the label is what it was trained on.
    groups = [r["question_id"] for r in dev]
    for view in ("student", "teacher"):
        row[view]["vs_label"] = spearman(scores[view], scores["label"])
        row[view]["vs_label_within"] = mean_within_group_spearman(scores[view], scores["label"], groups)
    if contrast is not None:
        pairs = contrast_cv.contrast_pairs(contrast, labeled, {ins for ins, f in folds.items() if f == k})
        path = fold_dir / f"{name}.contrast.json"
        if not path.exists():
            texts = [p["response"] for p in pairs] + [p["source"] for p in pairs]
            atomic_write_json(
                path,
                judge.score([p["instruction"] for p in pairs] * 2, texts, batch_size=args.batch_size),
                indent=None,
            )
        both = np.array(json.loads(path.read_text()), dtype=float)
        label, source_label = (np.array([p[c] for p in pairs], dtype=float) for c in ("label", "source_label"))
        words = [np.array([len(p[c].split()) for p in pairs], dtype=float) for c in ("response", "source")]
        row["below_source"] = {
            "student": contrast_cv.below_source(pairs, both[: len(pairs)], both[len(pairs) :]),
            "label": contrast_cv.below_source(pairs, label, source_label),
            "length": contrast_cv.below_source(pairs, *words),
            "pairs": {kind: sum(p["kind"] == kind for p in pairs) for kind in SOURCED_KINDS},
        }
    return row


def scored_row(ds, scores: dict[str, np.ndarray], dev: list[dict]) -> dict:
    """Each scorer's headline figures on one fold's dev rows, with the fold's size."""
    row: dict = {view: headline(evaluate_pointwise(ds, s, None)) for view, s in scores.items()}
    row["n_dev_rows"], row["n_dev_instructions"] = len(dev), len({r["question_id"] for r in dev})
    return row


def table(results: dict) -> str:
    """Mean over folds of each figure (intervals are per fold; the mean's spread is the folds')."""
    lines = [
        "| setting | view | Spearman | within | best-of-15 pick | ranking, 15 models | length lean "
        "| vs its label (all / within) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seen_baselines = False
    for name, res in results.items():
        folds = res["folds"]
        judged = [view for view in ("student", "teacher") if not folds or view in folds[0]]
        extras = [v for v in label_mix.SECOND_VIEWS if folds and v in folds[0]] + label_mix.label_mixes(folds)
        views = judged + ([] if seen_baselines else [*BASELINES, *extras])
        seen_baselines = True
        for view in views:
            cells = [
                np.nanmean([f[view].get(m, math.nan) for f in folds])
                for m in ("spearman", "within", "pick", "ranking", "lean")
            ]
            label = name if view in judged else "-"
            fit = " / ".join(
                f"{np.nanmean([f[view].get(m, math.nan) for f in folds]):+.3f}"
                for m in (("vs_label", "vs_label_within") if view in judged else ())
            )
            lines.append(f"| {label} | {view} | " + " | ".join(f"{c:+.3f}" for c in cells) + f" | {fit} |")
    n = results[next(iter(results))]["folds"]
    lines.append(f"\n{len(n)} folds; dev rows per fold: {[f['n_dev_rows'] for f in n]}")
    lines += label_mix.mix_choice(n)
    if any("below_source" in f for res in results.values() for f in res["folds"]):
        lines += [
            "",
            "Contrast answers of the held-out fold scored below the answer they were built from (share of pairs, "
            "mean of folds; a judge that cannot be bought by writing more puts repeated and padded answers below):",
            "",
            "| scorer | " + " | ".join(SOURCED_KINDS) + " |",
            "|---|" + "---|" * len(SOURCED_KINDS),
        ]
        scorers = [(name, "student") for name in results] + [("label", "label"), ("length", "length")]
        for label, key in scorers:
            folds = results[label]["folds"] if label in results else next(iter(results.values()))["folds"]
            cells = [
                np.nanmean([f.get("below_source", {}).get(key, {}).get(kind, math.nan) for f in folds])
                for kind in SOURCED_KINDS
            ]
            lines.append(f"| {label} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
