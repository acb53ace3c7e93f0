"""GitLab's human durations (timeout, start_in, expire_in)."""

from __future__ import annotations

import pytest

from aicd.pipeline.durations import DurationError, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        (3600, 3600),
        (1.5, 1.5),
        ("30", 30),
        ("30 seconds", 30),
        ("1 second", 1),
        ("42 secs", 42),
        ("10s", 10),
        ("30 minutes", 1800),
        ("1 minute", 60),
        ("5 mins", 300),
        ("5min", 300),
        ("1h 30m", 5400),
        ("1h30m", 5400),
        ("2 hrs 20 min", 8400),
        ("3 mins 4 sec", 184),
        ("1 hour", 3600),
        ("1.5 hours", 5400),
        ("2 days", 172800),
        ("7d", 604800),
        ("1 week", 604800),
        ("2 weeks", 1209600),
        ("1 week and 2 days", 777600),
        ("1 day, 2 hours", 93600),
        ("1 month", 30 * 86400),
        ("2 mos 1 day", 61 * 86400),
        ("1 year", 365.25 * 86400),  # ChronicDuration: 31557600 s
        # number words, as ChronicDuration's Numerizer reads them
        ("one week", 604800),
        ("two hours", 7200),
        ("Two Hours", 7200),
        ("1 day and 3 hours", 97200),
        ("twenty-five minutes", 1500),
        ("twenty five minutes", 1500),
        ("one hundred and five seconds", 105),
        ("a day", 86400),
        ("an hour", 3600),
        ("day", 86400),
        ("three weeks, two days", 23 * 86400),
        ("5 minutes with 30 seconds", 330),
        ("1 hour plus 1 minute", 3660),
        ("1 day 30", 86430),
        ("1:02:03:04", 93784),
        ("  10 MINUTES  ", 600),
        ("1:30", 90),
        ("1:30:00", 5400),
        ("0", 0),
    ],
)
def test_durations_gitlab_accepts(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("soon", "cannot read"),
        ("10 parsecs", 'unknown time unit "parsecs"'),
        ("ten bananas", 'unknown time unit "bananas"'),
        ("a", "is not a number or a time unit"),
        ("-5", "cannot read"),
        (-5, "cannot be negative"),
        (True, "expected a duration"),
        (None, "expected a duration"),
        ([1], "got a list"),
        ("1" * 300, "too long"),
        ("5 minutes!", "cannot read"),
    ],
)
def test_durations_rejected_with_a_reason(text: object, fragment: str) -> None:
    with pytest.raises(DurationError, match=None) as info:
        parse_duration(text)
    assert fragment in str(info.value)


def test_duration_error_is_a_value_error_with_examples() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("whenever")
    assert "30 minutes" in str(info.value)
