"""Labeling-signal report for the offline policies (prints its tables; the work is ``selfj_trl.label_report``).

Measures every label component of each policy against GPT-4's win probability on a seeded slice of AlpacaEval's
TRAIN split (never test), then prints, per policy, the before/after summary: the original zero-shot digit prompt, the
best self-evaluation with and without the reference, cosine, length, and the best combined label. Scores are cached
under ``--output_dir`` so a rerun only computes what is new. CPU-bound: measured on 2 shared (oversubscribed) cores
with ``--num_threads 1``, 1-3.5 s per row and component for SmolLM2-135M-Instruct and 1.2-4.6 s for Gemma 3 270M,
i.e. roughly 1.5-2.5 h per policy for the default components at 24 instructions x 17 models (408 rows).

    python bench/signal_report.py --policies smollm2-135m-instruct gemma-3-270m --n_instructions 24 --num_threads 1

The last table it prints is the README's (both policies side by side).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfj_trl.label_report import LabelReportConfig, label_flags, markdown_report, run_label_report  # noqa: E402


def _row(label: str, c: dict) -> str:
    def f(v):
        return "n/a" if v is None or not math.isfinite(v) else f"{v:+.2f}"

    return (
        f"| {label} | {f(c['spearman'])} [{f(c['spearman_ci'][0])}, {f(c['spearman_ci'][1])}] "
        f"| {f(c['pearson'])} [{f(c['pearson_ci'][0])}, {f(c['pearson_ci'][1])}] "
        f"| {f(c.get('spearman_honest'))} | {f(c.get('within_instruction_spearman'))} |"
    )


def summary(report: dict) -> str:
    """Before (the old Self-J default: digits without a lead) and after (the recommended label), beside the
    baselines."""
    comp, comb, best = report["components"], report["combined"], report["best"]
    lines = [
        f"### {report['policy']} ({report['data']['n_rows']} train rows)",
        "",
        "| signal | Spearman [95% CI] | Pearson [95% CI] | honest | within |",
        "|---|---|---|---|---|",
    ]
    before = next((k for k in comp if k.startswith("digits/no_lead/ref/") and k.endswith("/expected")), None)
    before_label = f"{before} + cosine | weighted_mean/w=0.5" if before else None
    rec = report.get("recommended") or {}
    picks = [
        ("before: digits without an answer lead, with reference", comp, before),
        ("before: the old Self-J default label (digits without a lead + cosine, w=0.5)", comb, before_label),
        ("best self-evaluation with reference", comp, best["self_eval_with_reference"]),
        ("best self-evaluation without reference", comp, best["self_eval_without_reference"]),
        ("cosine (MiniLM)", comp, "cosine"),
        ("response length", comp, "length_words"),
        ("after: recommended label", comb, rec.get("label")),
    ]
    for label, table, key in picks:
        if key in table:
            lines.append(_row(f"{label}: `{key}`" if key not in ("cosine", "length_words") else label, table[key]))
    if rec:
        lines.append("")
        lines.append("recommended: " + label_flags(rec["settings"]))
    return "\n".join(lines)


#: The README's table: (row label, where, key). Keys name components or combined labels of the report.
README_ROWS = [
    ("digits, no answer lead, with reference (the old default)", "components", "digits/no_lead/ref/L768/expected"),
    (
        "digits, rating lead: the rating is the next token (the default)",
        "components",
        "digits/rating_lead/ref/L768/expected",
    ),
    ("digits, few-shot (4 project-written examples)", "components", "digits/few_shot/ref/L768/expected"),
    ("digits, few-shot, room for the whole answer (L1536)", "components", "digits/few_shot/ref/L1536/expected"),
    ("digits, reference after the answer", "components", "digits/reference_after/ref/L768/expected"),
    ("digits, 1-5 scale", "components", "digits/scale_1_5/ref/L768/expected"),
    ("digits, most likely digit instead of the expectation (no lead)", "components", "digits/no_lead/ref/L768/argmax"),
    ("digits, few-shot, **without** the reference", "components", "digits/few_shot/noref/L768/expected"),
    ("likelihood `response_gain` (nats/token)", "components", "likelihood/response_gain/L768/score"),
    (
        "likelihood `response_gain`, summed over tokens (not length-normalised)",
        "components",
        "likelihood/response_gain/L768/sum",
    ),
    ("likelihood `reference_gain` (nats/token)", "components", "likelihood/reference_gain/L768/score"),
    ("MiniLM cosine to the reference", "components", "cosine"),
    (
        "**before**: digits without a lead + cosine, w=0.5 (the old Self-J default)",
        "combined",
        "digits/no_lead/ref/L768/expected + cosine | weighted_mean/w=0.5",
    ),
    (
        "**after**: `reference_gain` + cosine, w=0.25 (the new default for both)",
        "combined",
        "likelihood/reference_gain/L768/score + cosine | weighted_mean/w=0.25",
    ),
    (
        "`reference_gain` + cosine, rank mean, w=0.25",
        "combined",
        "likelihood/reference_gain/L768/score + cosine | rank_mean/w=0.25",
    ),
    (
        "`reference_gain` + cosine, fitted (cross-fitted over instructions)",
        "combined",
        "likelihood/reference_gain/L768/score + cosine | fitted/cross-fitted",
    ),
    ("response length (words): the baseline to beat", "components", "length_words"),
]


def readme_table(reports: list[dict]) -> str:
    """One row per signal, one column group per policy: Spearman [95% CI] on all rows, honest, within."""

    def f(v):
        return "n/a" if v is None or not math.isfinite(v) else f"{v:+.2f}"

    head = "| signal | " + " | ".join(f"{r['policy']}: all [95% CI] | honest | within" for r in reports) + " |"
    lines = [head, "|---" * (1 + 3 * len(reports)) + "|"]
    for label, where, key in README_ROWS:
        cells = []
        for r in reports:
            c = r[where].get(key)
            cells += (
                ["not run", "", ""]
                if c is None
                else [
                    f"{f(c['spearman'])} [{f(c['spearman_ci'][0])}, {f(c['spearman_ci'][1])}]",
                    f(c.get("spearman_honest")),
                    f(c.get("within_instruction_spearman")),
                ]
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--n_instructions", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_threads", type=int, default=None)
    parser.add_argument("--output_dir", default="outputs/signal")
    parser.add_argument(
        "--extra_digit_variants",
        nargs="*",
        default=["few_shot:ref:1536"],
        help="measured beside the defaults (truncation: room for the whole few-shot prompt)",
    )
    parser.add_argument(
        "--digit_variants",
        nargs="*",
        default=None,
        help="replace the default digit variants (STYLE:ref|noref[:MAX_LENGTH]); none: digits skipped",
    )
    parser.add_argument("--likelihood_methods", nargs="*", default=None, help="default: both")
    parser.add_argument("--full", action="store_true", help="also print each policy's full component table")
    args = parser.parse_args()
    reports = []
    for policy in args.policies:
        config = LabelReportConfig(
            policy=policy,
            n_instructions=args.n_instructions,
            seed=args.seed,
            num_threads=args.num_threads,
            output_dir=str(Path(args.output_dir) / policy),
        )
        if args.digit_variants is not None:
            config.digit_variants = list(args.digit_variants)
        else:
            config.digit_variants += [v for v in args.extra_digit_variants if v not in config.digit_variants]
        if args.likelihood_methods is not None:
            config.likelihood_methods = list(args.likelihood_methods)
        report = run_label_report(config)
        reports.append(report)
        print(markdown_report(report) if args.full else "")
        print(summary(report))
        print(f"\n(this run {report['timing']['total_s_this_run']} s; tables in {config.output_dir})\n")
    print(readme_table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
