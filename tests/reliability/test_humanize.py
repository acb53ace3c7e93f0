"""Human forms of durations, percentages and rates."""

from __future__ import annotations

import pytest

from aicd.reliability import format_duration, format_percent, format_rate


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (45.4, "45s"),
        (59.6, "1m 00s"),
        (725, "12m 05s"),
        (2 * 3600 + 5 * 60 + 20, "2h 05m"),
        (3599.7, "1h 00m"),
        (23 * 3600 + 59 * 60 + 40, "1.0 d"),  # rounds to 24 h 00 m: shown in days
        (3.2 * 86400, "3.2 d"),
        (-2 * 3600, "-2h 00m"),  # an overspent error budget
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_lower_bound_and_percentages() -> None:
    assert format_duration(30 * 86400, lower_bound=True) == "≥ 30.0 d"
    assert format_percent(0.995) == "99.50%"
    assert format_percent(0.99512, digits=3) == "99.512%"
    assert format_percent(None) == "-"
    assert format_rate(3.0) == "3.00 deploys/day"
    assert format_rate(1064.27) == "1064 deploys/day"
    assert format_rate(2 / 7) == "2.00 deploys/week"
    assert format_rate(0) == "0.00 deploys/day"
    assert format_rate(None) == "-"
