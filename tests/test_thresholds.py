"""calibrate_threshold: the coverage or mean quality asked for, ties kept together, bad input named."""

from __future__ import annotations

import random

import pytest

from selfj_trl.errors import SelfJInputError
from selfj_trl.judge import calibrate_threshold as calibrate_threshold_from_judge
from selfj_trl.thresholds import calibrate_threshold


def test_judge_module_exports_the_same_function():
    assert calibrate_threshold_from_judge is calibrate_threshold


def test_calibrate_threshold_reaches_target_coverage():
    rng = random.Random(0)
    scores = [rng.gauss(0, 1) for _ in range(1000)]
    for coverage in (0.05, 0.3, 0.5, 0.9, 1.0):
        threshold = calibrate_threshold(scores, target_coverage=coverage)
        kept = sum(s >= threshold for s in scores) / len(scores)
        assert coverage <= kept < coverage + 2 / len(scores)
    tied = [1.0] * 5 + [0.0] * 5
    assert calibrate_threshold(tied, target_coverage=0.3) == 1.0  # ties at the threshold are all kept


def test_calibrate_threshold_reaches_target_quality():
    rng = random.Random(1)
    qualities = [rng.random() for _ in range(500)]
    scores = [q + rng.gauss(0, 0.2) for q in qualities]
    target = 0.7
    threshold = calibrate_threshold(scores, qualities, target_quality=target)
    kept = [q for s, q in zip(scores, qualities, strict=True) if s >= threshold]
    assert sum(kept) / len(kept) >= target
    lower = max(s for s in scores if s < threshold)  # the next lower threshold misses the target
    kept_lower = [q for s, q in zip(scores, qualities, strict=True) if s >= lower]
    assert sum(kept_lower) / len(kept_lower) < target
    assert calibrate_threshold(scores, qualities, target_quality=0.0) == min(scores)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_coverage": 0.5, "target_quality": 0.5}, "exactly one"),
        ({}, "exactly one"),
        ({"target_coverage": 0.0}, "target_coverage"),
        ({"target_coverage": 1.5}, "target_coverage"),
        ({"target_quality": 0.5}, "qualities"),
        ({"qualities": [0.1, 0.2], "target_quality": 0.9}, "no threshold"),
        ({"qualities": [0.1], "target_quality": 0.1}, "qualities"),
    ],
)
def test_calibrate_threshold_errors(kwargs, match):
    with pytest.raises(SelfJInputError, match=match):
        calibrate_threshold([0.3, 0.6], **kwargs)
    with pytest.raises(SelfJInputError, match="scores"):
        calibrate_threshold([], target_coverage=0.5)
    with pytest.raises(SelfJInputError, match=r"scores\[1\]"):
        calibrate_threshold([0.1, float("nan")], target_coverage=0.5)
