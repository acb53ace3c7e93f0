"""`environments.<env>.slo`: parsing (every form, every error names its key) and the error-rate window."""

from __future__ import annotations

import pytest

from aicd.deploy.plan import parse_environment
from aicd.errors import ConfigError
from aicd.reliability.slo import ErrorWindow, Slo, parse_probe_interval, parse_slo


@pytest.mark.parametrize(
    ("raw", "availability"),
    [("99.5%", 0.995), ("99.5 %", 0.995), (99.5, 0.995), ("99.5", 0.995), (0.995, 0.995), (99, 0.99)],
)
def test_availability_as_percentage_or_fraction(raw: object, availability: float) -> None:
    slo = parse_slo({"availability": raw})
    assert slo.availability == pytest.approx(availability)
    assert slo.error_objective == pytest.approx(1 - availability)  # no error_rate: 1 - availability


@pytest.mark.parametrize(("raw", "rate"), [("1%", 0.01), (0.01, 0.01), ("0.5%", 0.005), (0, 0.0)])
def test_error_rate_as_percentage_or_fraction(raw: object, rate: float) -> None:
    slo = parse_slo({"error_rate": raw, "availability": "99%"})
    assert slo.error_rate == pytest.approx(rate)
    assert slo.error_objective == pytest.approx(rate)  # error_rate wins over availability


def test_defaults_and_durations() -> None:
    assert parse_slo(None) == Slo(None, None, 5.0, 60.0)
    assert parse_slo({}).error_objective is None  # only the health check applies
    slo = parse_slo({"probe_interval": "500ms", "window": "2m"})
    assert (slo.probe_interval, slo.window) == (0.5, 120.0)
    assert parse_slo(slo.to_json()) == slo  # the normalised form parses to itself
    assert parse_probe_interval("0.3s") == 0.3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"availability": "100%"},
            "environments.prod.slo.availability: '100%': an availability objective is",
        ),
        ({"availability": "high"}, "environments.prod.slo.availability: 'high' is not a number"),
        ({"availability": True}, "environments.prod.slo.availability: True is not a number"),
        ({"error_rate": 5}, "environments.prod.slo.error_rate: 5: write a fraction (0.01) or a percentage"),
        ({"error_rate": "150%"}, "environments.prod.slo.error_rate: '150%': an error-rate objective is"),
        ({"probe_interval": "fast"}, "environments.prod.slo.probe_interval: 'fast' is not a duration"),
        ({"probe_interval": "1ms"}, "environments.prod.slo.probe_interval: '1ms': probe at most every 50ms"),
        ({"window": 0}, "environments.prod.slo.window: 0: the window must be longer than 0"),
        ({"window": "5s", "probe_interval": "10s"}, "environments.prod.slo.window: 5s is shorter than"),
        (
            {"availabilty": 99},
            "environments.prod.slo: unknown key 'availabilty' (did you mean \"availability\"?)",
        ),
        (
            [99.5],
            "environments.prod.slo must be a mapping of availability, error_rate, probe_interval, window",
        ),
    ],
)
def test_errors_name_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_slo(raw, "environments.prod.slo")
    assert message in str(caught.value)


def test_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_slo({"availability": "x", "error_rate": "y", "colour": 1}, "slo")
    assert len(str(caught.value).splitlines()) == 3


def test_the_rollout_plan_validates_and_normalises_its_slo() -> None:
    plan = parse_environment("prod", {"slo": {"availability": "99.9%", "probe_interval": "1s"}}, "aicd.yml")
    assert plan.slo == {
        "availability": pytest.approx(0.999),
        "error_rate": None,
        "probe_interval": 1.0,
        "window": 60.0,
    }
    with pytest.raises(ConfigError) as caught:
        parse_environment("prod", {"strategy": "recreate", "slo": {"error_rate": "lots"}}, "aicd.yml")
    assert str(caught.value).startswith("aicd.yml: environments.prod.slo.error_rate: 'lots'")


def test_window_rate_over_the_last_window_seconds() -> None:
    window = ErrorWindow(10.0)
    assert window.add(0.0, "r1", 100, 0).requests == 0  # one sample: nothing in the window yet
    rate = window.add(5.0, "r1", 130, 3)
    assert (rate.requests, rate.errors, rate.since) == (30, 3, 0.0)
    assert rate.rate is not None and rate.rate == pytest.approx(0.1)
    # At 12 the window starts at 2: the newest sample at or before it is the one at 0 (kept).
    assert window.add(12.0, "r1", 140, 3).since == 0.0
    # At 16 it starts at 6: the sample at 5 becomes the start; the one at 0 goes.
    rate = window.add(16.0, "r1", 200, 4)
    assert (rate.requests, rate.errors, rate.since) == (70, 1, 5.0)


def test_window_needs_twenty_requests_and_starts_over() -> None:
    window = ErrorWindow(60.0)
    window.add(0.0, "r1", 0, 0)
    few = window.add(1.0, "r1", 19, 19)
    assert few.rate is None and few.errors == 19  # too few to judge
    assert window.add(2.0, "r1", 20, 19).rate == pytest.approx(0.95)
    assert window.add(3.0, "r2", 5, 0).requests == 0  # a new stable revision: from scratch
    assert window.add(4.0, "r2", 1, 0).requests == 0  # counters went down (router restarted)
    window.reset()
    assert window.add(5.0, "r2", 50, 5).requests == 0
