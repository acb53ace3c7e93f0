"""Service level objectives: `environments.<env>.slo` in aicd.yml, and the error rate over a window.

    environments:
      production:
        slo:
          availability: 99.5%     # or 99.5, or 0.995: the share of requests that must succeed
          error_rate: 1%          # or 0.01: the most errors (5xx) per request, over the window
          probe_interval: 5s      # how often the monitor probes the environment's address
          window: 60s             # the error rate is measured over this much recent traffic

Every key is optional. The monitor's error-rate objective is `error_rate`, else
`1 - availability`; with neither, the monitor only checks that the service answers.

:class:`ErrorWindow` keeps the router's cumulative request and error counters of the stable
revision as they are sampled and gives the error rate over the last `window` seconds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aicd.errors import ConfigError
from aicd.suggest import did_you_mean

SLO_KEYS = ("availability", "error_rate", "probe_interval", "window")
DEFAULT_PROBE_INTERVAL = 5.0
DEFAULT_WINDOW = 60.0
MIN_PROBE_INTERVAL = 0.05
MIN_REQUESTS = 20  # fewer requests in the window: too few to judge the error rate


@dataclass(frozen=True)
class Slo:
    """One environment's objectives. Fractions (0.995, 0.01), durations in seconds."""

    availability: float | None = None
    error_rate: float | None = None
    probe_interval: float = DEFAULT_PROBE_INTERVAL
    window: float = DEFAULT_WINDOW

    @property
    def error_objective(self) -> float | None:
        """The highest error rate allowed: `error_rate`, else 1 - `availability`, else None."""
        if self.error_rate is not None:
            return self.error_rate
        if self.availability is not None:
            return 1.0 - self.availability
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "availability": self.availability,
            "error_rate": self.error_rate,
            "probe_interval": self.probe_interval,
            "window": self.window,
        }


def parse_slo(raw: Any, where: str = "slo") -> Slo:
    """An :class:`Slo` from its aicd.yml mapping (None: the defaults). ConfigError names the key
    (`where` is its path, e.g. environments.production.slo); every problem is listed at once."""
    if raw is None:
        return Slo()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping of {', '.join(SLO_KEYS)} (is {raw!r})")
    errors: list[str] = []
    for key in raw:
        if key not in SLO_KEYS:
            errors.append(
                f"{where}: unknown key '{key}'{did_you_mean(str(key), SLO_KEYS)}; "
                f"known: {', '.join(SLO_KEYS)}"
            )
    values: dict[str, Any] = {}
    checks = (
        ("availability", _availability),
        ("error_rate", _error_rate),
        ("probe_interval", _probe_interval),
        ("window", _window),
    )
    for key, check in checks:
        if raw.get(key) is None:
            continue
        try:
            values[key] = check(raw[key])
        except ValueError as exc:
            errors.append(f"{where}.{key}: {exc}")
    if errors:
        raise ConfigError("\n".join(errors))
    slo = Slo(**values)
    if slo.window < slo.probe_interval:
        raise ConfigError(
            f"{where}.window: {slo.window:g}s is shorter than probe_interval ({slo.probe_interval:g}s); "
            "the window must hold at least one probe"
        )
    return slo


def _number(value: Any) -> tuple[float, bool]:
    """(number, written as a percentage) of 0.01, 1, "1%", "99.5 %"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, (int, float)):
        number, percent = float(value), False
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        percent = text.endswith("%")
        try:
            number = float(text.removesuffix("%").strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number or a percentage") from None
    else:
        raise ValueError(f"{value!r} is not a number or a percentage")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number, percent


def _availability(value: Any) -> float:
    number, percent = _number(value)
    fraction = number / 100 if percent or number > 1 else number  # 99.5 means 99.5 %
    if not 0 < fraction < 1:
        raise ValueError(
            f"{value!r}: an availability objective is above 0 and below 100% (e.g. 99.5%, 99.5 or 0.995)"
        )
    return fraction


def _error_rate(value: Any) -> float:
    number, percent = _number(value)
    if not percent and number > 1:
        raise ValueError(f"{value!r}: write a fraction (0.01) or a percentage ('1%')")
    fraction = number / 100 if percent else number
    if not 0 <= fraction < 1:
        raise ValueError(f"{value!r}: an error-rate objective is from 0 to below 100% (e.g. '1%' or 0.01)")
    return fraction


def _duration(value: Any) -> float:
    from aicd.delivery.thresholds import parse_duration

    try:
        return parse_duration(value, "duration")
    except ConfigError:
        raise ValueError(f"{value!r} is not a duration: write seconds or e.g. '500ms', '5s', '1m'") from None


def _probe_interval(value: Any) -> float:
    seconds = _duration(value)
    if seconds < MIN_PROBE_INTERVAL:
        raise ValueError(f"{value!r}: probe at most every {MIN_PROBE_INTERVAL * 1000:g}ms (e.g. 5s)")
    return seconds


def _window(value: Any) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r}: the window must be longer than 0 (e.g. 60s)")
    return seconds


def parse_probe_interval(value: Any, where: str = "--interval") -> float:
    """A probe interval (`--interval 5s`, `500ms`, `0.3s`); ConfigError naming `where`."""
    try:
        return _probe_interval(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class ErrorRate:
    """Requests and errors in the window (from `since`, the oldest sample it spans)."""

    requests: int
    errors: int
    since: float

    @property
    def rate(self) -> float | None:
        """errors / requests; None with fewer than MIN_REQUESTS requests (too few to judge)."""
        return self.errors / self.requests if self.requests >= MIN_REQUESTS else None


class ErrorWindow:
    """Samples of one revision's cumulative counters; the error rate over the last `window` seconds.

    A new revision, or counters that went down (the agent restarted its router), start over.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self.revision: str | None = None
        self._samples: deque[tuple[float, int, int]] = deque()  # (at, requests, errors)

    def reset(self) -> None:
        self.revision = None
        self._samples.clear()

    def add(self, at: float, revision: str, requests: int, errors: int) -> ErrorRate:
        last = self._samples[-1] if self._samples else None
        if revision != self.revision or (last is not None and (requests < last[1] or errors < last[2])):
            self._samples.clear()
            self.revision = revision
        self._samples.append((at, requests, errors))
        # Keep the newest sample at least `window` old (the window's start) and everything after it.
        while len(self._samples) >= 2 and self._samples[1][0] <= at - self.window:
            self._samples.popleft()
        first = self._samples[0]
        return ErrorRate(requests=requests - first[1], errors=errors - first[2], since=first[0])


__all__ = ["MIN_REQUESTS", "SLO_KEYS", "ErrorRate", "ErrorWindow", "Slo", "parse_probe_interval", "parse_slo"]
