"""GitLab's human durations: `timeout`, `start_in`, `artifacts:expire_in`, `auto_stop_in`.

GitLab reads these with ChronicDuration (exceptions on); this module
follows its grammar:

- a bare number of seconds: `3600`, `"30"`, `1.5`;
- numbers with units, in any order, joined by spaces, commas, `and`,
  `with` or `plus`: `30 minutes`, `1h 30m`, `2 days`, `1 week and 2 days`,
  `3 mins 4 sec`, `2 hrs 20 min`, `7d`, `1.5 hours`;
- numbers written as words (ChronicDuration's Numerizer): `one week`,
  `two hours`, `twenty-five minutes`, `one hundred and five seconds`,
  `a day`; a unit with no number first counts once (`day` = `1 day`);
- a number with no unit after it counts seconds (`1 day 30` = a day and 30 s);
- clock forms `MM:SS`, `HH:MM:SS` (and `D:HH:MM:SS`...).

Units: s/sec/second, m/min/minute, h/hr/hour, d/dy/day, w/wk/week,
mo/month (30 days), y/yr/year (365.25 days, as ChronicDuration), singular
or plural, any case. Any other word is an error (GitLab refuses it too).
`expire_in: never` is handled by the caller (it is not a duration).
"""

from __future__ import annotations

import re

_UNITS: dict[str, float] = {}
for _names, _seconds in (
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "dy", "day", "days"), 86400.0),
    (("w", "wk", "wks", "week", "weeks"), 7 * 86400.0),
    (("mo", "mos", "month", "months"), 30 * 86400.0),
    (("y", "yr", "yrs", "year", "years"), 31_557_600.0),
):
    for _name in _names:
        _UNITS[_name] = _seconds

_SMALL = {
    word: i
    for i, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
}
_SMALL["ninteen"] = 19  # Numerizer's common misspelling
_TENS = {
    word: 10 * i
    for i, word in enumerate(
        ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], start=2
    )
}
_TENS["fourty"] = 40
_BIG = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_JOIN = {"and", "with", "plus", ","}
_ARTICLES = {"a", "an"}

_TOKEN = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+|[a-z]+|,)", re.IGNORECASE)
_CLOCK = re.compile(r"^\d+(?::\d{1,2})+$")
_EXAMPLES = '"30 minutes", "1h 30m", "two days", "3600"'
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
    compact = text.replace(" ", "")
    if _CLOCK.match(compact):
        return _clock(compact, value)
    return _words(_tokens(text, value), value)


def _clock(text: str, value: str) -> float:
    """`MM:SS`, `HH:MM:SS`, `D:HH:MM:SS`, ... (ChronicDuration reads the parts from the right)."""
    parts = [int(p) for p in text.split(":")]
    steps = (1.0, 60.0, 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0, 31_557_600.0)
    if len(parts) > len(steps):
        raise DurationError(f"cannot read {_show(value)} as a duration: too many `:` parts")
    return float(sum(part * step for part, step in zip(reversed(parts), steps, strict=False)))


def _tokens(text: str, value: str) -> list[str]:
    # "twenty-one" is "twenty one" (a hyphen between words)
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text.lower())
    out: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos:].strip() == "":
                break
            raise DurationError(f"cannot read {_show(value)} as a duration; write one such as {_EXAMPLES}")
        out.append(match.group(1))
        pos = match.end()
    return out


def _is_number_word(token: str) -> bool:
    return token in _SMALL or token in _TENS or token in _BIG


def _words(tokens: list[str], value: str) -> float:
    """ChronicDuration's reading: each number times the unit after it (seconds when none)."""
    items: list[float | str] = []  # numbers and unit names, join words dropped
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token[0].isdigit() or token[0] == ".":
            number = float(token)
            if i + 1 < len(tokens) and tokens[i + 1] in _BIG:
                # "2 hundred": the digits are the first part of a number in words
                number, i = _number_words(tokens, i + 1, start=number)
            else:
                i += 1
            items.append(number)
        elif _is_number_word(token) or (
            token in _ARTICLES and i + 1 < len(tokens) and (tokens[i + 1] in _UNITS or tokens[i + 1] in _BIG)
        ):
            number, i = _number_words(tokens, i)
            items.append(number)
        elif token in _UNITS:
            items.append(token)
            i += 1
        elif token in _JOIN:
            i += 1
        else:
            after_number = bool(items) and isinstance(items[-1], float)
            if after_number and token.isalpha():
                raise DurationError(
                    f'unknown time unit "{token}" in {_show(value)}; use seconds, minutes, hours, days, '
                    "weeks, months or years"
                )
            raise DurationError(
                f'cannot read {_show(value)} as a duration: "{token}" is not a number or a time unit; '
                f"write one such as {_EXAMPLES}"
            )
    if not items:
        raise DurationError(f"cannot read {_show(value)} as a duration; write one such as {_EXAMPLES}")
    if isinstance(items[0], str):  # "day", "minute 30 sec": a leading unit counts once
        items.insert(0, 1.0)
    total = 0.0
    for k, item in enumerate(items):
        if isinstance(item, float):
            unit = items[k + 1] if k + 1 < len(items) else None
            total += item * (_UNITS[unit] if isinstance(unit, str) else 1.0)
    return total


def _number_words(tokens: list[str], i: int, start: float | None = None) -> tuple[float, int]:
    """The number in words from tokens[i] on ("twenty one", "one hundred and five"), and the next index."""
    total = 0.0
    current = start if start is not None else 0.0
    seen_big = False
    while i < len(tokens):
        token = tokens[i]
        if token in _ARTICLES and current == 0 and total == 0:
            current = 1.0
        elif token in _SMALL:
            rest = current % 100
            if rest and not (rest >= 20 and rest % 10 == 0 and _SMALL[token] < 10):
                break  # "one two" is two numbers
            current += _SMALL[token]
        elif token in _TENS:
            if current % 100:
                break
            current += _TENS[token]
        elif token == "hundred":
            current = (current or 1.0) * 100
            seen_big = True
        elif token in _BIG:
            total += (current or 1.0) * _BIG[token]
            current = 0.0
            seen_big = True
        elif token == "and" and seen_big and i + 1 < len(tokens) and _is_number_word(tokens[i + 1]):
            pass  # "one hundred and five"
        else:
            break
        i += 1
    return total + current, i


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
