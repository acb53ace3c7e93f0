"""GitLab's human durations: `timeout`, `start_in`, `artifacts:expire_in`.

GitLab reads these with the ChronicDuration rules; the forms it documents:

- a bare number of seconds: `3600`, `"30"`, `1.5`;
- numbers with units, in any order, optionally joined by `and` or commas:
  `30 minutes`, `1h 30m`, `2 days`, `1 week and 2 days`, `3 mins 4 sec`,
  `2 hrs 20 min`, `7d`, `1.5 hours`;
- clock forms `MM:SS` and `HH:MM:SS`.

Units: s/sec/second, m/min/minute, h/hr/hour, d/day, w/wk/week,
mo/month (30 days), y/yr/year (365 days), singular or plural, any case.
`expire_in: never` is handled by the caller (it is not a duration).
"""

from __future__ import annotations

import re

_UNITS: dict[str, float] = {}
for _names, _seconds in (
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
    (("w", "wk", "wks", "week", "weeks"), 7 * 86400.0),
    (("mo", "mos", "month", "months"), 30 * 86400.0),
    (("y", "yr", "yrs", "year", "years"), 365 * 86400.0),
):
    for _name in _names:
        _UNITS[_name] = _seconds

_NUMBER = r"\d+(?:\.\d+)?|\.\d+"
_PART = re.compile(rf"\s*({_NUMBER})\s*([a-z]+)?\s*(?:,|\band\b)?", re.IGNORECASE)
_CLOCK = re.compile(r"^(\d+):(\d{1,2})(?::(\d{1,2}))?$")
_EXAMPLES = '"30 minutes", "1h 30m", "2 days", "3600"'
_MAX_TEXT = 200


class DurationError(ValueError):
    """The text is not a duration; the message says why and shows examples."""


def parse_duration(value: object) -> float:
    """Seconds in `value` (a GitLab duration string, or a number of seconds).

    Raises DurationError with a message fit to show the user.
    """
    if isinstance(value, bool) or value is None:
        raise DurationError(f"expected a duration such as {_EXAMPLES}, got {_show(value)}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise DurationError(f"a duration cannot be negative (got {value})")
        return float(value)
    if not isinstance(value, str):
        raise DurationError(f"expected a duration such as {_EXAMPLES}, got a {type(value).__name__}")
    text = value.strip()
    if not text:
        raise DurationError(f"empty duration: write one such as {_EXAMPLES}")
    if len(text) > _MAX_TEXT:
        raise DurationError(f"duration text is too long ({len(text)} characters)")
    clock = _CLOCK.match(text)
    if clock:
        a, b, c = clock.groups()
        if c is None:  # MM:SS
            return float(int(a) * 60 + int(b))
        return float(int(a) * 3600 + int(b) * 60 + int(c))
    total = 0.0
    pos = 0
    parts = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None or match.end() == pos:
            raise DurationError(f"cannot read {_show(value)} as a duration; write one such as {_EXAMPLES}")
        number, unit = match.group(1), match.group(2)
        if unit is None:
            seconds = 1.0
        else:
            unit_seconds = _UNITS.get(unit.lower())
            if unit_seconds is None:
                raise DurationError(
                    f'unknown time unit "{unit}" in {_show(value)}; use seconds, minutes, hours, days, '
                    "weeks, months or years"
                )
            seconds = unit_seconds
        total += float(number) * seconds
        parts += 1
        pos = match.end()
    if parts == 0:
        raise DurationError(f"cannot read {_show(value)} as a duration; write one such as {_EXAMPLES}")
    return total


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
