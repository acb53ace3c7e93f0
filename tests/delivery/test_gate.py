"""Verdict cases of the model quality gate (issue 4)."""

from __future__ import annotations

import math

import pytest

from aicd.delivery.gate import FAIL, PASS, SKIP, GateResult, Threshold, evaluate
from aicd.errors import ConfigError


def verdicts(
    thresholds: list[Threshold], metrics: dict[str, float], baseline: dict[str, float] | None = None
) -> tuple[GateResult, list[tuple[str, str, str]]]:
    result = evaluate(thresholds, metrics, baseline, source="metrics.json")
    return result, [(c.metric, c.kind, c.verdict) for c in result.checks]


def test_pass_on_values() -> None:
    result, got = verdicts([Threshold("accuracy", min=0.9, max=1.0)], {"accuracy": 0.95})
    assert result.passed
    assert got == [("accuracy", "min", PASS), ("accuracy", "max", PASS)]


def test_boundaries_are_inclusive() -> None:
    result, _ = verdicts([Threshold("accuracy", min=0.9, max=0.9)], {"accuracy": 0.9})
    assert result.passed


def test_fail_on_a_value() -> None:
    result, got = verdicts([Threshold("accuracy", min=0.9)], {"accuracy": 0.85})
    assert not result.passed
    assert got == [("accuracy", "min", FAIL)]
    assert "below the minimum 0.9" in result.failures[0].reason


def test_fail_on_absolute_regression_against_baseline() -> None:
    t = Threshold("accuracy", max_regression=0.02)
    result, got = verdicts([t], {"accuracy": 0.85}, {"accuracy": 0.9})
    assert got == [("accuracy", "max_regression", FAIL)]
    check = result.checks[0]
    assert check.baseline == 0.9 and check.change == pytest.approx(-0.05)
    assert "drop" in check.reason


def test_regression_at_the_limit_passes_despite_float_noise() -> None:
    result, _ = verdicts([Threshold("accuracy", max_regression=0.02)], {"accuracy": 0.88}, {"accuracy": 0.9})
    assert result.passed


def test_relative_regression() -> None:
    t = Threshold("accuracy", max_regression_pct=5)
    assert evaluate([t], {"accuracy": 0.96}, {"accuracy": 1.0}).passed  # 4 % worse
    assert not evaluate([t], {"accuracy": 0.94}, {"accuracy": 1.0}).passed  # 6 % worse
    assert evaluate([t], {"accuracy": 2.0}, {"accuracy": 1.0}).passed  # better


def test_relative_regression_from_zero_baseline() -> None:
    t = Threshold("errors", higher_is_better=False, max_regression_pct=10)
    assert evaluate([t], {"errors": 0.0}, {"errors": 0.0}).passed
    assert not evaluate([t], {"errors": 1.0}, {"errors": 0.0}).passed


def test_lower_is_better_metric() -> None:
    t = Threshold("log_loss", higher_is_better=False, max=0.5, max_regression=0.05)
    # a drop in loss is an improvement
    assert evaluate([t], {"log_loss": 0.1}, {"log_loss": 0.3}).passed
    result, got = verdicts([t], {"log_loss": 0.4}, {"log_loss": 0.3})
    assert got == [("log_loss", "max", PASS), ("log_loss", "max_regression", FAIL)]
    assert "rise" in result.failures[0].reason
    # the same numbers with higher-is-better would pass the change check
    up = Threshold("log_loss", max_regression=0.05)
    assert evaluate([up], {"log_loss": 0.4}, {"log_loss": 0.3}).passed


def test_missing_metric_fails_and_is_named() -> None:
    result, got = verdicts([Threshold("acuracy", min=0.9)], {"accuracy": 0.95, "f1": 0.9})
    assert got == [("acuracy", "present", FAIL)]
    reason = result.failures[0].reason
    assert '"acuracy"' in reason and 'did you mean "accuracy"' in reason and "accuracy, f1" in reason


def test_first_run_without_baseline_checks_values_only() -> None:
    t = Threshold("accuracy", min=0.9, max_regression=0.01)
    result, got = verdicts([t], {"accuracy": 0.95}, None)
    assert result.passed and not result.has_baseline
    assert got == [("accuracy", "min", PASS)]


def test_metric_absent_from_baseline_is_skipped_visibly() -> None:
    result, got = verdicts([Threshold("f1", max_regression=0.01)], {"f1": 0.9}, {"accuracy": 0.9})
    assert result.passed
    assert got == [("f1", "max_regression", SKIP)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinite_values_never_pass(bad: float) -> None:
    thresholds = [
        Threshold("a", min=0.0),
        Threshold("b", max=1.0),
        Threshold("c", max_regression=1e9),
        Threshold("d", max_regression_pct=1e9, higher_is_better=False),
    ]
    metrics = {"a": bad, "b": bad, "c": bad, "d": bad}
    result, got = verdicts(thresholds, metrics, {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5})
    assert [v for _, _, v in got] == [FAIL] * 4
    assert all("NaN" in c.reason or "infinite" in c.reason for c in result.checks)


def test_nan_baseline_fails_change_check() -> None:
    result, _ = verdicts([Threshold("a", max_regression=1.0)], {"a": 0.5}, {"a": math.nan})
    assert not result.passed
    assert "baseline" in result.failures[0].reason


@pytest.mark.parametrize("kind", ["min", "max", "max_regression", "max_regression_pct"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinite_thresholds_are_refused(kind: str, bad: float) -> None:
    with pytest.raises(ConfigError, match=f"the gate on acc: {kind} must be a finite number"):
        evaluate([Threshold("acc", **{kind: bad})], {"acc": 0.1}, {"acc": 0.9})
