"""What a canary analysis measures on the router's counters: windows of traffic and their metrics.

The router's snapshot (:meth:`aicd.deploy.router.metrics.RouterMetrics.snapshot`) holds counters
that only grow. The traffic of a window (since the analysis began, or since a check's previous
measurement) is the difference of two snapshots: counters subtract, and the window's latencies
are the last ``requests_now - requests_then`` entries of the reservoir (all of it when more
requests than it holds came in). A revision missing from the earlier snapshot starts at zero; so
do counters that went backwards (the router's metrics were reset in between).

Threshold checks (:data:`THRESHOLD_METRICS`) measure one window of the canary's traffic; the
judge (:data:`JUDGE_METRICS`) compares stable and canary samples over the whole analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aicd.delivery.live_quality import Side, side_of
from aicd.delivery.live_quality import recent as last_of
from aicd.delivery.thresholds import Measurement

LATENCY_MS = "latency_ms"
ERRORS = "errors"
JUDGE_METRICS = (LATENCY_MS, ERRORS)


@dataclass(frozen=True)
class Traffic:
    """One revision's counters (a whole snapshot's, or a window's difference of two)."""

    requests: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    latencies_ms: tuple[float, ...] = ()  # the most recent latencies, oldest first
    field_values: Mapping[str, int] = field(default_factory=dict)
    quality: Side = field(default_factory=Side)  # labelled answers (delayed labels)

    @staticmethod
    def of(snapshot: Mapping[str, Any], revision: str) -> Traffic:
        """The counters of `revision` in a router snapshot (zeros when it has none yet)."""
        rev = (snapshot.get("revisions") or {}).get(revision)
        if not rev:
            return Traffic()
        latency = rev.get("latency_ms") or {}
        return Traffic(
            requests=int(rev.get("requests", 0)),
            errors=int(rev.get("errors", 0)),
            latency_sum_ms=float(latency.get("sum", 0.0)),
            latencies_ms=tuple(float(v) for v in rev.get("reservoir_ms", ())),
            field_values={str(k): int(v) for k, v in (rev.get("field_values") or {}).items()},
            quality=side_of(rev.get("quality") or {}),
        )

    def since(self, before: Traffic) -> Traffic:
        """The traffic between `before` and this (both of the same revision, `before` earlier)."""
        if self.requests < before.requests or self.errors < before.errors:
            before = Traffic()  # the router's counters were reset: everything is new
        requests = self.requests - before.requests
        recent = self.latencies_ms[len(self.latencies_ms) - min(requests, len(self.latencies_ms)) :]
        values = {
            key: n - before.field_values.get(key, 0)
            for key, n in self.field_values.items()
            if n - before.field_values.get(key, 0) > 0
        }
        now, then = self.quality, before.quality
        if now.labels < then.labels:
            then = Side()
        numeric = now.numeric_labels - then.numeric_labels
        quality = Side(
            labels=now.labels - then.labels,
            correct=now.correct - then.correct,
            numeric_labels=numeric,
            abs_error_sum=max(now.abs_error_sum - then.abs_error_sum, 0.0),
            sq_error_sum=max(now.sq_error_sum - then.sq_error_sum, 0.0),
            abs_errors=last_of(now.abs_errors, numeric),
        )
        return Traffic(
            requests=requests,
            errors=self.errors - before.errors,
            latency_sum_ms=max(self.latency_sum_ms - before.latency_sum_ms, 0.0),
            latencies_ms=recent,
            field_values=values,
            quality=quality,
        )

    def error_indicators(self) -> list[float]:
        """One 0/1 per request (1: a 5xx answer), for the judge's Mann-Whitney on error rates."""
        errors = min(self.errors, self.requests)
        return [1.0] * errors + [0.0] * (self.requests - errors)


def _no_requests(name: str) -> Measurement:
    return Measurement(None, f"no requests reached the canary in this interval: no {name}")


def _rate(name: str, good: bool) -> Callable[[Traffic, float], Measurement]:
    def measure(window: Traffic, seconds: float) -> Measurement:
        if window.requests <= 0:
            return _no_requests(name)
        errors = min(window.errors, window.requests)
        bad = errors / window.requests
        return Measurement(1.0 - bad if good else bad)

    return measure


def _percentile(name: str, q: float) -> Callable[[Traffic, float], Measurement]:
    def measure(window: Traffic, seconds: float) -> Measurement:
        if not window.latencies_ms:
            return _no_requests(name)
        return Measurement(float(np.percentile(np.asarray(window.latencies_ms), q)))

    return measure


def _mean_latency(window: Traffic, seconds: float) -> Measurement:
    if window.requests <= 0:
        return _no_requests("mean_latency_ms")
    return Measurement(window.latency_sum_ms / window.requests)


def _requests(window: Traffic, seconds: float) -> Measurement:
    return Measurement(float(window.requests))


def _request_rate(window: Traffic, seconds: float) -> Measurement:
    if seconds <= 0:
        return Measurement(None, "the interval has no length: no request_rate")
    return Measurement(window.requests / seconds)


def _no_labels(name: str) -> Measurement:
    return Measurement(None, f"no label arrived for the canary's answers in this interval: no {name}")


def _accuracy(window: Traffic, seconds: float) -> Measurement:
    accuracy = window.quality.accuracy
    return _no_labels("accuracy") if accuracy is None else Measurement(accuracy)


def _mae(window: Traffic, seconds: float) -> Measurement:
    mae = window.quality.mae
    return _no_labels("mae") if mae is None else Measurement(mae)


def _rmse(window: Traffic, seconds: float) -> Measurement:
    rmse = window.quality.rmse
    return _no_labels("rmse") if rmse is None else Measurement(rmse)


def _labels(window: Traffic, seconds: float) -> Measurement:
    return Measurement(float(window.quality.labels))


LABEL_METRICS = ("accuracy", "mae", "rmse")  # measured on labels: a window without labels is skipped

THRESHOLD_METRICS: dict[str, Callable[[Traffic, float], Measurement]] = {
    "success_rate": _rate("success_rate", good=True),  # answers below 500 / requests
    "error_rate": _rate("error_rate", good=False),  # 5xx answers / requests
    "p50_latency_ms": _percentile("p50_latency_ms", 50),
    "p95_latency_ms": _percentile("p95_latency_ms", 95),
    "p99_latency_ms": _percentile("p99_latency_ms", 99),
    "mean_latency_ms": _mean_latency,
    "requests": _requests,
    "request_rate": _request_rate,  # requests per second
    "accuracy": _accuracy,  # labelled answers that were right / labelled answers (delayed labels)
    "mae": _mae,  # mean absolute error of labelled numeric answers
    "rmse": _rmse,  # root mean squared error of labelled numeric answers
    "labels": _labels,  # labels that arrived for the canary's answers
}
"""Metric name -> measure(canary traffic of the window, the window's length in seconds)."""


def measure(name: str, window: Traffic, seconds: float, at: float) -> Measurement:
    """Measure threshold metric `name` (a key of THRESHOLD_METRICS) on one window of traffic."""
    m = THRESHOLD_METRICS[name](window, seconds)
    return Measurement(m.value, m.error, at)


def judge_samples(traffic: Traffic) -> dict[str, list[float]]:
    """The judge's samples of one side: the window's latencies and per-request error indicators."""
    return {LATENCY_MS: list(traffic.latencies_ms), ERRORS: traffic.error_indicators()}
