"""The model quality gate: pure verdict logic, no files, no output.

A :class:`Threshold` names one metric and what it must meet: a value range
(`min`, `max`, both inclusive) and, against a baseline, the largest allowed
regression: absolute (`max_regression`) or relative to the baseline in percent
(`max_regression_pct`). `higher_is_better` (the default) says which way is a
regression: for a lower-is-better metric (loss, latency) an increase is one.
With no baseline only value checks run. A missing metric, or a NaN or infinite
value, fails: such a model is never fit to ship.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aicd.errors import ConfigError
from aicd.suggest import did_you_mean

_Add = Callable[[str, str, float, str, str], None]  # (kind, threshold text, limit, verdict, reason)

PASS = "pass"
FAIL = "fail"
SKIP = "skip"


@dataclass(frozen=True)
class Threshold:
    metric: str
    min: float | None = None
    max: float | None = None
    higher_is_better: bool = True
    max_regression: float | None = None
    max_regression_pct: float | None = None
    against: str | None = None  # baseline alias (or models:/ URI) in the model registry
    against_at: str = field(default="", compare=False)  # where `against` was written (file:line:col)

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.min, self.max, self.max_regression, self.max_regression_pct))


@dataclass(frozen=True)
class Check:
    """One verdict: a metric against one threshold."""

    metric: str
    kind: str  # 'present', 'min', 'max', 'max_regression', 'max_regression_pct'
    threshold: str  # human text, e.g. '>= 0.9', 'drop <= 2%'
    limit: float | None
    value: float | None
    baseline: float | None
    change: float | None  # value - baseline
    verdict: str  # pass | fail | skip
    reason: str

    @property
    def failed(self) -> bool:
        return self.verdict == FAIL


@dataclass(frozen=True)
class GateResult:
    checks: list[Check] = field(default_factory=list)
    has_baseline: bool = False

    @property
    def passed(self) -> bool:
        return not any(c.failed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed]


def fmt(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def _bad_number(value: float) -> str | None:
    if math.isnan(value):
        return "is NaN (not a number)"
    if math.isinf(value):
        return "is infinite"
    return None


def check_limits(t: Threshold) -> None:
    """ConfigError unless every limit of `t` is a finite number."""
    for kind in ("min", "max", "max_regression", "max_regression_pct"):
        limit = getattr(t, kind)
        if limit is not None and not math.isfinite(limit):
            raise ConfigError(
                f"the gate on {t.metric}: {kind} must be a finite number, not {fmt(limit)}: "
                "a NaN or infinite threshold would pass or fail every model"
            )


def _above(amount: float, limit: float) -> bool:
    """amount > limit, treating float noise (0.9 - 0.88 vs 0.02) as equal."""
    return amount > limit and not math.isclose(amount, limit, rel_tol=1e-9, abs_tol=1e-12)


def evaluate(
    thresholds: Iterable[Threshold],
    metrics: Mapping[str, float],
    baseline: Mapping[str, float] | None = None,
    *,
    source: str = "the metrics file",
) -> GateResult:
    """Judge `metrics` (and their change from `baseline`, if given) against `thresholds`.

    A NaN or infinite limit is refused (ConfigError): it would pass or fail every model.
    """
    checks: list[Check] = []
    thresholds = list(thresholds)
    for t in thresholds:
        check_limits(t)
    for t in thresholds:
        checks.extend(_judge(t, metrics, baseline, source))
    return GateResult(checks=checks, has_baseline=baseline is not None)


def _judge(
    t: Threshold, metrics: Mapping[str, float], baseline: Mapping[str, float] | None, source: str
) -> list[Check]:
    if t.metric not in metrics:
        present = ", ".join(sorted(metrics)) or "none"
        reason = f'metric "{t.metric}" is not in {source}{did_you_mean(t.metric, metrics)}; it has: {present}'
        return [Check(t.metric, "present", "present", None, None, None, None, FAIL, reason)]
    value = metrics[t.metric]
    base = None if baseline is None else baseline.get(t.metric)
    change = None if base is None else value - base
    bad = _bad_number(value)
    out: list[Check] = []

    def add(kind: str, text: str, limit: float, verdict: str, reason: str) -> None:
        out.append(Check(t.metric, kind, text, limit, value, base, change, verdict, reason))

    for kind, limit in (("min", t.min), ("max", t.max)):
        if limit is None:
            continue
        text = f">= {fmt(limit)}" if kind == "min" else f"<= {fmt(limit)}"
        if bad:
            add(kind, text, limit, FAIL, f"{t.metric} {bad}: it never passes a gate")
        elif kind == "min" and value < limit:
            add(kind, text, limit, FAIL, f"{t.metric} = {fmt(value)} is below the minimum {fmt(limit)}")
        elif kind == "max" and value > limit:
            add(kind, text, limit, FAIL, f"{t.metric} = {fmt(value)} is above the maximum {fmt(limit)}")
        else:
            add(kind, text, limit, PASS, f"{t.metric} = {fmt(value)} {text}")
    if baseline is not None:
        _judge_change(t, value, base, bad, add)
    return out


def _judge_change(t: Threshold, value: float, base: float | None, bad: str | None, add: _Add) -> None:
    way = "drop" if t.higher_is_better else "rise"
    for kind, limit in (("max_regression", t.max_regression), ("max_regression_pct", t.max_regression_pct)):
        if limit is None:
            continue
        pct = kind == "max_regression_pct"
        text = f"{way} <= {fmt(limit)}{'%' if pct else ''}"
        if base is None:
            add(kind, text, limit, SKIP, f"the baseline has no {t.metric}: change not checked")
            continue
        base_bad = _bad_number(base)
        if bad or base_bad:
            which = f"{t.metric} {bad}" if bad else f"the baseline {t.metric} {base_bad}"
            add(kind, text, limit, FAIL, f"{which}: the change cannot be judged, so it fails")
            continue
        regression = (base - value) if t.higher_is_better else (value - base)
        if pct:
            if base == 0:
                amount = 0.0 if regression <= 0 else math.inf
            else:
                amount = regression / abs(base) * 100
            shown = f"{fmt(amount)}%"
        else:
            amount = regression
            shown = fmt(amount)
        if _above(amount, limit):
            reason = (
                f"{t.metric} went from {fmt(base)} to {fmt(value)}: a {way} of {shown}, "
                f"more than the allowed {fmt(limit)}{'%' if pct else ''}"
            )
            add(kind, text, limit, FAIL, reason)
        else:
            add(kind, text, limit, PASS, f"{t.metric} changed {fmt(value - base)} from {fmt(base)}")
