"""Argo-Rollouts-style threshold checks: conditions, measurement phases, limits, run status."""

from __future__ import annotations

import math
import re

import pytest

from aicd.delivery.thresholds import (
    ERROR,
    FAILED,
    INCONCLUSIVE,
    PENDING,
    RUNNING,
    SUCCESSFUL,
    Measurement,
    ThresholdSpec,
    assess_metric,
    assess_run,
    measurement_phase,
    parse_condition,
    parse_duration,
    threshold_spec,
)
from aicd.errors import ConfigError


def _m(*values: float | None) -> list[Measurement]:
    return [Measurement(v, "" if v is not None else "query failed") for v in values]


def test_conditions() -> None:
    at_least = parse_condition("result >= 0.99")
    assert at_least(0.99) and not at_least(0.98) and not at_least(math.nan)
    assert parse_condition("result[0] < 500")(499.9)
    band = parse_condition("result > 0 && result <= 1")
    assert band(0.5) and not band(0) and not band(1.5)
    either = parse_condition("result < 10 or result > 20 and result < 30")
    assert either(5) and either(25) and not either(15) and not either(35)
    assert parse_condition("0.95 <= result")(0.96)
    assert parse_condition("result >= 99%")(0.995)
    for bad, message in [
        ("result >>= 1", "cannot read the condition"),
        ("result >= ", "expected a comparison"),
        ("1 < 2", "never looks at 'result'"),
        ("result > 1 result < 2", "join comparisons with && or ||"),
        ("len(result) > 0", "cannot read the condition"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_condition(bad, "analysis.thresholds[0].success_condition")


def _spec(**kw: object) -> ThresholdSpec:
    conditions = {}
    for key in ("success_condition", "failure_condition"):
        if key in kw:
            conditions[key] = parse_condition(str(kw.pop(key)))
    return ThresholdSpec(name="success_rate", **conditions, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("success", "failure", "value", "phase"),
    [
        ("result >= 0.99", None, 0.995, SUCCESSFUL),
        ("result >= 0.99", None, 0.98, FAILED),  # only success: not met is a failure
        (None, "result < 0.9", 0.95, SUCCESSFUL),  # only failure: not met is a success
        (None, "result < 0.9", 0.85, FAILED),
        ("result >= 0.99", "result < 0.9", 0.995, SUCCESSFUL),
        ("result >= 0.99", "result < 0.9", 0.85, FAILED),
        ("result >= 0.99", "result < 0.9", 0.95, INCONCLUSIVE),  # neither
        ("result >= 0.99", None, math.nan, FAILED),  # 0/0: NaN compares false
    ],
)
def test_measurement_phase_as_argo(
    success: str | None, failure: str | None, value: float, phase: str
) -> None:
    kw: dict[str, object] = {}
    if success:
        kw["success_condition"] = success
    if failure:
        kw["failure_condition"] = failure
    assert measurement_phase(_spec(**kw), Measurement(value)).phase == phase


def test_no_value_is_an_error() -> None:
    verdict = measurement_phase(_spec(success_condition="result > 0"), Measurement(None, "no requests"))
    assert verdict.phase == ERROR and verdict.reason == "no requests"


def test_failure_limit() -> None:
    spec = _spec(success_condition="result >= 0.99", failure_limit=1, count=5)
    one = assess_metric(spec, _m(0.995, 0.9, 0.995))
    assert one.phase == RUNNING and one.failed == 1
    two = assess_metric(spec, _m(0.995, 0.9, 0.995, 0.8, 0.999))
    assert two.phase == FAILED and two.failed == 2 and len(two.measurements) == 4  # stops at the 2nd failure
    assert "2 failed measurements, more than failure_limit 1" in two.reason
    assert "0.8 misses the success condition 'result >= 0.99'" in two.reason
    strict = assess_metric(_spec(success_condition="result >= 0.99"), _m(0.9))
    assert strict.phase == FAILED  # failure_limit 0 by default


def test_count_reached_is_successful() -> None:
    spec = _spec(success_condition="result < 500", count=3, failure_limit=1)
    done = assess_metric(spec, _m(120, 700, 130))
    assert done.phase == SUCCESSFUL and done.count == 3 and done.failed == 1


def test_consecutive_errors_and_inconclusive() -> None:
    spec = _spec(success_condition="result >= 0.99", consecutive_error_limit=2, count=10)
    assert assess_metric(spec, _m(None, None, 0.995, None, None)).phase == RUNNING  # reset by a value
    errored = assess_metric(spec, _m(0.995, None, None, None))
    assert errored.phase == ERROR and errored.consecutive_errors == 3 and errored.errors == 3
    unsure = _spec(success_condition="result >= 0.99", failure_condition="result < 0.9", inconclusive_limit=1)
    assert assess_metric(unsure, _m(0.95)).phase == RUNNING
    assert assess_metric(unsure, _m(0.95, 0.96)).phase == INCONCLUSIVE


def test_pending_running_and_terminating() -> None:
    spec = _spec(success_condition="result >= 0.99")
    assert assess_metric(spec, []).phase == PENDING
    assert assess_metric(spec, _m(0.995)).phase == RUNNING  # no count: until stopped
    assert assess_metric(spec, _m(0.995), terminating=True).phase == SUCCESSFUL
    assert assess_metric(spec, [], terminating=True).phase == SUCCESSFUL


def test_run_takes_the_worst_completed_phase() -> None:
    rate = _spec(success_condition="result >= 0.99", count=2)
    latency = ThresholdSpec("p99_ms", success_condition=parse_condition("result <= 300"), count=2)
    running = assess_run([rate, latency], {"success_rate": _m(0.995, 0.999), "p99_ms": _m(120)})
    assert running.phase == RUNNING and running.reason == "waiting for p99_ms"
    ok = assess_run([rate, latency], {"success_rate": _m(0.995, 0.999), "p99_ms": _m(120, 130)})
    assert ok.phase == SUCCESSFUL and ok.reason == "every threshold check passed"
    failed = assess_run([rate, latency], {"success_rate": _m(0.995), "p99_ms": _m(450)})
    assert failed.phase == FAILED  # a failed metric ends the run; the other one is stopped
    assert failed.reason.startswith("p99_ms: 1 failed measurements")
    assert [m.phase for m in failed.metrics] == [SUCCESSFUL, FAILED]
    assert assess_run([], {}).phase == SUCCESSFUL


def test_spec_from_config() -> None:
    spec = threshold_spec(
        {
            "name": "p99",
            "interval": "30s",
            "initial_delay": "1m",
            "count": 4,
            "success_condition": "result <= 250",
            "failure_limit": 1,
        },
        "aicd.yml:5:7: analysis.thresholds[0]",
    )
    assert (spec.interval, spec.initial_delay, spec.count, spec.failure_limit) == (30.0, 60.0, 4, 1)
    assert spec.consecutive_error_limit == 4 and spec.success_condition is not None
    assert (
        parse_duration("500ms", "x") == 0.5
        and parse_duration(2, "x") == 2.0
        and parse_duration("1h", "x") == 3600
    )
    for item, message in [
        ({"name": "p99"}, "checks nothing: give success_condition or failure_condition"),
        ({"name": "p99", "succes_condition": "result > 1"}, "unknown key 'succes_condition'"),
        ({"success_condition": "result > 1"}, "'name' (the metric's name) is required"),
        ({"name": "p99", "success_condition": "result > 1", "count": 0}, "count must be 1 or more"),
        (
            {"name": "p99", "success_condition": "result > 1", "failure_limit": -1},
            "failure_limit must be a whole",
        ),
        ({"name": "p99", "success_condition": "result > 1", "interval": "soon"}, "'soon' is not a duration"),
        ({"name": "p99", "success_condition": 5}, "success_condition must be a condition"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)) as err:
            threshold_spec(item, "aicd.yml:5:7: analysis.thresholds[0]")
        assert str(err.value).startswith("aicd.yml:5:7: analysis.thresholds[0]")
