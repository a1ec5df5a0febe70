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
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from datasets import Dataset, concatenate_datasets, load_from_disk

from selfj_trl.errors import SelfJInputError, first_line
from selfj_trl.eval_sets.custom import load_custom_set
from selfj_trl.evaluation.set_metrics import evaluate_pointwise
from selfj_trl.io import (
    atomic_write_json,
    atomic_write_text,
    check_complete,
    content_hash,
    load_script,
    read_jsonl,
)
from selfj_trl.labels import combine_labels
from selfj_trl.stats import mean_within_group_spearman, spearman
from selfj_trl.tables import load_table, require_columns


label_mix = load_script(Path(__file__).with_name("label_mix.py"))
contrast_cv = load_script(Path(__file__).with_name("contrast_pairs.py"))
cv_settings = load_script(Path(__file__).with_name("cv_settings.py"))
SOURCED_KINDS = contrast_cv.SOURCED_KINDS
SETTINGS, CONTRAST_SETTINGS = cv_settings.SETTINGS, cv_settings.CONTRAST_SETTINGS
ADVERSARIAL = ("NullModel", "gpt4_gamed")
HINT = "Give the output folder of `selfj-trl label`."
#: The judge each setting trains unless ``--judge_config`` names another recipe (a bigger base, say).
JUDGE_CONFIG = "recipes/all-minilm-l6-v2/train/config_judge.yaml"
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


def train_judge(
    train_folder: Path, judge_dir: Path, flags: list[str], train_flags: list[str], config: str = JUDGE_CONFIG
) -> None:
    if judge_dir.exists() and not check_complete(judge_dir, "judge"):
        return
    cmd = [
        sys.executable,
        "-m",
        "selfj_trl.cli",
        "train",
        "--config",
        config,
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
    parser.add_argument("--judge_config", default=JUDGE_CONFIG, help="the `selfj-trl train` recipe of every judge")
    parser.add_argument(
        "--only_folds",
        type=int,
        nargs="+",
        help="train and score these folds only (a judge too slow for all of them); the table says which ran",
    )
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
    if args.only_folds and any(not 0 <= k < args.folds for k in args.only_folds):
        parser.error(f"--only_folds must lie in 0..{args.folds - 1}")
    out, data_dir = Path(args.out), Path(args.data_dir)
    try:  # the package's one table loader: a path that is no labeled dataset is refused in one line
        labeled = (
            labels_so_far(Path(args.labeled), args.cosine_weight) if args.from_shards else load_table(args.labeled)
        )
        second = load_table(args.second_labeled) if args.second_labeled else None
        contrast = load_table(args.contrast) if args.contrast else None
        for flag, table_, score in (("--labeled", labeled, "label"), ("--second_labeled", second, "self_eval_score")):
            if table_ is not None:
                require_columns(table_, ["instruction", "response", score], f"{flag} {getattr(args, flag[2:])}", HINT)
        if contrast is not None:
            require_columns(
                contrast, ["instruction", "response", "model", "label"], f"--contrast {args.contrast}", HINT
            )
    except SelfJInputError as err:
        print(f"distill_cv: {first_line(err)}", file=sys.stderr)
        return 2
    if second is not None:
        labeled = label_mix.with_second_self_eval(labeled, second)
        if not len(labeled):
            print(f"distill_cv: {args.second_labeled} labeled none of the answers in {args.labeled}.", file=sys.stderr)
            return 2
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
            for k in args.only_folds or range(args.folds)
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
        return scored_row(ds, {**scores, **label_mix.remade_labels(scores, args.cosine_weights)}, dev, k)
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
    train_judge(train_folder, judge_dir, flags, args.train_flags.split(), args.judge_config)
    judge = SelfJudge.from_pretrained(str(judge_dir))
    ins, resp, refs = ([r[c] for r in dev] for c in ("instruction", "response", "reference"))
    for view, view_refs in (("student", None), ("teacher", refs)):
        path = fold_dir / f"{name}.{view}.json"
        if not path.exists():
            atomic_write_json(
                path, judge.score(ins, resp, references=view_refs, batch_size=args.batch_size), indent=None
            )
        scores[view] = np.array(json.loads(path.read_text()), dtype=float)
    row = scored_row(ds, scores, dev, k)
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


def scored_row(ds, scores: dict[str, np.ndarray], dev: list[dict], k: int) -> dict:
    """Each scorer's headline figures on fold ``k``'s dev rows, with the fold's size."""
    row: dict = {view: headline(evaluate_pointwise(ds, s, None)) for view, s in scores.items()}
    row["fold"], row["n_dev_rows"], row["n_dev_instructions"] = k, len(dev), len({r["question_id"] for r in dev})
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
    lines.append(f"\nfolds {[f.get('fold') for f in n]}; dev rows per fold: {[f['n_dev_rows'] for f in n]}")
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
