"""The evaluation harness: each metric on a hand-computed example, the ranking and gaming checks on a synthetic
leaderboard, selective-following curves, and the harness end to end (on the real held-out data when present)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from datasets import Dataset

from selfj_trl import evaluation as ev
from selfj_trl.errors import SelfJInputError
from selfj_trl.eval_sets import (
    ADVERSARIAL_MODELS,
    LLMBAR_ADVERSARIAL,
    PairwiseSet,
    PointwiseSet,
    load_alpaca_eval,
    load_alpaca_train_rows,
    load_eval_set,
    register,
    registered_sets,
    resolve_eval_set_name,
    unregister,
)
from selfj_trl.evaluation.harness import BootstrapOptions
from selfj_trl.io import shared_data_dir
from selfj_trl.stats import cluster_bootstrap


needs_shared_data = pytest.mark.skipif(
    shared_data_dir() is None, reason="../shared/data (the project's held-out sets) is not present on this machine"
)


# ---------------------------------------------------------------------------------------------------------------
# Metrics against hand-computed values
# ---------------------------------------------------------------------------------------------------------------
def test_correlations_hand_computed():
    # deviations (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5): cov 4, variances 5 and 5 -> r = 0.8;
    # ranks equal the values -> Spearman 0.8; one discordant pair of six -> tau = (5 - 1) / 6.
    out = ev.correlations([1, 2, 3, 4], [1, 3, 2, 4])
    assert out["pearson"] == pytest.approx(0.8)
    assert out["spearman"] == pytest.approx(0.8)
    assert out["kendall"] == pytest.approx(4 / 6)
    assert out["n"] == 4


def test_correlations_drop_nan_rows_and_handle_constant_scores():
    out = ev.correlations([1, 2, np.nan, 3, 4], [1, 3, 100.0, 2, 4])
    assert out["n"] == 4 and out["pearson"] == pytest.approx(0.8)
    assert math.isnan(ev.correlations([1, 1, 1, 1], [1, 2, 3, 4])["pearson"])


def test_preference_accuracy_counts_ties_as_half():
    # right, wrong, score tie (0.5), right -> 2.5 / 4
    out = ev.preference_accuracy([2, 1, 3, 3], [1, 2, 3, 0], [True, True, False, True])
    assert out == {"accuracy": pytest.approx(0.625), "n": 4, "ties": 1}


def test_agreement_with_reference_leaves_out_gpt4_ties():
    # q = 0.5 is GPT-4's own tie: left out. Of the rest: row 0 right, row 1 wrong, row 3 wrong -> 1/3.
    out = ev.agreement_with_reference([2, 2, 1, 0], [1, 1, 1, 1], [0.9, 0.2, 0.5, 0.7])
    assert out["accuracy"] == pytest.approx(1 / 3)
    assert out["n"] == 3 and out["gpt4_ties_excluded"] == 1
    assert out["always_reference_accuracy"] == pytest.approx(1 / 3)  # only row 1 has the reference winning


def test_per_model_means_ignore_nan():
    means = ev.per_model_means([1, 3, np.nan, 4], ["a", "a", "b", "b"])
    assert means == {"a": 2.0, "b": 4.0}


def test_within_group_correlation_averages_per_question():
    scores = [1, 2, 3, 1, 2, 3, 5, 6, 7]
    quality = [1, 2, 3, 3, 2, 1, 4, 4, 4]  # +1 in q1, -1 in q2, constant in q3 (skipped)
    out = ev.within_group_correlations(scores, quality, ["q1"] * 3 + ["q2"] * 3 + ["q3"] * 3)
    assert out["pearson"] == pytest.approx(0.0)
    assert out["spearman"] == pytest.approx(0.0)
    assert out["n_groups"] == 2 and out["n_groups_skipped"] == 1


def test_group_picks_hand_computed_ties_share_the_pick_and_lone_answers_are_skipped():
    scores = [3, 1, 2, 5, 5, 0, 7]
    quality = [0.2, 0.9, 0.4, 0.1, 0.5, 0.0, 1.0]
    out = ev.group_picks(scores, quality, ["a", "a", "a", "b", "b", "b", "c"])
    # a: top score 3 -> quality 0.2 (the oracle is 0.9); b: two answers tied at 5 share the pick -> (0.1 + 0.5) / 2;
    # c: one answer, nothing to pick among -> NaN
    assert out["pick"][:2].tolist() == pytest.approx([0.2, 0.3]) and math.isnan(out["pick"][2])
    assert out["random"][:2].tolist() == pytest.approx([0.5, 0.2]) and out["oracle"][:2].tolist() == [0.9, 0.5]
    assert out["k"].tolist() == [3, 3, 1]
    constant = ev.group_picks([1.0] * 3, [0.0, 0.3, 0.6], ["g"] * 3)
    assert constant["pick"][0] == pytest.approx(constant["random"][0])  # a constant scorer is a random pick


def test_calibrated_selection_takes_its_threshold_from_the_calibration_rows_only():
    calibration = [0.0, 1.0, 2.0, 3.0]  # the top half starts at 2.0
    scores, quality = [1.5, 2.5, 3.5, 4.5], [0.1, 0.2, 0.3, 0.4]
    (half,) = ev.calibrated_selection(calibration, scores, quality, target_coverages=(0.5,))
    assert half["threshold"] == 2.0 and half["coverage"] == pytest.approx(0.75)  # shifted scores: not 0.5
    assert half["kept_quality"] == pytest.approx(0.3) and half["all_quality"] == pytest.approx(0.25)
    # the gated rows never move the threshold: other test qualities and scores, the same threshold
    (again,) = ev.calibrated_selection(calibration, [9.0, 9.0, 0.0, 0.0], [1, 1, 0, 0], target_coverages=(0.5,))
    assert again["threshold"] == 2.0 and again["coverage"] == pytest.approx(0.5) and again["kept_quality"] == 1.0


def _pick_set(pick_models=None, calibration=None):
    """Two questions x (three honest models + one adversarial); model "c" writes the best answers, "x" games."""
    models = ["a", "b", "c", "x"] * 2
    return PointwiseSet(
        name="picks",
        title="picks",
        quality_name="q",
        instructions=["i0"] * 4 + ["i1"] * 4,
        responses=[f"r{i}" for i in range(8)],
        references=[None] * 8,
        quality=np.array([0.1, 0.4, 0.9, 1.0, 0.2, 0.5, 0.8, 1.0]),
        groups=["0"] * 4 + ["1"] * 4,
        models=models,
        subsets=[None] * 8,
        adversarial=("x",),
        pick_models=pick_models,
        calibration=calibration,
    )


def test_best_of_k_picks_among_the_sets_candidates_only():
    scores = np.array([1.0, 2.0, 3.0, 9.0, 1.0, 2.0, 3.0, 9.0])  # the adversarial answer scores highest
    every_honest = ev.best_of_k(_pick_set(), scores)
    assert every_honest["pick"] == pytest.approx(0.85) and every_honest["k_max"] == 3  # "x" is never a candidate
    assert every_honest["random"] == pytest.approx((0.1 + 0.4 + 0.9 + 0.2 + 0.5 + 0.8) / 6)
    assert every_honest["oracle"] == pytest.approx(0.85)
    two = ev.best_of_k(_pick_set(pick_models=("a", "b")), scores)  # the set says only a and b compete
    assert two["pick"] == pytest.approx(0.45) and two["k_max"] == 2 and two["oracle"] == pytest.approx(0.45)


def test_evaluate_pointwise_reports_pick_within_and_calibrated_figures_with_intervals():
    calibration = _pick_set()
    ds = _pick_set(calibration=calibration)
    ds = PointwiseSet(**{**ds.__dict__, "groups": [str(i // 4) for i in range(8)]})
    scores = np.array([1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0, 0.0])
    out = ev.evaluate_pointwise(
        ds,
        scores,
        None,
        calibration_scores=np.array([1.0, 2.0, 3.0, 2.5, 1.5, 0.5]),
        target_coverages=(0.5,),
        n_resamples=30,
    )
    assert out["best_of_k"]["pick"] == pytest.approx(0.85) and out["within_question"]["spearman"] == 1.0
    (half,) = out["calibrated"]
    assert half["threshold"] == 2.0 and half["coverage"] == pytest.approx(4 / 6)
    assert half["kept_quality"] == pytest.approx((0.4 + 0.9 + 0.5 + 0.8) / 4)
    assert {"within_spearman", "pick", "pick_gain_over_random", "calibrated_kept_quality@50"} <= set(out["ci"])
    assert ev.evaluate_pointwise(_pick_set(), scores, None, n_resamples=0)["calibrated"] is None


def test_harness_reports_the_calibrated_threshold_or_says_there_is_no_calibration_split(tmp_path):
    with_split = _pick_set(calibration=_pick_set())
    without = _pick_set()
    without.name = "no_split"
    metrics = ev.evaluate_judges(["length"], [with_split, without], tmp_path, bootstrap_resamples=20, plots=False)
    sets = metrics["eval_sets"]
    assert sets["picks"]["calibration"]["n_rows"] == 6 and sets["no_split"]["calibration"] is None
    assert sets["picks"]["scorers"]["length"]["calibrated"][0]["target_coverage"] == 0.5
    assert sets["picks"]["best_of_k"]["oracle"] == pytest.approx(0.85)
    report = (tmp_path / "report.md").read_text()
    assert "best-of-3 pick" in report and "calibrated threshold" in report
    assert "no separate calibration (train) split" in report


def test_only_the_calibration_splits_honest_rows_are_scored_and_none_without_targets(tmp_path):
    calibration = PointwiseSet(**{**_pick_set().__dict__, "responses": [f"calibration answer {i}" for i in range(8)]})
    scorer = CountingScorer()
    ev.evaluate_judges(
        [scorer], [_pick_set(calibration=calibration)], tmp_path / "a", bootstrap_resamples=0, plots=False
    )
    assert scorer.calls == 8 + 6  # the set's 8 rows, then the calibration split's 6 honest answers
    scorer = CountingScorer()
    metrics = ev.evaluate_judges(
        [scorer],
        [_pick_set(calibration=calibration)],
        tmp_path / "b",
        bootstrap_resamples=0,
        plots=False,
        target_coverages=(),
    )
    assert scorer.calls == 8 and metrics["eval_sets"]["picks"]["scorers"]["words"]["calibrated"] is None


def test_evaluate_defaults_to_every_row_of_every_builtin_set():
    from selfj_trl.eval_sets import BUILTIN_SETS

    config = ev.EvaluationConfig(output_dir="out")
    assert config.eval_sets == list(BUILTIN_SETS) and config.max_instructions is None
    assert config.target_coverages == [0.5, 0.8]


# ---------------------------------------------------------------------------------------------------------------
# Model ranking and the gaming check on a synthetic leaderboard
# ---------------------------------------------------------------------------------------------------------------
def test_ranking_agreement_with_and_without_excluded_models():
    scores = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    board = {"a": 10.0, "b": 30.0, "c": 20.0, "d": 40.0, "unscored": 5.0}
    full = ev.ranking_agreement(scores, board)
    assert full["spearman"] == pytest.approx(0.8) and full["kendall"] == pytest.approx(4 / 6)
    assert full["n_models"] == 4
    # without d: ranks (1, 2, 3) vs (1, 3, 2): rho = 1 - 6 * 2 / (3 * 8) = 0.5, tau = (2 - 1) / 3
    part = ev.ranking_agreement(scores, board, exclude=["d"])
    assert part["spearman"] == pytest.approx(0.5) and part["kendall"] == pytest.approx(1 / 3)


def test_gaming_check_flags_an_adversarial_entry_above_the_median_honest_model():
    scores = {"h1": 1.0, "h2": 2.0, "h3": 3.0, "h4": 4.0, "NullModel": 5.0, "gpt4_gamed": 0.5}
    out = ev.gaming_check(scores, ["NullModel", "gpt4_gamed"])
    assert out["NullModel"]["rank"] == 1 and out["NullModel"]["of"] == 6
    assert out["NullModel"]["gamed"] and out["NullModel"]["beats_honest"] == 4
    assert out["NullModel"]["median_honest_score"] == pytest.approx(2.5)
    assert out["gpt4_gamed"]["rank"] == 6 and not out["gpt4_gamed"]["gamed"]


def test_evaluate_pointwise_keeps_gamed_labels_out_of_quality_metrics():
    models = ["h1", "h2", "h3", "NullModel"] * 4
    quality = np.array([0.1, 0.2, 0.3, 0.9] * 4)  # GPT-4 fooled by NullModel
    scores = np.array([1.0, 2.0, 3.0, 0.0] * 4)  # the judge is not fooled
    ds = PointwiseSet(
        name="toy",
        title="toy",
        quality_name="q",
        instructions=["i"] * 16,
        responses=[f"r{i}" for i in range(16)],
        references=["ref"] * 16,
        quality=quality,
        groups=[str(i // 4) for i in range(16)],
        models=models,
        subsets=[None] * 16,
        group_references={str(g): "ref" for g in range(4)},
        leaderboard={"h1": 1.0, "h2": 2.0, "h3": 3.0, "NullModel": 9.0},
        adversarial=("NullModel",),
    )
    out = ev.evaluate_pointwise(ds, scores, {str(g): 1.5 for g in range(4)}, n_resamples=20)
    assert out["n_scored"] == 12 and out["correlation"]["spearman"] == pytest.approx(1.0)
    assert out["all_rows"]["correlation"]["spearman"] < 0  # the gamed labels punish the judge
    assert out["ranking"]["honest"]["spearman"] == pytest.approx(1.0)
    assert out["ranking"]["gaming"]["NullModel"]["rank"] == 4 and not out["ranking"]["gaming"]["NullModel"]["gamed"]
    assert out["vs_reference"]["accuracy"] == pytest.approx(1 / 3)  # h1 right (loses), h2 and h3 wrong (beat ref)


def test_length_lean_is_the_within_question_spearman_with_word_count():
    words = [1, 3, 2, 5, 4, 6]  # answers of 1..6 words, two questions of three answers
    ds = PointwiseSet(
        name="toy",
        title="toy",
        quality_name="q",
        instructions=["a"] * 3 + ["b"] * 3,
        responses=[" ".join(["w"] * n) for n in words],
        references=[None] * 6,
        quality=np.array([0.1, 0.5, 0.3, 0.2, 0.9, 0.4]),
        groups=["a"] * 3 + ["b"] * 3,
        models=[None] * 6,
        subsets=[None] * 6,
    )
    by_length = ev.evaluate_pointwise(ds, np.array(words, dtype=float), None, n_resamples=0)
    assert by_length["length_lean"] == pytest.approx(1.0)
    # question a: score ranks 3, 1, 2 against word ranks 1, 3, 2 (sum d^2 = 8: rho = -1); question b: 1, 2, 3
    # against 2, 1, 3 (sum d^2 = 2: rho = +0.5); the mean is -0.25
    scores = np.array([3.0, 1.0, 2.0, 1.0, 2.0, 3.0])
    assert ev.evaluate_pointwise(ds, scores, None, n_resamples=0)["length_lean"] == pytest.approx(-0.25)


# ---------------------------------------------------------------------------------------------------------------
# Selective instruction following
# ---------------------------------------------------------------------------------------------------------------
def test_selective_curve_hand_computed_and_endpoints():
    curve = ev.selective_curve([4, 3, 2, 1], [1, 0, 1, 0], coverages=(0.25, 0.5, 0.75, 1.0))
    assert curve.tolist() == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    rng = np.random.default_rng(1)
    q = rng.random(57)
    full = ev.selective_curve(rng.random(57), q)
    assert full[-1] == pytest.approx(q.mean())  # 100% coverage keeps everything


def test_curve_summary_is_the_mean_height_over_coverage():
    cov = ev.COVERAGES
    linear = ev.curve_summary(list(cov), cov)
    assert linear["auc"] == pytest.approx(0.55)  # mean of a straight line from 0.1 to 1.0
    assert linear["quality_at_50"] == pytest.approx(0.5) and linear["quality_at_80"] == pytest.approx(0.8)
    assert ev.curve_summary([0.3] * len(cov))["auc"] == pytest.approx(0.3)


def test_oracle_beats_informative_judge_beats_random():
    rng = np.random.default_rng(0)
    q = rng.random(3000)
    judge = q + rng.normal(0, 0.3, len(q))  # informative but noisy
    noise = rng.random(len(q))
    auc = {
        name: ev.curve_summary(ev.selective_curve(s, q))["auc"]
        for name, s in [("oracle", q), ("judge", judge), ("random", noise)]
    }
    assert auc["oracle"] > auc["judge"] > auc["random"] + 0.05
    assert auc["random"] == pytest.approx(q.mean(), abs=0.03)


def test_constant_scores_behave_like_a_random_order():
    q = np.random.default_rng(3).random(2000)
    curve = ev.selective_curve(np.zeros_like(q), q)
    assert np.allclose(curve, q.mean(), atol=0.05)


def test_cluster_bootstrap_brackets_the_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)

    def stat(idx):
        return np.array([x[idx].mean()])

    low, high = cluster_bootstrap(stat, len(x), n_resamples=300, seed=7)
    assert low[0] < x.mean() < high[0]
    low2, high2 = cluster_bootstrap(stat, len(x), n_resamples=300, seed=7)
    assert (low2, high2) == (low, high)


def test_pairwise_accuracy_per_subset_and_llmbar_adversarial_total():
    ds = PairwiseSet(
        name="p",
        title="p",
        instructions=["i"] * 5,
        responses_a=["a"] * 5,
        responses_b=["b"] * 5,
        labels=["A", "B", "tie", "A", "B"],
        subsets=["natural", "natural", "natural", "llmbar_adv_neighbor", "llmbar_adv_manual"],
        references=[None] * 5,
        subset_totals={"llmbar_adversarial (all 4)": LLMBAR_ADVERSARIAL},
    )
    out = ev.evaluate_pairwise(ds, np.array([2.0, 2, 0, 0, 1]), np.array([1.0, 1, 5, 1, 1]), n_resamples=50)
    acc = out["accuracy"]
    assert acc["natural"]["accuracy"] == pytest.approx(0.5) and acc["natural"]["n"] == 2  # tie label left out
    assert acc["llmbar_adv_neighbor"]["accuracy"] == 0.0
    assert acc["llmbar_adv_manual"]["accuracy"] == 0.5  # score tie
    assert acc["llmbar_adversarial (all 4)"]["accuracy"] == pytest.approx(0.25)
    assert acc["all"]["n"] == 4 and out["n_ties_excluded"] == 1


def test_pairwise_subsets_are_only_totalled_when_the_set_says_so():
    ds = PairwiseSet(
        name="p",
        title="p",
        instructions=["i"] * 2,
        responses_a=["a"] * 2,
        responses_b=["b"] * 2,
        labels=["A", "B"],
        subsets=["llmbar_adv_neighbor", "llmbar_adv_manual"],
        references=[None] * 2,
    )
    acc = ev.evaluate_pairwise(ds, np.array([2.0, 2.0]), np.array([1.0, 1.0]), n_resamples=0)["accuracy"]
    assert set(acc) == {"llmbar_adv_neighbor", "llmbar_adv_manual", "all"}


# ---------------------------------------------------------------------------------------------------------------
# Held-out sets by name: a new set is one loader registered in one place (here: this test file alone)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def toy_set_name():
    """A trivial held-out set registered from this file only, with one adversarial model of its own."""

    @register("toy_set", aliases=("Toy",))
    def load_toy_set(max_instructions=None, seed=0):
        n_questions = max_instructions or 4
        models = ["weak", "mid", "strong", "gamer"]
        rows = [
            (q, m, " ".join(["word"] * (1 + 3 * k)), 0.2 * k) for q in range(n_questions) for k, m in enumerate(models)
        ]
        return PointwiseSet(
            name="toy_set",
            title="Toy set",
            quality_name="grade",
            instructions=[f"question {q}" for q, *_ in rows],
            responses=[r for _, _, r, _ in rows],
            references=[None] * len(rows),
            quality=np.array([g if m != "gamer" else 1.0 for _, m, _, g in rows]),
            groups=[str(q) for q, *_ in rows],
            models=[m for _, m, _, _ in rows],
            subsets=[None] * len(rows),
            leaderboard={"weak": 1.0, "mid": 2.0, "strong": 3.0, "gamer": 4.0},
            adversarial=("gamer",),
            other_leaderboards={"inverse_board": {"weak": 3.0, "mid": 2.0, "strong": 1.0, "gamer": 0.0}},
        )

    yield "toy_set"
    unregister("toy_set")


def test_a_set_registered_in_one_place_is_evaluated_through_the_public_api(toy_set_name, tmp_path):
    assert resolve_eval_set_name("TOY") == toy_set_name and toy_set_name in registered_sets()
    metrics = ev.evaluate_judges(["length"], [toy_set_name], tmp_path, max_instructions=3, bootstrap_resamples=20)
    res = metrics["eval_sets"][toy_set_name]
    length = res["scorers"]["length"]
    assert res["n"] == 12 and length["n_scored"] == 9  # the set's own adversarial model is left out of quality
    assert length["correlation"]["spearman"] == pytest.approx(1.0)
    assert set(length["ranking"]["gaming"]) == {"gamer"} and length["ranking"]["gaming"]["gamer"]["gamed"]
    assert "gamer rank" in (tmp_path / "report.md").read_text()
    # A second leaderboard (AlpacaEval's length-controlled win rate) is ranked against too, honest models only.
    assert length["ranking"]["honest_vs_inverse_board"]["spearman"] == pytest.approx(-1.0)
    assert "ranking vs inverse board" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "ranking_toy_set.png").exists()
    unregister(toy_set_name)
    with pytest.raises(SelfJInputError, match="unknown eval set"):
        load_eval_set(toy_set_name)


def test_registering_a_taken_name_or_an_unknown_loader_option_is_refused():
    with pytest.raises(ValueError, match="already belong"):
        register("another_set", aliases=("alpaca_eval",))(lambda seed=0: None)
    with pytest.raises(TypeError, match="allowed"):
        register("another_set")(lambda path=None: None)
    assert "another_set" not in registered_sets()


# ---------------------------------------------------------------------------------------------------------------
# Scorers, cache and bad input
# ---------------------------------------------------------------------------------------------------------------
class CountingScorer:
    """Scores by the number of words; counts rows so tests can see the cache at work."""

    name = "words"
    cache_id = "test:words"

    def __init__(self):
        self.calls = 0

    def score(self, instructions, responses, references=None, batch_size=8):
        self.calls += len(responses)
        return [float(len(r.split())) for r in responses]


def test_baselines_length_random_are_deterministic():
    length = ev.baseline_scorer("length")
    assert length.score(["i", "i"], ["abc", ""]) == [3.0, 0.0]
    assert ev.baseline_scorer("length:words").score(["i"], ["a b c"]) == [3.0]
    rnd = ev.baseline_scorer("random")
    first = rnd.score(["x", "y"], ["a", "b"])
    assert rnd.score(["y", "x"], ["b", "a"]) == first[::-1]  # per row, independent of order
    assert all(0 <= s < 1 for s in first)
    assert ev.baseline_scorer("random:5").score(["x"], ["a"]) != first[:1]


def test_resolve_scorers_errors_and_unique_names(tmp_path):
    with pytest.raises(SelfJInputError, match="no such folder"):
        ev.resolve_scorers([str(tmp_path / "missing_judge")])
    with pytest.raises(SelfJInputError, match="needs the policy"):
        ev.resolve_scorers(["self_eval_noref"])
    with pytest.raises(SelfJInputError, match="seed must be an integer"):
        ev.resolve_scorers(["random:x"])
    with pytest.raises(SelfJInputError, match="object with .score"):
        ev.resolve_scorers([42])
    names = [e.name for e in ev.resolve_scorers([CountingScorer(), CountingScorer(), "length"])]
    assert names == ["words", "words#2", "length"]


def test_score_cache_survives_a_torn_line(tmp_path):
    cache = ev.ScoreCache(tmp_path)
    cache.add("id", {"h1": 1.5, "h2": float("nan")})
    with open(cache.path("id"), "a") as fh:
        fh.write('{"h": "h3", "s"')  # a crash mid-write
    loaded = cache.load("id")
    assert loaded["h1"] == 1.5 and math.isnan(loaded["h2"]) and "h3" not in loaded


def _custom_rows(n=24):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        words = int(rng.integers(1, 12))
        rows.append(
            {
                "instruction": f"question {i % 6} variant {i}",
                "response": " ".join(["word"] * words),
                "quality": words + float(rng.normal(0, 2)),
                "model": f"m{i % 3}",
                "question_id": i % 6,
            }
        )
    return rows


def test_custom_dataset_end_to_end_without_shared_data(tmp_path):
    scorer = CountingScorer()
    ds = Dataset.from_list(_custom_rows())
    metrics = ev.evaluate_judges([scorer], [ds], tmp_path, baselines=["length", "random"], bootstrap_resamples=50)
    res = metrics["eval_sets"]["custom"]["scorers"]
    assert res["words"]["correlation"]["spearman"] > 0.5
    assert res["words"]["ranking"]["all"]["n_models"] == 3
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "report.md").exists()
    json.loads((tmp_path / "metrics.json").read_text())  # strict JSON: NaN written as null
    assert scorer.calls == 24
    ev.evaluate_judges([scorer], [ds], tmp_path, baselines=["length"], bootstrap_resamples=50)
    assert scorer.calls == 24  # every score came from the cache


def test_bad_eval_set_inputs(tmp_path):
    with pytest.raises(SelfJInputError, match="unknown eval set"):
        load_eval_set("no_such_set")
    no_quality = Dataset.from_list([{"instruction": "i", "response": "r"}])
    with pytest.raises(SelfJInputError, match="quality column"):
        load_eval_set(no_quality)
    with pytest.raises(SelfJInputError, match="missing column"):
        load_eval_set(no_quality, quality_column="stars")
    empty = Dataset.from_dict({"instruction": [], "response": [], "quality": []})
    with pytest.raises(SelfJInputError, match="empty"):
        load_eval_set(empty)
    with pytest.raises(SelfJInputError, match="must hold numbers"):
        load_eval_set(Dataset.from_list([{"instruction": "i", "response": "r", "quality": "good"}]))
    with pytest.raises(SelfJInputError, match="instruction"):
        load_eval_set(Dataset.from_list([{"instruction": None, "response": "r", "quality": 1.0}]))
    with pytest.raises(SelfJInputError, match="nothing to evaluate"):
        ev.evaluate_judges([], ["alpaca_eval"], tmp_path)


def test_a_set_without_public_files_and_no_data_folder_is_a_one_line_error(no_data_folder):
    """A set that reads the data folder and declares no public source: with the folder hidden the way a user's
    machine lacks it, loading names the folder and the two ways to point at it."""
    from selfj_trl.eval_sets import registry
    from selfj_trl.eval_sets.base import data_file, data_root

    def load(data_dir=None):
        data_file(data_root(data_dir), "alpaca_eval_gpt4/instructions.jsonl")
        raise AssertionError("data_root found a folder that was hidden")

    registry.register("folder_only_set")(load)
    try:
        with pytest.raises(SelfJInputError, match="held-out data folder") as err:
            load_eval_set("folder_only_set")
    finally:
        registry.unregister("folder_only_set")
    assert "\n" not in str(err.value) and "SELFJ_SHARED_DATA" in str(err.value) and "--data_dir" in str(err.value)


def test_the_data_folder_variable_replaces_the_search(no_data_folder, monkeypatch):
    assert shared_data_dir() is None  # an empty folder named by SELFJ_SHARED_DATA hides ../shared/data
    mine = no_data_folder / "mine"
    (mine / "alpaca_eval_gpt4").mkdir(parents=True)
    (mine / "alpaca_eval_gpt4" / "instructions.jsonl").write_text("{}\n")
    monkeypatch.setenv("SELFJ_SHARED_DATA", str(mine))
    assert shared_data_dir() == mine.resolve()


def test_cli_reports_bad_input_without_traceback(capsys, tmp_path):
    from selfj_trl.cli import main

    code = main(["evaluate", "--baselines", "length", "--eval_sets", "nope", "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown eval set" in err and "Traceback" not in err


def test_self_eval_noref_baseline_with_a_tiny_policy(tiny_policy):
    (entry,) = ev.resolve_scorers([f"self_eval_noref:{tiny_policy}"])
    scores = entry.scorer.score(["what is two plus two ?"] * 2, ["the answer is four", "bad"], batch_size=2)
    assert len(scores) == 2 and all(0.0 <= s <= 9.0 for s in scores)


def test_teacher_view_spec_scores_the_judge_with_the_reference_shown(tiny_judge, tmp_path):
    from selfj_trl.judge import SelfJudge

    student, teacher = ev.resolve_scorers([tiny_judge, f"{tiny_judge}:teacher"])
    assert teacher.name == student.name + ":teacher" and teacher.needs_reference and not student.needs_reference
    assert teacher.cache_id != student.cache_id and teacher.scorer.judge is student.scorer  # loaded once
    judge = SelfJudge.from_pretrained(tiny_judge)
    rows = [
        {
            "instruction": f"question {i}",
            "response": f"answer number {i} " * (i + 1),
            "reference": None if i == 0 else f"the reference answer {i}",
            "quality": float(i),
        }
        for i in range(6)
    ]
    metrics = ev.evaluate_judges(
        [tiny_judge, f"{tiny_judge}:teacher"], [Dataset.from_list(rows)], tmp_path, bootstrap_resamples=0, plots=False
    )
    res = metrics["eval_sets"]["custom"]["scorers"]
    assert res[teacher.name]["n_scored"] == 5 and res[teacher.name]["scoring"]["no_reference"] == 1
    assert res[student.name]["n_scored"] == 6
    expected = judge.score(
        [r["instruction"] for r in rows[1:]],
        [r["response"] for r in rows[1:]],
        references=[r["reference"] for r in rows[1:]],
    )
    got = teacher.scorer.score(
        [r["instruction"] for r in rows[1:]],
        [r["response"] for r in rows[1:]],
        references=[r["reference"] for r in rows[1:]],
    )
    assert got == pytest.approx(expected)
    plain = judge.score([r["instruction"] for r in rows[1:]], [r["response"] for r in rows[1:]])
    assert got != pytest.approx(plain)  # the reference is really shown
    with pytest.raises(SelfJInputError, match="needs `references`"):
        teacher.scorer.score(["q"], ["a"])


# ---------------------------------------------------------------------------------------------------------------
# The real held-out data
# ---------------------------------------------------------------------------------------------------------------
@needs_shared_data
def test_alpaca_loader_slices_by_instruction_and_labels_the_train_split():
    test = load_alpaca_eval(split="test", max_instructions=2, seed=0)
    assert len(set(test.groups)) == 2 and len(test) == 34  # 17 models x 2 instructions
    assert set(test.group_references) == set(test.groups) and test.leaderboard["NullModel"] > 50
    assert set(test.other_leaderboards["length_controlled_win_rate"]) == set(test.leaderboard)
    train = load_alpaca_eval(split="train", max_instructions=1)
    assert any("NOT held out" in n for n in train.notes)
    # the test set is calibrated on train-split answers (a slice as large as the test slice) and picks among the
    # 15 honest models; the train split itself has no calibration split
    assert test.calibration.split == "train" and not set(test.calibration.groups) & set(test.groups)
    assert len(set(test.calibration.groups)) == 2
    assert len(test.pick_models) == 15 and not set(test.pick_models) & set(ADVERSARIAL_MODELS)
    assert train.calibration is None and any("no separate calibration" in n for n in train.notes)
    with pytest.raises(SelfJInputError, match="split"):
        load_alpaca_eval(split="validation")


@needs_shared_data
def test_alpaca_train_rows_never_hold_a_test_instruction():
    rows = load_alpaca_train_rows(n_instructions=3, seed=0)
    assert {r["split"] for r in rows} == {"train"} and len({r["id"] for r in rows}) == 3
    assert {"id", "instruction", "reference", "model", "response", "gpt4_win_prob", "subset"} <= set(rows[0])
    assert set(ADVERSARIAL_MODELS) <= {r["model"] for r in rows}
    larger = load_alpaca_train_rows(n_instructions=5, seed=0)
    assert [r["id"] for r in rows] == [r["id"] for r in larger][: len(rows)]  # a larger slice extends a smaller


@needs_shared_data
def test_harness_end_to_end_on_real_alpaca_slice(tiny_judge, tmp_path):
    from PIL import Image

    out = tmp_path / "eval"
    argv = [
        "--judges",
        tiny_judge,
        "--baselines",
        "length",
        "random",
        "--eval_sets",
        "alpaca_eval",
        "--output_dir",
        str(out),
        "--max_instructions",
        "2",
        "--bootstrap_resamples",
        "50",
        "--batch_size",
        "8",
    ]
    assert ev.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    alpaca = metrics["eval_sets"]["alpaca_eval"]
    assert alpaca["n"] == 34 and set(alpaca["scorers"]) == {_name(tiny_judge), "length", "random"}
    judge = alpaca["scorers"][_name(tiny_judge)]
    # quality metrics on the 30 honest answers; the 4 adversarial answers count in all-row figures and ranking
    assert judge["n_scored"] == 30 and judge["all_rows"]["n_scored"] == 34 and judge["scoring"]["scored"] > 0
    assert judge["vs_reference"]["n"] > 0 and set(judge["ranking"]["gaming"]) == {"NullModel", "gpt4_gamed"}
    # 100% coverage keeps every answer, whatever the order: the judge's curve ends where the oracle's does
    assert judge["selective"]["curve"][-1] == pytest.approx(alpaca["orderings"]["oracle"]["curve"][-1])
    report = (out / "report.md").read_text()
    assert "Gaming check" in report and "`length`" in report and "`random`" in report
    for png in ("coverage_alpaca_eval.png", "ranking_alpaca_eval.png"):
        with Image.open(out / png) as img:
            img.verify()
            assert img.size[0] > 100
    # second run: every score from the cache
    assert ev.main(argv) == 0
    again = json.loads((out / "metrics.json").read_text())["eval_sets"]["alpaca_eval"]["scorers"]
    assert all(s["scoring"]["scored"] == 0 for s in again.values())
    assert again[_name(tiny_judge)]["correlation"] == judge["correlation"]


def _name(path: str) -> str:
    from pathlib import Path

    return Path(path).name


@needs_shared_data
def test_all_builtin_sets_load_and_score_with_cheap_baselines(tmp_path):
    metrics = ev.evaluate_judges(
        ["length"],
        ["mtbench", "prometheus", "human_pairwise"],
        tmp_path,
        max_instructions=5,
        bootstrap_resamples=0,
        plots=False,
    )
    sets = metrics["eval_sets"]
    assert sets["mtbench"]["scorers"]["length"]["within_question"]["n_groups"] >= 1
    assert sets["prometheus"]["scorers"]["length"]["n_scored"] > 0
    pairs = sets["human_pairwise"]
    assert pairs["scorers"]["length"]["accuracy"]["all"] == pairs["longer_answer_wins"]["all"]


@pytest.mark.slow
def test_cosine_baseline_with_minilm(tmp_path):
    (entry,) = ev.resolve_scorers(["cosine"])
    scores = entry.scorer.score(
        ["q", "q", "q"],
        ["the sea is blue", "two plus two is four", "x"],
        references=["the ocean is blue", "the ocean is blue", None],
    )
    assert scores[0] > scores[1] and math.isnan(scores[2])


def test_cosine_baseline_skips_rows_without_reference(tiny_embedder, tmp_path):
    rows = [
        {
            "instruction": f"question {i}",
            "response": "the sea is blue" if i % 2 else "two plus two",
            "reference": None if i % 3 == 0 else "the sea is blue",
            "quality": float(i % 2),
        }
        for i in range(12)
    ]
    spec = f"cosine:{tiny_embedder}"
    metrics = ev.evaluate_judges([spec], [Dataset.from_list(rows)], tmp_path, bootstrap_resamples=0, plots=False)
    res = metrics["eval_sets"]["custom"]["scorers"][spec]
    assert res["n_scored"] == 8 and res["n_unscored"] == 4 and res["scoring"]["no_reference"] == 4
    assert res["correlation"]["pearson"] == pytest.approx(1.0)  # identical to the reference <=> quality 1
    assert "needs the reference" in (tmp_path / "report.md").read_text()
    (entry,) = ev.resolve_scorers([spec])
    assert entry.scorer.score(["q"], ["the sea is blue"], references=["the sea is blue"])[0] == pytest.approx(1.0)


def test_judge_score_cache_is_keyed_by_length_and_cutting_rule(tmp_path, monkeypatch):
    """Scores cached for a judge must not be reused once it reads a different length or views cut another way."""
    from types import SimpleNamespace

    from selfj_trl.evaluation import scorers

    (tmp_path / "config.json").write_text("{}")
    at_40 = scorers.judge_cache_id("judge", str(tmp_path), SimpleNamespace(max_length=40))
    assert at_40 == scorers.judge_cache_id("judge", str(tmp_path), SimpleNamespace(max_length=40))
    assert at_40 != scorers.judge_cache_id("judge", str(tmp_path), SimpleNamespace(max_length=48))
    monkeypatch.setattr(scorers, "VIEW_RULE_VERSION", scorers.VIEW_RULE_VERSION + 1)
    assert at_40 != scorers.judge_cache_id("judge", str(tmp_path), SimpleNamespace(max_length=40))


# ---------------------------------------------------------------------------------------------------------------
# The judge-agreement `evaluate` module shipped in the package: loaded offline, the harness's own numbers
# ---------------------------------------------------------------------------------------------------------------
def _same(a, b) -> bool:
    """Exact equality of nested results, NaN equal to NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _agreement_data(n: int = 300, seed: int = 1):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=n), 1)  # rounded: many ties
    quality = scores + rng.normal(size=n)
    scores[[3, 40]], quality[[7, 41]] = math.nan, math.inf
    groups = [f"q{i // 6}" for i in range(n)]
    return scores, quality, groups


def test_judge_agreement_module_loads_offline_with_evaluate_and_gives_the_harness_functions_numbers(tmp_path):
    """`evaluate.load(<path in the package>)` with the Hub unreachable, in a fresh process (as a user runs it)."""
    import os
    import subprocess
    import sys

    script = """
import json, math, evaluate
from selfj_trl.evaluation.metrics import JUDGE_AGREEMENT
out = {}
for config in ("correlation", "within_group", "pairwise", "selective"):
    metric = evaluate.load(JUDGE_AGREEMENT, config)
    inputs = {"predictions": [0.1, 0.9, 0.4, 0.7, 0.2, 0.3], "references": [1.0, 8.0, 4.0, 5.0, 2.0, 3.0]}
    if config == "within_group":
        inputs["groups"] = ["a", "a", "a", "b", "b", "b"]
    if config == "pairwise":
        inputs = {"predictions": [0.9, 0.1, 0.5], "predictions_b": [0.2, 0.3, 0.5], "references": [1, 1, 0]}
    out[config] = metric.compute(**inputs)
print(json.dumps(out))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "HF_EVALUATE_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "HF_ENDPOINT": "http://127.0.0.1:9",
            "HF_HOME": str(tmp_path / "hf_home"),
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["correlation"]["spearman"] == pytest.approx(1.0) and out["correlation"]["n"] == 6
    assert out["within_group"]["spearman"] == 1.0 and out["within_group"]["pearson"] > 0.9
    assert out["within_group"]["n_groups"] == 2
    assert out["pairwise"] == {"accuracy": 0.5, "n": 3, "ties": 1}  # right, wrong, tie (half)
    assert out["selective"]["coverages"][0] == 0.1 and out["selective"]["curve"][-1] == pytest.approx(23 / 6)


def test_judge_agreement_module_equals_the_functions_it_calls_exactly():
    s, q, groups = _agreement_data()
    corr = ev.metrics.judge_agreement("correlation", predictions=s, references=q)
    assert _same(corr, ev.correlations(s, q)) and corr["n"] == 296
    assert _same(
        ev.metrics.judge_agreement("within_group", predictions=s, references=q, groups=groups),
        ev.within_group_correlations(s, q, groups),
    )
    wins = q > np.roll(q, 1)
    assert _same(
        ev.metrics.judge_agreement("pairwise", predictions=s, predictions_b=np.roll(s, 1), references=wins),
        ev.preference_accuracy(s, np.roll(s, 1), wins),
    )
    tiebreak = np.random.default_rng(5).random(len(s))
    curve = ev.selective_curve(s, q, ev.COVERAGES, tiebreak)
    assert _same(
        ev.metrics.judge_agreement("selective", predictions=s, references=q, tiebreak=tiebreak),
        {"coverages": list(ev.COVERAGES), "curve": curve.tolist(), **ev.curve_summary(curve)},
    )
    with pytest.raises(ValueError, match="unknown configuration"):
        ev.metrics.load_judge_agreement("spearman")


def test_harness_figures_through_the_evaluate_module_are_those_of_the_functions():
    """The point estimates the harness reports (now computed through the `evaluate` module) equal what the metric
    functions give on the same rows: the same numbers as before the module existed."""
    from selfj_trl.evaluation.set_metrics import honest_mask

    s, q, groups = _agreement_data()
    models = [("a", "b", "c", "x", "d", "e")[i % 6] for i in range(len(s))]
    ds = PointwiseSet(
        name="t",
        title="t",
        quality_name="q",
        instructions=["i"] * len(s),
        responses=["r"] * len(s),
        references=[None] * len(s),
        quality=q,
        groups=groups,
        models=models,
        subsets=[None] * len(s),
        adversarial=("x",),
    )
    ev.metrics.load_judge_agreement.cache_clear()
    out = ev.evaluate_pointwise(ds, s, None, n_resamples=0, seed=3)
    assert ev.metrics.load_judge_agreement.cache_info().currsize == 3  # correlation, within_group, selective
    honest = honest_mask(ds)
    tiebreak = np.random.default_rng(3).random(len(q))
    hs, hq, hg = s[honest], q[honest], [g for g, k in zip(groups, honest, strict=True) if k]
    assert _same(out["correlation"], ev.correlations(hs, hq))
    assert _same(out["within_question"], ev.within_group_correlations(hs, hq, hg))
    curve = ev.selective_curve(hs, hq, ev.COVERAGES, tiebreak[honest])
    assert _same(
        {k: out["selective"][k] for k in ("coverages", "curve", "auc", "quality_at_50", "quality_at_80")},
        {"coverages": list(ev.COVERAGES), "curve": curve.tolist(), **ev.curve_summary(curve)},
    )
    assert _same(out["all_rows"]["correlation"], ev.correlations(s, q))

    labels = np.where(q > np.roll(q, 1), "A", "B")
    labels[::7] = "tie"
    pairs = PairwiseSet(
        name="p",
        title="p",
        instructions=["i"] * len(s),
        responses_a=["a"] * len(s),
        responses_b=["b"] * len(s),
        labels=labels.tolist(),
        subsets=["s1", "s2"] * (len(s) // 2),
        references=[None] * len(s),
    )
    acc = ev.evaluate_pairwise(pairs, s, np.roll(s, 1), n_resamples=0)["accuracy"]
    decided = labels != "tie"
    assert _same(acc["all"], ev.preference_accuracy(s[decided], np.roll(s, 1)[decided], labels[decided] == "A"))


# ---------------------------------------------------------------------------------------------------------------
# A judge minus length, on the same resampled instructions
# ---------------------------------------------------------------------------------------------------------------
def _graded_set(n_groups: int = 60, k: int = 6, seed: int = 0) -> PointwiseSet:
    rng = np.random.default_rng(seed)
    n = n_groups * k
    return PointwiseSet(
        name="graded",
        title="graded",
        quality_name="q",
        instructions=[f"i{i // k}" for i in range(n)],
        responses=[f"r{i}" for i in range(n)],
        references=[None] * n,
        quality=rng.normal(size=n),
        groups=[str(i // k) for i in range(n)],
        models=[f"m{i % k}" for i in range(n)],
        subsets=[None] * n,
    )


def test_paired_figures_are_the_differences_of_the_reported_ones_with_a_shared_resample_interval():
    ds = _graded_set()
    rng = np.random.default_rng(1)
    other = ds.quality + rng.normal(scale=1.5, size=len(ds))  # a baseline with some signal
    judge = other + rng.normal(scale=0.3, size=len(ds))  # nearly the same scorer: errors shared with the baseline
    paired = ev.paired_pointwise(ds, judge, other, n_resamples=300)
    mine, theirs = (ev.evaluate_pointwise(ds, s, None, n_resamples=300) for s in (judge, other))
    for key, get in (
        ("spearman", lambda m: m["correlation"]["spearman"]),
        ("within_spearman", lambda m: m["within_question"]["spearman"]),
        ("pick", lambda m: m["best_of_k"]["pick"]),
    ):
        assert paired[key]["difference"] == pytest.approx(get(mine) - get(theirs)), key
    # Separate intervals overlap almost entirely; the paired one is far narrower (the reason it exists).
    low, high = paired["spearman"]["ci"]
    assert high - low < 0.5 * (mine["ci"]["spearman"][1] - mine["ci"]["spearman"][0])
    against_itself = ev.paired_pointwise(ds, judge, judge, n_resamples=50)
    assert all(f["difference"] == 0 and f["ci"] == [0.0, 0.0] for f in against_itself.values())
    truth = ev.paired_pointwise(ds, ds.quality, other, n_resamples=300)
    assert all(f["ci"][0] > 0 for f in truth.values())  # the grader's own labels beat any baseline


def test_paired_pairwise_accuracy_per_subset_total():
    ds = PairwiseSet(
        name="p",
        title="p",
        instructions=["i"] * 6,
        responses_a=["a"] * 6,
        responses_b=["b"] * 6,
        labels=["A", "B", "A", "B", "tie", "A"],
        subsets=["natural", "natural", "llmbar_adv_neighbor", "llmbar_adv_manual", "natural", "natural"],
        references=[None] * 6,
        subset_totals={"llmbar_adversarial (all 4)": LLMBAR_ADVERSARIAL},
    )
    a_wins = np.array([1.0, 0, 1, 0, 0, 1])
    right, wrong = (a_wins, 1 - a_wins), (1 - a_wins, a_wins)
    out = ev.paired_pairwise(ds, right, wrong, n_resamples=50)
    assert set(out) == {"all", "llmbar_adversarial (all 4)"}
    assert out["all"] == {"difference": 1.0, "ci": [1.0, 1.0]}  # the tie label is left out, not counted
    assert ev.paired_pairwise(ds, right, right, n_resamples=50)["all"]["difference"] == 0


def test_the_harness_compares_every_judge_with_length_when_both_are_evaluated(tmp_path):
    ds = Dataset.from_list(_custom_rows(48))
    metrics = ev.evaluate_judges(
        [CountingScorer()], [ds], tmp_path / "a", baselines=["length", "random"], bootstrap_resamples=50, plots=False
    )
    paired = metrics["eval_sets"]["custom"]["paired"]
    assert paired["against"] == "length" and set(paired["judges"]) == {"words"}  # baselines are not compared
    assert set(paired["judges"]["words"]) >= {"spearman", "within_spearman"}
    report = (tmp_path / "a" / "report.md").read_text()
    assert "Each judge minus `length`" in report and "| `words` | " in report.split("Each judge minus")[1]
    assert "words - length" in ev.summary(metrics)
    alone = ev.evaluate_judges(
        [CountingScorer()], [ds], tmp_path / "b", baselines=["random"], bootstrap_resamples=50, plots=False
    )
    assert alone["eval_sets"]["custom"]["paired"] == {}
    assert "Each judge minus" not in (tmp_path / "b" / "report.md").read_text()


def test_paired_figures_leave_out_what_either_scorer_left_unscored():
    """A teacher view scores only questions with a reference; length scores all: the difference is taken on the
    questions both scored, not on two different sets of questions."""
    ds = _graded_set(n_groups=30)
    odd = np.array([int(g) % 2 == 1 for g in ds.groups])
    teacher = np.where(odd, np.nan, ds.quality)  # half the questions have no reference
    other = np.where(odd, ds.quality, -ds.quality)  # wrong where the teacher scores, right where it cannot
    paired = ev.paired_pointwise(ds, teacher, other, n_resamples=50)
    assert paired["within_spearman"]["difference"] == pytest.approx(2.0)
    assert paired["pick"]["difference"] == pytest.approx(
        ev.best_of_k(ds, teacher)["pick"] - ev.best_of_k(ds, np.where(np.isnan(teacher), np.nan, other))["pick"]
    )


def test_the_comparison_uses_the_scores_each_scorer_was_evaluated_with_reading_each_cache_once(tmp_path, monkeypatch):
    ds = Dataset.from_list(_custom_rows(48))
    loads: list[str] = []
    real_load = ev.ScoreCache.load
    monkeypatch.setattr(
        ev.ScoreCache, "load", lambda self, cache_id: loads.append(cache_id) or real_load(self, cache_id)
    )
    metrics = ev.evaluate_judges(
        [CountingScorer()], [ds], tmp_path, baselines=["length"], bootstrap_resamples=50, plots=False
    )
    assert sorted(loads) == sorted(set(loads)) and len(loads) == 2  # one read of each scorer's cache per set
    custom = load_eval_set(ds)
    scored = [
        ev.score_and_evaluate(custom, e, ev.ScoreCache(tmp_path / "again"), 8, BootstrapOptions(50))
        for e in ev.resolve_scorers([CountingScorer(), "length"])
    ]
    assert scored[0].metrics == metrics["eval_sets"]["custom"]["scorers"]["words"] | {
        "scoring": scored[0].metrics["scoring"]
    }
    expected = ev.paired_pointwise(custom, scored[0].scores, scored[1].scores, n_resamples=50)
    assert metrics["eval_sets"]["custom"]["paired"]["judges"]["words"] == expected
