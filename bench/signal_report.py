"""Labeling-signal report for the offline policies (prints its tables; the work is ``selfj_trl.signal``).

Measures every label component of each policy against GPT-4's win probability on a seeded slice of AlpacaEval's
TRAIN split (never test), then prints, per policy, the before/after summary: the original zero-shot digit prompt, the
best self-evaluation with and without the reference, cosine, length, and the best combined label. Scores are cached
under ``--output_dir`` so a rerun only computes what is new. CPU-bound: measured on 2 shared (oversubscribed) cores
with ``--num_threads 1``, 1-3.5 s per row and component for SmolLM2-135M-Instruct and 1.2-4.6 s for Gemma 3 270M,
i.e. roughly 1.5-2.5 h per policy for the default components at 24 instructions x 17 models (408 rows).

    python bench/signal_report.py --policies smollm2-135m-instruct gemma-3-270m --n_instructions 24 --num_threads 1
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfj_trl.signal import SignalConfig, markdown_report, run_signal  # noqa: E402


def _row(label: str, c: dict) -> str:
    def f(v):
        return "n/a" if v is None or not math.isfinite(v) else f"{v:+.2f}"

    return (f"| {label} | {f(c['spearman'])} [{f(c['spearman_ci'][0])}, {f(c['spearman_ci'][1])}] "
            f"| {f(c['pearson'])} [{f(c['pearson_ci'][0])}, {f(c['pearson_ci'][1])}] "
            f"| {f(c.get('spearman_honest'))} | {f(c.get('within_instruction_spearman'))} |")


def summary(report: dict) -> str:
    """Before (the paper's zero-shot digit label) and after (the recommended label), beside the baselines."""
    comp, comb, best = report["components"], report["combined"], report["best"]
    lines = [f"### {report['policy']} ({report['data']['n_rows']} train rows)", "",
             "| signal | Spearman [95% CI] | Pearson [95% CI] | honest | within |", "|---|---|---|---|---|"]
    before = next((k for k in comp if k.startswith("digits/zero_shot/ref/") and k.endswith("/expected")), None)
    before_label = f"{before} + cosine | weighted_mean/w=0.5" if before else None
    rec = report.get("recommended") or {}
    picks = [("before: zero-shot digits, with reference", comp, before),
             ("before: the paper's label (zero-shot digits + cosine, w=0.5)", comb, before_label),
             ("best self-evaluation with reference", comp, best["self_eval_with_reference"]),
             ("best self-evaluation without reference", comp, best["self_eval_without_reference"]),
             ("cosine (MiniLM)", comp, "cosine"), ("response length", comp, "length_words"),
             ("after: recommended label", comb, rec.get("label"))]
    for label, table, key in picks:
        if key in table:
            lines.append(_row(f"{label}: `{key}`" if key not in ("cosine", "length_words") else label, table[key]))
    if rec:
        lines.append("")
        lines.append("recommended: " + " ".join(f"--{k} {v}" for k, v in rec["settings"].items()))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--n_instructions", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_threads", type=int, default=None)
    parser.add_argument("--output_dir", default="outputs/signal")
    parser.add_argument("--full", action="store_true", help="also print each policy's full component table")
    args = parser.parse_args()
    for policy in args.policies:
        config = SignalConfig(policy=policy, n_instructions=args.n_instructions, seed=args.seed,
                              num_threads=args.num_threads, output_dir=str(Path(args.output_dir) / policy))
        report = run_signal(config)
        print(markdown_report(report) if args.full else "")
        print(summary(report))
        print(f"\n(this run {report['timing']['total_s_this_run']} s; tables in {config.output_dir})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
