"""The Markdown report (``report.md``) and the command line's summary, both read from ``metrics.json``'s dict.

The report folder (``metrics.json``, ``report.md``, the plots) also holds the score cache that lets a killed run
resume, so it is written in place: :func:`selfj_trl.artifacts.open_for_writing` drops its completion marker before
the first report file is replaced and :func:`selfj_trl.artifacts.mark_complete` lists :func:`report_files` last. A
report folder without a valid marker was not completely written and is refused.
"""

from __future__ import annotations

import math
from typing import Any


REPORT_WHAT = "evaluation report"
REPORT_COMMAND = "selfj-trl evaluate"


def report_files(metrics: dict[str, Any]) -> list[str]:
    """The files of a report folder that its completion marker lists (the score cache is not one of them)."""
    return ["metrics.json", "report.md", *metrics.get("plots", {}).values()]


def number(x: Any, digits: int = 3) -> str:
    """A figure with ``digits`` decimals, or "n/a" when it is missing or not finite."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def with_interval(point: Any, interval: list[float] | None, digits: int = 3) -> str:
    """``point [low, high]``, or the point alone when the interval is missing or not finite."""
    if interval is None or point is None or not all(isinstance(v, float) and math.isfinite(v) for v in interval):
        return number(point, digits)
    return f"{number(point, digits)} [{number(interval[0], digits)}, {number(interval[1], digits)}]"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def render_report(metrics: dict[str, Any]) -> str:
    """The Markdown report: one table per set with judges and baselines side by side, then the gaming table."""
    cfg = metrics["config"]
    level = int(round(cfg["confidence_level"] * 100))
    lines = ["# Judge evaluation report", ""]
    scorers = ", ".join(f"`{n}` ({v['kind']})" for n, v in metrics["scorers"].items())
    lines.append(
        f"Scorers: {scorers}. "
        f"Brackets are {level}% percentile intervals from {cfg['bootstrap_resamples']} bootstrap resamples of whole "
        f"instructions (seed {cfg['seed']}). Total time {metrics.get('seconds', 0):.0f} s."
    )
    lines.append("")
    for name, res in metrics["eval_sets"].items():
        lines += [f"## {res['title']} (`{name}`, {res['n']} rows)", ""]
        lines += [f"- {note}" for note in res["notes"]]
        lines += _pointwise_section(res) if res["kind"] == "pointwise" else _pairwise_section(res)
        lines += _paired_section(res)
        lines += [f"- {r['note']}" for r in res["scorers"].values() if r.get("note")]
        lines.append("")
    lines += _gaming_section(metrics)
    for title, file in metrics.get("plots", {}).items():
        lines += [f"![{title}]({file})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _pick_label(res: dict) -> str:
    """``best-of-15 pick`` (or ``best-of-4..22 pick`` when groups differ in size) from the set's pick figures."""
    ref = res.get("best_of_k") or {}
    k = f"{ref['k_min']}" if ref.get("k_min") == ref.get("k_max") else f"{ref.get('k_min')}..{ref.get('k_max')}"
    return f"best-of-{k} pick"


def _pointwise_section(res: dict) -> list[str]:
    has_reference = any(isinstance(r.get("vs_reference"), dict) for r in res["scorers"].values())
    has_ranking = any("ranking" in r for r in res["scorers"].values())
    has_pick = res.get("best_of_k") is not None
    board = "gpt4_rows_vs_leaderboard" in res
    header = ["scorer", "n", "Pearson", "Spearman", "Kendall", "within-question Spearman", "length lean"]
    if has_pick:
        header.append(_pick_label(res))
    header += ["selective AUC", "quality@50%", "quality@80%", "share of oracle gain"]
    if has_reference:
        header.append("agrees with GPT-4 vs reference")
    other_boards = sorted(
        {k for r in res["scorers"].values() for k in r.get("ranking", {}) if k.startswith("honest_vs_")}
    )
    if has_ranking:
        header.append("model-ranking Spearman (honest)" if board else "model-ranking Spearman")
        header += [f"ranking vs {k[len('honest_vs_') :].replace('_', ' ')}" for k in other_boards]
    rows = []
    for scorer, r in res["scorers"].items():
        ci = r.get("ci", {})
        corr, selective = r["correlation"], r["selective"]
        row = [
            f"`{scorer}`",
            str(r["n_scored"]),
            with_interval(corr["pearson"], ci.get("pearson")),
            with_interval(corr["spearman"], ci.get("spearman")),
            number(corr.get("kendall")),
            with_interval(r["within_question"]["spearman"], ci.get("within_spearman")),
            number(r.get("length_lean")),
        ]
        if has_pick:
            pick = r.get("best_of_k")
            row.append(with_interval(pick["pick"], ci.get("pick")) if pick else "n/a")
        row += [
            with_interval(selective["auc"], ci.get("auc")),
            number(selective["quality_at_50"]),
            number(selective["quality_at_80"]),
            number(selective["share_of_oracle_gain"]),
        ]
        if has_reference:
            vs = r.get("vs_reference")
            row.append(
                with_interval(vs["accuracy"], ci.get("vs_reference_accuracy")) if vs else "n/a (reads the reference)"
            )
        if has_ranking:
            ranking = r.get("ranking", {}).get("honest" if board else "all", {})
            row.append(with_interval(ranking.get("spearman"), ci.get("ranking_spearman_honest")))
            row += [number(r.get("ranking", {}).get(k, {}).get("spearman")) for k in other_boards]
        rows.append(row)
    picks = res.get("best_of_k") or {}
    for label, ordering in res.get("orderings", {}).items():
        row = [f"*{label}*", str(res.get("quality_rows", res["n"])), "", "", "", "", ""]
        if has_pick:
            key = "oracle" if label == "oracle" else "random"
            row.append(with_interval(picks.get(key), picks.get("ci", {}).get(key)))
        row += [
            number(ordering["auc"]),
            number(ordering["quality_at_50"]),
            number(ordering["quality_at_80"]),
            "1.000" if label == "oracle" else "0.000",
        ]
        rows.append(row + [""] * (int(has_reference) + (1 + len(other_boards)) * int(has_ranking)))
    out = [
        "",
        f"Quality = `{res['quality']}`. Within-question Spearman: mean over questions of the Spearman among "
        "the answers to the same question (what best-of-n, GRPO advantages and DPO pairs need). Length lean: the "
        "same mean Spearman of the scores with the answers' word counts (length itself: +1; a reward that leans "
        "on length can be bought by writing more). Selective "
        "columns: mean quality of the answers kept when only the top-scored fraction is answered (AUC = mean over "
        "10-100% coverage).",
    ]
    if has_pick:
        out[-1] += (
            f" {_pick_label(res)}: for each question, the mean `{res['quality']}` of the scorer's top answer "
            f"among the candidates ({picks.get('n_groups')} questions; answers tied at the top share the "
            "pick); the random row is a random pick's expected value, the oracle row the best answer."
        )
    out.append("")
    out += markdown_table(header, rows)
    out += _calibrated_section(res)
    every = [(n, r["all_rows"]) for n, r in res["scorers"].items() if "all_rows" in r]
    if every:
        out += [
            "",
            "The same over all rows, adversarial entries included (their GPT-4 labels are gamed, so a judge "
            "that is not fooled loses points here):",
            "",
        ]
        out += markdown_table(
            ["scorer", "n", "Pearson", "Spearman", "selective AUC", "agrees with GPT-4 vs reference"],
            [
                [
                    f"`{n}`",
                    str(a["n_scored"]),
                    number(a["correlation"]["pearson"]),
                    number(a["correlation"]["spearman"]),
                    number(a["selective"]["auc"]),
                    number(a["vs_reference"]["accuracy"]) if a.get("vs_reference") else "n/a",
                ]
                for n, a in every
            ],
        )
    always = [
        r["vs_reference"]["always_reference_accuracy"]
        for r in res["scorers"].values()
        if isinstance(r.get("vs_reference"), dict) and "always_reference_accuracy" in r["vs_reference"]
    ]
    if always:
        out += [
            "",
            f"For scale: always preferring the reference answer agrees with GPT-4 on {number(always[0])} of "
            "these answers (the reference is a strong GPT-4-turbo answer).",
        ]
    if board:
        honest = res["gpt4_rows_vs_leaderboard"]["honest"]
        out += [
            "",
            f"For scale: GPT-4's own mean win probability on these rows ranks the honest models with Spearman "
            f"{number(honest['spearman'])} against the leaderboard (all 805 instructions).",
        ]
    return out


def _calibrated_section(res: dict) -> list[str]:
    """Selective following with a threshold chosen on the set's calibration split and applied to its rows."""
    calibration = res.get("calibration")
    if calibration is None:
        return [
            "",
            "Calibrated selective following: this set has no separate calibration (train) split, so no "
            "threshold is calibrated for it; the coverage columns above rank by score only.",
        ]
    rows = []
    for scorer, r in res["scorers"].items():
        ci = r.get("ci", {})
        for c in r.get("calibrated") or []:
            key = f"calibrated_kept_quality@{round(100 * c['target_coverage'])}"
            rows.append(
                [
                    f"`{scorer}`",
                    f"{c['target_coverage']:.0%}",
                    number(c["threshold"]),
                    number(c["coverage"]),
                    with_interval(c["kept_quality"], ci.get(key)),
                    number(c["all_quality"]),
                ]
            )
    if not rows:
        return []
    out = [
        "",
        f"Selective following with a calibrated threshold: each scorer's threshold is chosen at the target "
        f"coverage on its scores of the {calibration['title']} ({calibration['n_rows']} honest answers to "
        f"{calibration['n_groups']} instructions; their quality is never read), then applied to the rows above. "
        "Achieved coverage far from the target means the scores shift between the two splits (a judge trained on "
        "train-split instructions may score them differently).",
        "",
    ]
    out += markdown_table(
        [
            "scorer",
            "target coverage",
            "threshold",
            "achieved coverage",
            f"mean {res['quality']} of answered",
            f"mean {res['quality']} of all",
        ],
        rows,
    )
    return out


def _pairwise_section(res: dict) -> list[str]:
    subsets = list(res["longer_answer_wins"])
    rows = []
    for scorer, r in res["scorers"].items():
        accuracy = r["accuracy"]
        row = [f"`{scorer}`"]
        for subset in subsets:
            if subset == "all":
                row.append(with_interval(accuracy[subset]["accuracy"], r.get("ci", {}).get("accuracy_all")))
            else:
                row.append(number(accuracy[subset]["accuracy"]))
        rows.append(row)
    longer = res["longer_answer_wins"]
    rows.append(["*longer answer wins*"] + [number(longer[s]["accuracy"]) for s in subsets])
    rows.append(["*pairs (non-tie)*"] + [str(longer[s]["n"]) for s in subsets])
    text = "Accuracy of J(a) > J(b) against the set's preferred answer on non-tie pairs (score ties count one half)."
    if any(s.startswith("llmbar_adv") for s in subsets):
        text += (
            " LLMBar Adversarial is built so that the longer or more superficially polished answer is the wrong one."
        )
    return ["", text, ""] + markdown_table(["scorer"] + subsets, rows)


def _signed(figure: dict) -> str:
    low, high = figure["ci"]
    if not all(math.isfinite(v) for v in (figure["difference"], low, high)):
        return "n/a" if not math.isfinite(figure["difference"]) else f"{figure['difference']:+.3f}"
    return f"{figure['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def _paired_section(res: dict) -> list[str]:
    """Each judge minus the length baseline, read from the same resampled instructions."""
    paired = res.get("paired") or {}
    judges = paired.get("judges") or {}
    if not judges:
        return []
    against = paired["against"]
    if res["kind"] == "pointwise":
        labels = {"spearman": "Spearman", "within_spearman": "within-question Spearman", "pick": _pick_label(res)}
    else:
        labels = {k: "accuracy" if k == "all" else f"accuracy, {k}" for d in judges.values() for k in d}
    rows = [[f"`{name}`"] + [_signed(d[k]) if k in d else "n/a" for k in labels] for name, d in judges.items()]
    what = "instructions" if res["kind"] == "pointwise" else "pairs"
    return [
        "",
        f"Each judge minus `{against}`, both figures read from the same resampled {what}: an interval above "
        f"zero says the judge beats `{against}` on that figure, one below zero that it loses, one across zero "
        "that this set cannot tell them apart (the separate intervals above overlap far more often).",
        "",
    ] + markdown_table(["judge"] + [f"difference in {label}" for label in labels.values()], rows)


def _gaming_cells(gaming: dict, adversarial: list[str]) -> list[str]:
    cells = [f"{gaming[name]['rank']}/{gaming[name]['of']}" if name in gaming else "n/a" for name in adversarial]
    flagged = [name for name, info in gaming.items() if info["gamed"]]
    cells.append("**GAMED by " + ", ".join(flagged) + "**" if flagged else "no")
    return cells


def _gaming_section(metrics: dict) -> list[str]:
    """Where each set's adversarial entries rank, for the annotator's leaderboard and for every scorer."""
    out = []
    for res in metrics["eval_sets"].values():
        board = res.get("gpt4_rows_vs_leaderboard")
        if board is None:
            continue
        adversarial = list(board["leaderboard_gaming"])
        for r in res["scorers"].values():
            adversarial += [n for n in r.get("ranking", {}).get("gaming", {}) if n not in adversarial]
        rows = [["*GPT-4 annotator (leaderboard)*"] + _gaming_cells(board["leaderboard_gaming"], adversarial)]
        rows += [
            [f"`{scorer}`"] + _gaming_cells(r["ranking"]["gaming"], adversarial)
            for scorer, r in res["scorers"].items()
            if r.get("ranking", {}).get("gaming") is not None
        ]
        out += markdown_table(["scorer"] + [f"{n} rank" for n in adversarial] + ["flagged"], rows) + [""]
    if not out:
        return []
    return [
        "## Gaming check (AlpacaEval adversarial entries)",
        "",
        "`NullModel` answers every instruction with one constant string built to fool the GPT-4 annotator; "
        "`gpt4_gamed` games it too. Rank = place among all models by mean score (1 = best). A scorer is "
        "flagged when an adversarial entry's mean score beats the median honest model. The `random` row, if "
        "present, shows where chance puts them: a scorer that cannot tell junk from answers is gameable.",
        "",
    ] + out


def summary(metrics: dict) -> str:
    """One line per set and scorer: the headline figures, for the terminal."""
    lines = []
    for name, res in metrics["eval_sets"].items():
        for scorer, r in res["scorers"].items():
            if res["kind"] == "pointwise":
                pick = r.get("best_of_k")
                lines.append(
                    f"{name:>16} {scorer:>24}: Pearson {number(r['correlation']['pearson'])}  "
                    f"Spearman {number(r['correlation']['spearman'])}  "
                    f"within {number(r['within_question']['spearman'])}  AUC {number(r['selective']['auc'])}  "
                    f"length lean {number(r.get('length_lean'))}" + (f"  pick {number(pick['pick'])}" if pick else "")
                )
            else:
                lines.append(f"{name:>16} {scorer:>24}: accuracy {number(r['accuracy']['all']['accuracy'])}")
        paired = res.get("paired") or {}
        for judge, figures in (paired.get("judges") or {}).items():
            cells = "  ".join(f"{key} {_signed(figure)}" for key, figure in figures.items())
            lines.append(f"{name:>16} {judge + ' - ' + paired['against']:>24}: {cells}")
    return "\n".join(lines)
