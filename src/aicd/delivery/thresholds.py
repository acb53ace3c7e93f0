"""Threshold checks as Argo Rollouts' analysis does them: pure functions over measurements.

A :class:`ThresholdSpec` is one metric of an Argo ``AnalysisTemplate``: a measurement every
``interval`` seconds (``count`` of them, or until the analysis stops), judged by
``success_condition`` and ``failure_condition`` (e.g. ``result >= 0.99``):

- both given: failure true -> Failed; else success true -> Successful; else Inconclusive;
- only success: Successful when true, else Failed; only failure: Failed when true, else
  Successful; neither: Successful (Argo's ``EvaluateResult``);
- a measurement without a value (the query failed) is an Error. NaN compares false, as in Argo:
  a 0/0 success rate fails ``result >= 0.99``.

The metric (:func:`assess_metric`, Argo's ``assessMetricStatus``) is Failed once more than
``failure_limit`` measurements failed, Inconclusive once more than ``inconclusive_limit`` were
inconclusive, Error once more than ``consecutive_error_limit`` (default 4) errors came in a row,
Successful once ``count`` measurements were taken (or the analysis is stopped), else Running.
A run (:func:`assess_run`) takes the worst completed phase of its metrics.

Conditions: comparisons of ``result`` (or Argo's ``result[0]``) with numbers, joined by
``&&``/``and`` and ``||``/``or`` (``and`` binds first); no parentheses.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aicd.errors import ConfigError

PENDING = "Pending"
RUNNING = "Running"
SUCCESSFUL = "Successful"
INCONCLUSIVE = "Inconclusive"
ERROR = "Error"
FAILED = "Failed"
# Argo's analysisStatusOrder: later is worse.
_ORDER = (PENDING, RUNNING, SUCCESSFUL, INCONCLUSIVE, ERROR, FAILED)
COMPLETED = (SUCCESSFUL, INCONCLUSIVE, ERROR, FAILED)

DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
DEFAULT_INTERVAL = 60.0

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_TOKEN = re.compile(
    r"\s*(?:(?P<op>>=|<=|==|!=|>|<)|(?P<and>&&|\band\b)|(?P<or>\|\||\bor\b)"
    r"|(?P<result>result(?:\s*\[\s*0\s*\])?)|(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?%?))"
)


@dataclass(frozen=True)
class Condition:
    """A parsed condition: OR of ANDs of comparisons."""

    text: str
    clauses: tuple[tuple[tuple[str, str, str], ...], ...]  # ((left, op, right), ...) per OR branch

    def __call__(self, result: float) -> bool:
        return any(all(_compare(c, result) for c in clause) for clause in self.clauses)


def _operand(text: str, result: float) -> float:
    if text.startswith("result"):
        return result
    if text.endswith("%"):
        return float(text[:-1]) / 100
    return float(text)


def _compare(comparison: tuple[str, str, str], result: float) -> bool:
    left, op, right = comparison
    return _OPS[op](_operand(left, result), _operand(right, result))


def parse_condition(text: str, where: str = "condition") -> Condition:
    """Parse `text` (e.g. 'result >= 0.99 && result <= 1'); ConfigError naming `where` if bad."""
    example = "e.g. 'result >= 0.99' or 'result[0] < 500 && result > 0'"
    tokens: list[tuple[str, str]] = []
    pos = 0
    stripped = text.strip()
    while pos < len(stripped):
        match = _TOKEN.match(stripped, pos)
        if match is None or match.end() == pos:
            raise ConfigError(
                f"{where}: cannot read the condition {text!r} at {stripped[pos : pos + 12]!r}: "
                f"compare 'result' with numbers, {example}"
            )
        kind = match.lastgroup or ""
        tokens.append((kind, (match.group(kind) or "").replace(" ", "")))
        pos = match.end()
    clauses: list[tuple[tuple[str, str, str], ...]] = []
    current: list[tuple[str, str, str]] = []
    i = 0
    while True:
        part = tokens[i : i + 3]
        kinds = [k for k, _ in part]
        if len(part) < 3 or kinds[1] != "op" or not {kinds[0], kinds[2]} <= {"result", "number"}:
            raise ConfigError(
                f"{where}: cannot read the condition {text!r}: expected a comparison, {example}"
            )
        if "result" not in (kinds[0], kinds[2]):
            raise ConfigError(f"{where}: the condition {text!r} never looks at 'result'; {example}")
        current.append((part[0][1], part[1][1], part[2][1]))
        i += 3
        if i == len(tokens):
            break
        joiner = tokens[i][0]
        if joiner not in ("and", "or") or i + 1 == len(tokens):
            raise ConfigError(f"{where}: cannot read the condition {text!r}: join comparisons with && or ||")
        if joiner == "or":
            clauses.append(tuple(current))
            current = []
        i += 1
    clauses.append(tuple(current))
    return Condition(text, tuple(clauses))


@dataclass(frozen=True)
class ThresholdSpec:
    name: str
    success_condition: Condition | None = None
    failure_condition: Condition | None = None
    interval: float = DEFAULT_INTERVAL  # seconds between measurements (for the caller's loop)
    initial_delay: float = 0.0  # seconds before the first measurement (for the caller's loop)
    count: int | None = None  # measurements to take; None: until the analysis is stopped
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = DEFAULT_CONSECUTIVE_ERROR_LIMIT


@dataclass(frozen=True)
class Measurement:
    value: float | None  # None: no value (the measurement itself failed)
    error: str = ""  # why there is no value
    at: float | None = None  # when (seconds, any clock), informative


@dataclass(frozen=True)
class MeasurementVerdict:
    phase: str  # Successful | Failed | Inconclusive | Error
    value: float | None
    reason: str


@dataclass(frozen=True)
class MetricAssessment:
    name: str
    phase: str
    reason: str
    count: int = 0  # measurements with a value
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    measurements: tuple[MeasurementVerdict, ...] = ()

    @property
    def completed(self) -> bool:
        return self.phase in COMPLETED


@dataclass(frozen=True)
class RunAssessment:
    phase: str
    reason: str
    metrics: list[MetricAssessment] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return self.phase in COMPLETED


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def measurement_phase(spec: ThresholdSpec, measurement: Measurement) -> MeasurementVerdict:
    """One measurement against the spec's conditions (Argo's ``EvaluateResult``)."""
    value = measurement.value
    if value is None:
        return MeasurementVerdict(ERROR, None, measurement.error or "the measurement has no value")
    success, failure = spec.success_condition, spec.failure_condition
    shown = "NaN" if math.isnan(value) else _fmt(value)
    if failure is not None and failure(value):
        return MeasurementVerdict(FAILED, value, f"{shown} meets the failure condition '{failure.text}'")
    if success is not None and not success(value):
        if failure is None:
            return MeasurementVerdict(FAILED, value, f"{shown} misses the success condition '{success.text}'")
        reason = f"{shown} meets neither the success condition '{success.text}' nor the failure condition"
        return MeasurementVerdict(INCONCLUSIVE, value, f"{reason} '{failure.text}'")
    if success is not None:
        return MeasurementVerdict(SUCCESSFUL, value, f"{shown} meets '{success.text}'")
    if failure is not None:
        return MeasurementVerdict(SUCCESSFUL, value, f"{shown} misses the failure condition '{failure.text}'")
    return MeasurementVerdict(SUCCESSFUL, value, f"{shown}: no condition to meet")


def assess_metric(
    spec: ThresholdSpec, measurements: Sequence[Measurement], *, terminating: bool = False
) -> MetricAssessment:
    """The metric's phase after `measurements` (in order); stops at the first final verdict.

    `terminating`: the analysis is being stopped (e.g. the canary step ended): a metric without
    a final verdict is then Successful, as in Argo.
    """
    verdicts: list[MeasurementVerdict] = []
    counts = {SUCCESSFUL: 0, FAILED: 0, INCONCLUSIVE: 0, ERROR: 0}
    consecutive = 0

    def result(phase: str, reason: str) -> MetricAssessment:
        return MetricAssessment(
            name=spec.name,
            phase=phase,
            reason=reason,
            count=counts[SUCCESSFUL] + counts[FAILED] + counts[INCONCLUSIVE],
            successful=counts[SUCCESSFUL],
            failed=counts[FAILED],
            inconclusive=counts[INCONCLUSIVE],
            errors=counts[ERROR],
            consecutive_errors=consecutive,
            measurements=tuple(verdicts),
        )

    for measurement in measurements:
        verdict = measurement_phase(spec, measurement)
        verdicts.append(verdict)
        counts[verdict.phase] += 1
        consecutive = consecutive + 1 if verdict.phase == ERROR else 0
        if counts[FAILED] > spec.failure_limit:
            return result(
                FAILED,
                f"{counts[FAILED]} failed measurements, more than failure_limit {spec.failure_limit} "
                f"(last: {verdict.reason})",
            )
        if counts[INCONCLUSIVE] > spec.inconclusive_limit:
            return result(
                INCONCLUSIVE,
                f"{counts[INCONCLUSIVE]} inconclusive measurements, more than inconclusive_limit "
                f"{spec.inconclusive_limit} (last: {verdict.reason})",
            )
        if consecutive > spec.consecutive_error_limit:
            return result(
                ERROR,
                f"{consecutive} measurement errors in a row, more than consecutive_error_limit "
                f"{spec.consecutive_error_limit} (last: {verdict.reason})",
            )
        taken = counts[SUCCESSFUL] + counts[FAILED] + counts[INCONCLUSIVE]
        if spec.count is not None and taken >= spec.count:
            return result(SUCCESSFUL, f"{taken} measurements taken, within the limits")
    if not verdicts:
        if terminating:
            return result(SUCCESSFUL, "stopped before any measurement")
        return result(PENDING, "no measurement yet")
    if terminating:
        return result(SUCCESSFUL, f"stopped after {len(verdicts)} measurements, within the limits")
    return result(RUNNING, f"{len(verdicts)} measurements so far, within the limits")


def worse(a: str, b: str) -> str:
    return a if _ORDER.index(a) >= _ORDER.index(b) else b


def assess_run(
    specs: Sequence[ThresholdSpec],
    measurements: Mapping[str, Sequence[Measurement]],
    *,
    terminating: bool = False,
) -> RunAssessment:
    """The analysis run: Running until every metric is complete, then the worst phase.

    A Failed or Error metric ends the run at once (Argo then terminates the other metrics).
    """
    metrics = [assess_metric(s, measurements.get(s.name, ()), terminating=terminating) for s in specs]
    if not metrics:
        return RunAssessment(SUCCESSFUL, "no threshold checks", metrics)
    stop = [m for m in metrics if m.phase in (FAILED, ERROR)]
    if stop:
        metrics = [
            m if m.completed else assess_metric(s, measurements.get(s.name, ()), terminating=True)
            for s, m in zip(specs, metrics, strict=True)
        ]
    if not all(m.completed for m in metrics):
        waiting = ", ".join(m.name for m in metrics if not m.completed)
        return RunAssessment(RUNNING, f"waiting for {waiting}", metrics)
    phase = SUCCESSFUL
    for m in metrics:
        phase = worse(phase, m.phase)
    bad = [f"{m.name}: {m.reason}" for m in metrics if m.phase == phase and phase != SUCCESSFUL]
    reason = "; ".join(bad) if bad else "every threshold check passed"
    return RunAssessment(phase, reason, metrics)


# --- configuration (the 'thresholds:' list of aicd.yml's 'analysis:' section) -------------------

THRESHOLD_KEYS = (
    "name",
    "success_condition",
    "failure_condition",
    "interval",
    "initial_delay",
    "count",
    "failure_limit",
    "inconclusive_limit",
    "consecutive_error_limit",
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a number or '30s', '5m', '1h', '500ms'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"{where}: {value!r} is not a duration: write seconds or e.g. '30s', '5m', '1h'")
    return float(match.group(1)) * _UNIT[match.group(2)]


def _whole(item: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = item.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}.{key} must be a whole number, 0 or more (is {value!r})")
    return value


def threshold_spec(item: Mapping[str, Any], where: str) -> ThresholdSpec:
    """A ThresholdSpec from a mapping (the keys THRESHOLD_KEYS); ConfigError naming `where`."""
    from aicd.suggest import did_you_mean

    for key in item:
        if key not in THRESHOLD_KEYS:
            raise ConfigError(
                f"{where}: unknown key '{key}'{did_you_mean(str(key), THRESHOLD_KEYS)}; "
                f"known: {', '.join(THRESHOLD_KEYS)}"
            )
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: 'name' (the metric's name) is required")
    conditions: dict[str, Condition | None] = {}
    for key in ("success_condition", "failure_condition"):
        text = item.get(key)
        if text is not None and not isinstance(text, str):
            raise ConfigError(f"{where}.{key} must be a condition such as 'result >= 0.99'")
        conditions[key] = None if text is None else parse_condition(text, f"{where}.{key}")
    if conditions["success_condition"] is None and conditions["failure_condition"] is None:
        raise ConfigError(f"{where} ({name}) checks nothing: give success_condition or failure_condition")
    count = None if item.get("count") is None else _whole(item, "count", 0, where)
    if count == 0:
        raise ConfigError(f"{where}.count must be 1 or more (leave it out to measure until stopped)")
    return ThresholdSpec(
        name=name,
        success_condition=conditions["success_condition"],
        failure_condition=conditions["failure_condition"],
        interval=parse_duration(item.get("interval", DEFAULT_INTERVAL), f"{where}.interval"),
        initial_delay=parse_duration(item.get("initial_delay", 0), f"{where}.initial_delay"),
        count=count,
        failure_limit=_whole(item, "failure_limit", 0, where),
        inconclusive_limit=_whole(item, "inconclusive_limit", 0, where),
        consecutive_error_limit=_whole(
            item, "consecutive_error_limit", DEFAULT_CONSECUTIVE_ERROR_LIMIT, where
        ),
    )
