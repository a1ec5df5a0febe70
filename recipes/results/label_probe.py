"""How learnable is the Self-J label for a MiniLM-sized judge? A ridge probe on frozen embeddings, by the same folds.

The cross-validation of ``distill_cv.py`` trains MiniLM judges that agree with their own label far less on unseen
instructions than the label agrees with GPT-4. This asks whether the label is learnable from what the student view
shows (instruction + response, no reference) with the same encoder frozen: all-MiniLM-L6-v2 mean-pooled embeddings
of the student view plus log length, ridge-regressed onto the label on one fold's instructions, scored on the other
fold's honest answers against the label and against GPT-4-turbo (train split only: a diagnostic, never a default).

    python recipes/results/label_probe.py --labeled outputs/labeled/pool_gemma_512 --from_shards
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from datasets import Dataset, load_from_disk

from selfj_trl.eval_sets.custom import load_custom_set
from selfj_trl.evaluation.set_metrics import evaluate_pointwise
from selfj_trl.io import atomic_write_json, load_script
from selfj_trl.models import load_embedder
from selfj_trl.prompts import PLAIN_PROMPT_TEMPLATE
from selfj_trl.signals.prefix import rows_by_group
from selfj_trl.stats import mean_within_group_spearman, spearman


cv = load_script(Path(__file__).with_name("distill_cv.py"))


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights (bias last) of ridge regression on standardised columns, the bias unpenalised."""
    x1 = np.hstack([x, np.ones((len(x), 1))])
    penalty = alpha * np.eye(x1.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(x1.T @ x1 + penalty, x1.T @ y)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labeled", required=True)
    parser.add_argument("--from_shards", action="store_true")
    parser.add_argument("--data_dir", default="../shared/data/alpaca_eval_gpt4")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    parser.add_argument("--cosine_weight", type=float, default=0.25)
    parser.add_argument(
        "--targets",
        nargs="+",
        default=["label"],
        choices=["label", "centered"],
        help="what the probe is fitted to: the label, or the label minus its instruction's mean (the "
        "part a pairwise loss within an instruction learns; the rest needs the reference)",
    )
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    labeled = (
        cv.labels_so_far(Path(args.labeled), args.cosine_weight) if args.from_shards else load_from_disk(args.labeled)
    )
    rows = list(labeled)
    folds = {ins: cv.fold_of(ins, args.folds) for ins in {r["instruction"] for r in rows}}
    embedder = load_embedder("all-minilm-l6-v2")
    texts = [PLAIN_PROMPT_TEMPLATE.format(instruction=r["instruction"]) + r["response"] for r in rows]
    emb = embedder.encode(texts, batch_size=32, show_progress_bar=True, normalize_embeddings=True)
    words = np.array([math.log1p(len(r["response"].split())) for r in rows])
    feats = np.hstack([emb, words[:, None]])
    labels = np.array([r["label"] for r in rows], dtype=float)
    centered = labels.copy()
    for at_rows in rows_by_group([r["instruction"] for r in rows]).values():
        centered[at_rows] -= labels[at_rows].mean()
    targets = {"label": labels, "centered": centered}
    index = {(r["instruction"], r["response"]): i for i, r in enumerate(rows)}
    results: dict[str, list] = {}
    for k in range(args.folds):
        train = np.array([folds[r["instruction"]] != k for r in rows])
        dev = [
            d
            for d in cv.dev_rows(Path(args.data_dir), {i for i, f in folds.items() if f == k})
            if (d["instruction"], d["response"]) in index
        ]
        at = np.array([index[(d["instruction"], d["response"])] for d in dev])
        ds = load_custom_set(Dataset.from_list(dev), "gpt4_win_prob", name=f"dev{k}")
        groups = [d["question_id"] for d in dev]
        mean, std = feats[train].mean(0), feats[train].std(0) + 1e-8
        candidates = {"label": labels[at], "length": words[at]}
        for target in args.targets:
            for alpha in args.alphas:
                w = ridge((feats[train] - mean) / std, targets[target][train], alpha)
                name = f"probe alpha={alpha:g}" + ("" if target == "label" else f" ({target})")
                candidates[name] = np.hstack([(feats[at] - mean) / std, np.ones((len(at), 1))]) @ w
        for name, s in candidates.items():
            # Graded by the same harness as the judges in distill_cv.py, so the rows compare.
            figures = cv.headline(evaluate_pointwise(ds, s, None))
            results.setdefault(name, []).append(
                {
                    "spearman": figures["spearman"],
                    "within": figures["within"],
                    "pick": figures["pick"],
                    "vs_label": spearman(s, labels[at]),
                    "n_dev_rows": len(dev),
                    "vs_label_within": mean_within_group_spearman(s, labels[at], groups),
                }
            )
    print("| scorer | Spearman | within | best-of-15 pick | vs the label (all / within) |")
    print("|---|---|---|---|---|")
    for name, per_fold in results.items():
        m = {key: np.nanmean([f[key] for f in per_fold]) for key in per_fold[0] if key != "n_dev_rows"}
        print(
            f"| {name} | {m['spearman']:+.3f} | {m['within']:+.3f} | {m['pick']:.3f} | "
            f"{m['vs_label']:+.3f} / {m['vs_label_within']:+.3f} |"
        )
    if args.out:
        atomic_write_json(Path(args.out), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
