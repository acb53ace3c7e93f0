"""The observed period of an environment and the interval arithmetic on it.

A window asked for is `[since, until)`; what is observed of it starts no
earlier than the environment's first deployment: before that the service
did not exist, so it was neither up nor down (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aicd.errors import ConfigError

Interval = tuple[float, float]


@dataclass(frozen=True)
class Window:
    """`[start, until)` is observed; `since` is what was asked (None: all time)."""

    since: float | None
    until: float
    start: float  # max(since, service start), never after until; == until when nothing is observed

    @property
    def period_s(self) -> float:
        return self.until - self.start

    @property
    def empty(self) -> bool:
        return self.period_s <= 0

    def contains(self, at: float) -> bool:
        return self.start <= at < self.until

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "start": self.start, "observed_s": self.period_s}


def observe(*, since: float | None, until: float, service_start: float | None) -> Window:
    """The observed part of `[since, until)` for a service that exists from `service_start`.

    `service_start` None (never deployed) observes nothing: the window is empty.
    """
    if since is not None and since > until:
        raise ConfigError(
            f"the window starts after it ends (since {since:.0f} > until {until:.0f}); swap the two times"
        )
    if service_start is None:
        return Window(since=since, until=until, start=until)
    start = service_start if since is None else max(since, service_start)
    return Window(since=since, until=until, start=min(start, until))


def clip(interval: Interval, window: Window) -> Interval | None:
    """`interval` cut to the window, or None when nothing of it is inside."""
    begin, end = max(interval[0], window.start), min(interval[1], window.until)
    return (begin, end) if end > begin else None


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of `intervals` as disjoint, sorted intervals.

    Intervals that overlap or touch (one ends where the next begins) become one.
    """
    merged: list[list[float]] = []
    for begin, end in sorted(intervals):
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    return [(begin, end) for begin, end in merged]


def union_length(intervals: Iterable[Interval]) -> float:
    """Total length covered by `intervals`, overlaps counted once."""
    return sum(end - begin for begin, end in merge(intervals))
