"""Two runs of the label-quality report (``selfj-trl signal``) on the same train rows, compared row by row.

The runs differ in one setting (``--dtype float32`` vs ``bfloat16``, or ``--max_target_tokens``); this prints how
closely their labels agree (Spearman, max and mean absolute difference on the 0-9 scale) and each one's agreement
with GPT-4-turbo's win probability (pooled, without the two gaming models, within an instruction), with 95%
cluster-bootstrap intervals over instructions for each figure and for the paired difference B - A. AlpacaEval
**train** rows only (the report never reads the test split).

    selfj-trl signal --config C.yaml --n_instructions 32 --max_length 512 --dtype float32 --output_dir outputs/cv/fp32
    selfj-trl signal --config C.yaml --n_instructions 32 --max_length 512 --dtype bfloat16 --output_dir outputs/cv/bf16
    python bench/label_agreement.py outputs/cv/fp32 outputs/cv/bf16 --cosine_weight 0.25

(C.yaml: ``digit_variants: []`` and ``likelihood_methods: [reference_gain]``, the default label's components.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfj_trl.labels import combine_labels  # noqa: E402
from selfj_trl.signals.likelihood import gain_to_score  # noqa: E402
from selfj_trl.stats import cluster_bootstrap, group_index, mean_within_group_spearman, spearman  # noqa: E402


DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval_gpt4"
GAMING = {"NullModel", "gpt4_gamed"}


def cached(folder: Path, pattern: str) -> dict[str, dict]:
    files = sorted(folder.glob(f"cache/*/{pattern}"))
    if len(files) != 1:
        raise SystemExit(f"{folder}: expected one cache file {pattern}, found {[str(f) for f in files]}")
    return {r["key"]: r["value"] for r in map(json.loads, files[0].open())}


def labels(folder: Path, method: str, cosine_weight: float) -> tuple[dict[str, float], dict[str, float]]:
    """Per row key: the label (0-9) and the raw likelihood gain."""
    gains = {k: v["gain"] for k, v in cached(folder, f"likelihood-{method}-*.jsonl").items() if v}
    cos = cached(folder, "cosine.jsonl")
    keys = sorted(k for k in gains if k in cos)
    value = [c if isinstance(c, float) else c["cosine"] for c in (cos[k] for k in keys)]
    label = combine_labels([gain_to_score(gains[k], method) for k in keys], value, cosine_weight=cosine_weight)
    return dict(zip(keys, label, strict=True)), gains


def gpt4_quality() -> dict[str, float]:
    rows = map(json.loads, (DATA / "instructions.jsonl").open())
    train = {r["id"] for r in rows if r["split"] == "train"}  # never a test row
    out = {}
    for line in (DATA / "responses.jsonl").open():
        r = json.loads(line)
        if r["id"] in train and r.get("gpt4_win_prob") is not None:
            out[f"{r['id']}|{r['model']}"] = float(r["gpt4_win_prob"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="report output folder A (the reference run)")
    p.add_argument("b", type=Path, help="report output folder B")
    p.add_argument("--method", default="reference_gain")
    p.add_argument("--cosine_weight", type=float, default=0.25, help="the label's (the policy's measured default)")
    p.add_argument("--n_bootstrap", type=int, default=1000)
    args = p.parse_args(argv)
    (la, ga), (lb, gb) = (labels(f, args.method, args.cosine_weight) for f in (args.a, args.b))
    quality = gpt4_quality()
    keys = sorted(set(la) & set(lb) & set(quality))
    a, b = np.array([la[k] for k in keys]), np.array([lb[k] for k in keys])
    q = np.array([quality[k] for k in keys])
    groups = [k.split("|")[0] for k in keys]
    honest = np.array([k.split("|", 1)[1] not in GAMING for k in keys])
    diff = np.abs(a - b)
    print(f"A = {args.a}, B = {args.b}: {len(keys)} train rows, {len(set(groups))} instructions")
    print(
        f"labels B vs A: Spearman {spearman(a, b):.4f}, max |diff| {diff.max():.3f}, mean |diff| {diff.mean():.3f} "
        f"(0-9 scale; label sd {a.std():.2f}); raw gain Spearman "
        f"{spearman([ga[k] for k in keys], [gb[k] for k in keys]):.4f}"
    )
    names, index = group_index(groups)

    def figures(idx: np.ndarray) -> list[float]:
        rows = np.concatenate([index[i] for i in idx])
        # resampled instructions may repeat: give each copy its own group id for the within-instruction mean
        copies = np.concatenate([np.full(len(index[i]), n) for n, i in enumerate(idx)])
        h = rows[honest[rows]]
        out = []
        for s in (a, b):
            out += [
                spearman(s[rows], q[rows]),
                spearman(s[h], q[h]),
                mean_within_group_spearman(s[rows], q[rows], list(copies)),
            ]
        return out + [out[3] - out[0], out[4] - out[1], out[5] - out[2]]

    point = figures(np.arange(len(names)))
    low, high = cluster_bootstrap(figures, len(names), n_resamples=args.n_bootstrap)
    print("agreement with GPT-4 (Spearman, 95% cluster-bootstrap interval over instructions):")
    for row, label in enumerate(("A", "B", "B - A")):
        cells = [f"{point[3 * row + i]:+.3f} [{low[3 * row + i]:+.3f}, {high[3 * row + i]:+.3f}]" for i in range(3)]
        print(f"  {label:<6} pooled {cells[0]}   honest {cells[1]}   within {cells[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
