"""Live quality from delayed labels: the two-proportion test, error comparison, settings."""

from __future__ import annotations

import random

import pytest

from aicd.delivery.live_quality import (
    FAIL,
    NODATA,
    NUMBERS,
    PASS,
    QualityConfig,
    Side,
    compare,
    parse_quality,
    two_proportion_worse,
)
from aicd.deploy.plan import parse_environment, parse_step_text
from aicd.errors import ConfigError


def test_two_proportion_test_matches_the_textbook_formula() -> None:
    # 90/100 vs 80/100: pooled 0.85, se = sqrt(.85 * .15 * .02) = 0.0505; z = 0.1 / 0.0505 = 1.98
    z, p = two_proportion_worse(90, 100, 80, 100)
    assert z == pytest.approx(1.980, abs=1e-3)
    assert p == pytest.approx(0.0239, abs=1e-3)
    z_margin, p_margin = two_proportion_worse(90, 100, 80, 100, margin=0.05)
    assert z_margin == pytest.approx(0.990, abs=1e-3) and p_margin > p
    assert two_proportion_worse(10, 10, 10, 10) == (0.0, 0.5)
    z_all, p_all = two_proportion_worse(10, 10, 10, 10, margin=0.02)
    assert p_all == 1.0 and z_all < 0


def test_a_ten_point_drop_fails_and_equal_accuracy_passes_at_a_few_hundred_labels() -> None:
    config = QualityConfig()
    worse = compare(Side(300, 291), Side(300, 261), config)  # 97% vs 87%
    assert worse.verdict == FAIL and "live accuracy lower" in worse.reason
    assert "87.0% of 300" in worse.reason and "97.0% of 300" in worse.reason
    same = compare(Side(300, 291), Side(300, 290), config)
    assert same.verdict == PASS and "not worse" in same.reason
    few = compare(Side(10, 10), Side(10, 1), config)
    assert few.verdict == NODATA and "fewer than 30" in few.reason


def test_false_positives_stay_under_alpha_for_equal_models() -> None:
    rng = random.Random(7)
    config = QualityConfig(alpha=0.05, margin=0.0)
    runs, failed = 1000, 0
    for _ in range(runs):
        n = 200
        stable = sum(rng.random() < 0.9 for _ in range(n))
        canary = sum(rng.random() < 0.9 for _ in range(n))
        failed += compare(Side(n, stable), Side(n, canary), config).verdict == FAIL
    assert failed / runs <= 0.05 + 0.02  # alpha, with room for sampling noise over 1000 runs


def test_numeric_labels_compare_errors() -> None:
    config = QualityConfig(labels=NUMBERS, margin=0.1)
    rng = random.Random(3)
    small = [abs(rng.gauss(0, 1)) for _ in range(200)]
    large = [abs(rng.gauss(0, 2)) for _ in range(200)]

    def side(errors: list[float]) -> Side:
        return Side(
            labels=len(errors),
            numeric_labels=len(errors),
            abs_error_sum=sum(errors),
            sq_error_sum=sum(e * e for e in errors),
            abs_errors=tuple(errors),
        )

    worse = compare(side(small), side(large), config)
    assert worse.verdict == FAIL and "MAE" in worse.reason and "RMSE" in worse.reason
    assert compare(side(small), side(small), config).verdict == PASS


def test_feedback_settings_and_labels_steps_are_checked() -> None:
    plan = parse_environment(
        "prod",
        {
            "strategy": "canary",
            "steps": [{"set_weight": 50}, {"labels": 200}, {"labels": {"count": 5, "timeout": "2m"}}],
            "feedback": {"labels": "classes", "window": "30m", "margin": 0.05, "max_requests": 1000},
        },
        "aicd.yml",
    )
    assert [(s.kind, s.count, s.duration) for s in plan.steps[1:]] == [
        ("labels", 200, 600.0),
        ("labels", 5, 120.0),
    ]
    assert plan.feedback is not None
    assert plan.feedback["window"] == 1800.0 and plan.feedback["margin"] == 0.05
    assert plan.feedback["max_requests"] == 1000
    assert parse_step_text("labels=50").count == 50
    with pytest.raises(ConfigError) as bad:
        parse_environment(
            "prod",
            {
                "strategy": "canary",
                "steps": [{"labels": "many"}],
                "feedback": {"labels": "words", "alpha": 2, "windw": "1h"},
            },
            "aicd.yml",
        )
    text = str(bad.value)
    assert "labels must be a whole number" in text
    assert "'words' is not one of classes, numbers" in text
    assert "alpha must be a number between 0 and 0.5" in text
    assert "unknown key 'windw'" in text and "did you mean" in text.lower()
    _, errors = parse_quality({"margin": 3}, "feedback")
    assert errors and "accuracy points" in errors[0]
