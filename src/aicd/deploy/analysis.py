"""Canary analysis over the router's metrics: Argo-style threshold checks, Kayenta's judge, drift.

The deploy agent makes one :class:`CanaryAnalysis` when canary traffic starts, with the router's
snapshot at that moment as the baseline: only requests after it count. While the canary runs it
calls :meth:`CanaryAnalysis.tick` often with a fresh snapshot; each threshold check whose
interval is due takes a measurement of the canary's traffic since that check's previous
measurement (:mod:`aicd.deploy.analysis_metrics` lists the metrics), and
:meth:`CanaryAnalysis.failed_early` says when one is already lost, to abort at once. At a step
end or before promotion, :meth:`CanaryAnalysis.final` judges the whole period since the baseline:

- threshold checks (:mod:`aicd.delivery.thresholds`, Argo's semantics), assessed as stopped:
  Failed, Error and also Inconclusive fail the analysis (Argo pauses an Inconclusive rollout for
  a human; a deploy agent has none, so it rolls back and says why). An interval in which no
  request reached the canary is skipped rather than measured as an Error (Argo's behaviour for
  an empty query result): a quiet service is not rolled back for being quiet;
- the judge (:mod:`aicd.delivery.judge`, Kayenta) on stable against canary: ``latency_ms`` (the
  reservoir's latencies since the baseline) and ``errors`` (one 0/1 per request, so the rank
  test compares error rates). A verdict ``fail`` fails the analysis, ``marginal`` passes with a
  note. Too little data (only Nodata metrics failing the score) is not a failure unless a metric
  is ``critical`` or ``must_have_data`` (then it is ``NodataFailMetric``, as in Kayenta).
  Metrics the router does not measure are Nodata with a reason. Without judge metrics
  configured the judge does not run;
- prediction drift (:mod:`aicd.delivery.drift`) of the counted response field (``field_values``),
  when either side has any: ``fail`` fails the analysis once both sides have at least
  :data:`DRIFT_MIN_PREDICTIONS` predictions (fewer: a note), ``warn`` is a note;
- live quality (:mod:`aicd.delivery.live_quality`) when labels arrived for either side's answers
  (``POST /_aicd/feedback``): accuracy by a two-proportion test, or errors by Mann-Whitney; a
  ``fail`` fails the analysis, too few labels is a note.

Times (``started_at``, ``now``) are seconds on any one clock (e.g. ``time.monotonic()``).
:func:`default_analysis` is what a deployment uses when aicd.yml has no ``analysis:`` section.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aicd.delivery.drift import DRIFT_FAIL, DRIFT_WARN, DriftResult, prediction_drift
from aicd.delivery.judge import (
    FAILING,
    HIGH,
    INCREASE,
    LOW,
    MEAN_RATIO,
    VERDICT_FAIL,
    VERDICT_MARGINAL,
    EffectSize,
    JudgeConfig,
    JudgeResult,
    MetricConfig,
    MetricResult,
    Summary,
    classify_metric,
    score_metrics,
)
from aicd.delivery.judge_config import AnalysisConfig, with_weights
from aicd.delivery.judge_json import drift_json, judge_json, number, run_json
from aicd.delivery.live_quality import FAIL as QUALITY_FAIL
from aicd.delivery.live_quality import NODATA as QUALITY_NODATA
from aicd.delivery.live_quality import QualityConfig, QualityResult, compare
from aicd.delivery.thresholds import (
    ERROR,
    FAILED,
    INCONCLUSIVE,
    Measurement,
    RunAssessment,
    ThresholdSpec,
    assess_metric,
    assess_run,
    measurement_phase,
    parse_condition,
)
from aicd.deploy.analysis_metrics import (
    ERRORS,
    JUDGE_METRICS,
    LABEL_METRICS,
    LATENCY_MS,
    THRESHOLD_METRICS,
    Traffic,
    judge_samples,
    measure,
)
from aicd.errors import ConfigError
from aicd.suggest import did_you_mean

__all__ = [
    "DRIFT_MIN_PREDICTIONS",
    "JUDGE_METRICS",
    "THRESHOLD_METRICS",
    "AnalysisReport",
    "CanaryAnalysis",
    "MeasurementRecord",
    "default_analysis",
]

DRIFT_MIN_PREDICTIONS = 50  # fewer predictions on a side: a drift "fail" is only a note
_LOST = (FAILED, ERROR, INCONCLUSIVE)


def default_analysis() -> AnalysisConfig:
    """The analysis of a deployment whose aicd.yml has no ``analysis:`` section.

    Judge: ``latency_ms`` (increase is bad; a significant rise up to 20 % of the mean passes) and
    ``errors`` (any significant rise), weighted 50/50, pass 95, marginal 75: either one High scores
    50 and fails. Neither is ``critical``: a critical metric without data fails (Kayenta), and a
    canary that got too little traffic to judge is not rolled back by default. Thresholds:
    ``success_rate >= 0.95`` every 5 s; the second failed measurement fails the analysis.
    """
    latency = MetricConfig(
        LATENCY_MS,
        direction=INCREASE,
        group="latency",
        effect=EffectSize(MEAN_RATIO, allowed_increase=1.2),
    )
    errors = MetricConfig(ERRORS, direction=INCREASE, group="errors")
    judge = JudgeConfig(
        metrics=(latency, errors),
        group_weights={"latency": 50.0, "errors": 50.0},
        pass_threshold=95.0,
        marginal_threshold=75.0,
    )
    success = ThresholdSpec(
        "success_rate",
        success_condition=parse_condition("result >= 0.95", "default analysis"),
        interval=5.0,
        failure_limit=1,
    )
    return AnalysisConfig(judge=judge, thresholds=(success,), file="the default analysis")


COUNTING = ("requests", "request_rate", "labels")  # metrics that are measured on an empty window too


@dataclass(frozen=True)
class MeasurementRecord:
    """One measurement of a threshold check, as taken by :meth:`CanaryAnalysis.tick`."""

    metric: str
    value: float | None
    phase: str  # Successful | Failed | Inconclusive | Error
    reason: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": number(self.value),
            "phase": self.phase,
            "reason": self.reason,
            "at": self.at,
        }


@dataclass(frozen=True)
class AnalysisReport:
    passed: bool
    reason: str
    thresholds: RunAssessment
    judge: JudgeResult | None
    drift: DriftResult | None
    stable_requests: int
    canary_requests: int
    notes: tuple[str, ...] = ()  # what did not fail but is worth a look (marginal, warnings)
    quality: QualityResult | None = None  # live quality from delayed labels

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (no NaN): what deployments store."""
        return {
            "passed": self.passed,
            "reason": self.reason,
            "stable_requests": self.stable_requests,
            "canary_requests": self.canary_requests,
            "thresholds": run_json(self.thresholds),
            "judge": None if self.judge is None else judge_json(self.judge),
            "drift": None if self.drift is None else drift_json(self.drift),
            "notes": list(self.notes),
            "quality": None if self.quality is None else self.quality.to_json(),
        }

    def summary(self) -> str:
        """One line: the verdict, why, and the traffic it is based on."""
        verdict = "passed" if self.passed else "failed"
        return (
            f"canary analysis {verdict}: {self.reason} "
            f"(stable {self.stable_requests} requests, canary {self.canary_requests})"
        )


@dataclass
class _Check:
    """One threshold check's schedule and measurements."""

    spec: ThresholdSpec
    measurements: list[Measurement] = field(default_factory=list)
    opened: Traffic | None = None  # the canary's counters when the current window opened
    opened_at: float = 0.0
    due: float | None = None  # None: the initial delay has not ended yet
    done: bool = False


class CanaryAnalysis:
    """The analysis of one canary: stable revision `stable` against canary revision `canary`."""

    def __init__(
        self,
        config: AnalysisConfig,
        *,
        stable: str,
        canary: str,
        baseline: Mapping[str, Any],
        started_at: float,
        interval_override: float | None = None,
        quality: QualityConfig | None = None,
    ) -> None:
        where = config.file or "analysis"
        if stable == canary:
            raise ConfigError(f"canary analysis: stable and canary are the same revision '{stable}'")
        if interval_override is not None and not interval_override > 0:
            raise ConfigError(f"canary analysis: interval_override must be above 0 (is {interval_override})")
        seen: set[str] = set()
        for spec in config.thresholds:
            if spec.name not in THRESHOLD_METRICS:
                raise ConfigError(
                    f"{where}: thresholds: the router measures no '{spec.name}'"
                    f"{did_you_mean(spec.name, THRESHOLD_METRICS)}; known: {', '.join(THRESHOLD_METRICS)}"
                )
            if spec.name in seen:
                raise ConfigError(f"{where}: thresholds: '{spec.name}' is checked twice; keep one check")
            seen.add(spec.name)
        self.config = config
        self.judge_config = with_weights(config.judge, config.metric_weights, where)
        self.stable = stable
        self.canary = canary
        self.started_at = started_at
        self.quality = quality or QualityConfig()
        self._stable_base = Traffic.of(baseline, stable)
        self._canary_base = Traffic.of(baseline, canary)
        self._checks = [
            _Check(spec if interval_override is None else replace(spec, interval=interval_override))
            for spec in config.thresholds
        ]

    # -- threshold checks while the canary runs ------------------------------------------------------

    def tick(self, snapshot: Mapping[str, Any], now: float) -> list[MeasurementRecord]:
        """Take the measurements that are due at `now` on the router's `snapshot`; the new ones."""
        if self.failed_early() is not None:
            return []  # the run is lost: Argo stops measuring
        canary = Traffic.of(snapshot, self.canary)
        records: list[MeasurementRecord] = []
        for check in self._checks:
            spec = check.spec
            if check.done:
                continue
            if check.due is None:
                if now < self.started_at + spec.initial_delay:
                    continue
                if spec.initial_delay > 0:  # traffic during the initial delay is not measured
                    check.opened, check.opened_at = canary, now
                else:
                    check.opened, check.opened_at = self._canary_base, self.started_at
                check.due = check.opened_at + spec.interval
            if now < check.due:
                continue
            window = canary.since(check.opened or Traffic())
            if spec.name in LABEL_METRICS and window.quality.labels <= 0:
                check.due = now + spec.interval  # no label yet: no evidence either way
                continue
            if window.requests <= 0 and spec.name not in COUNTING:
                # No request, no evidence: the window is skipped, not an Error (Argo would count an
                # Error; a quiet service would then be rolled back for being quiet).
                check.due = now + spec.interval
                continue
            measurement = measure(spec.name, window, now - check.opened_at, now)
            check.measurements.append(measurement)
            verdict = measurement_phase(spec, measurement)
            records.append(
                MeasurementRecord(spec.name, measurement.value, verdict.phase, verdict.reason, now)
            )
            check.opened, check.opened_at = canary, now
            check.due += spec.interval
            if check.due <= now:  # ticks came late: no burst of catch-up measurements
                check.due = now + spec.interval
            check.done = assess_metric(spec, check.measurements).completed
        return records

    def _run(self, *, terminating: bool) -> RunAssessment:
        specs = [c.spec for c in self._checks]
        return assess_run(specs, {c.spec.name: c.measurements for c in self._checks}, terminating=terminating)

    def thresholds_phase(self) -> RunAssessment:
        """The threshold checks' run so far (Argo's phase: Pending, Running, ... Failed)."""
        return self._run(terminating=False)

    def failed_early(self) -> str | None:
        """Why the analysis is already lost (a check Failed, Error or Inconclusive), else None."""
        return _lost(self.thresholds_phase())

    # -- the verdict ------------------------------------------------------------------------------------

    def final(self, snapshot: Mapping[str, Any], now: float, *, guardrails: bool = False) -> AnalysisReport:
        """Judge everything since the baseline: thresholds (stopped), judge and drift.

        ``guardrails``: only the thresholds and the judge (errors, latency): an experiment's variants
        may answer differently and be more accurate; that is what its own test decides."""
        self.tick(snapshot, now)
        run = self._run(terminating=True)
        stable = Traffic.of(snapshot, self.stable).since(self._stable_base)
        canary = Traffic.of(snapshot, self.canary).since(self._canary_base)
        failures: list[str] = []
        notes: list[str] = []
        passed_parts: list[str] = []
        lost = _lost(run)
        if lost is not None:
            failures.append(lost)
        else:
            passed_parts.append(f"thresholds {run.phase}: {run.reason}")
        result = self._judge(stable, canary) if self.judge_config.metrics else None
        if result is not None:
            failing = [m for m in result.metrics if m.classification in FAILING]
            score = f"judge {result.verdict} (score {result.score:.0f}, pass >= {result.pass_threshold:g})"
            if result.verdict == VERDICT_FAIL and failing:
                failures.append(f"{score}: " + "; ".join(_metric_failure(m) for m in failing))
            elif result.verdict == VERDICT_FAIL:
                notes.append(f"judge: too little data to judge, not counted as a failure: {result.reason}")
            elif result.verdict == VERDICT_MARGINAL:
                notes.append(f"{score}: marginal, passed: {result.reason}")
                passed_parts.append(score)
            else:
                passed_parts.append(score)
        drift = None
        if (stable.field_values or canary.field_values) and not guardrails:
            drift = prediction_drift(stable.field_values, canary.field_values, self.config.drift)
            fewest = min(drift.stable_total, drift.canary_total)
            if drift.verdict == DRIFT_FAIL and fewest >= DRIFT_MIN_PREDICTIONS:
                failures.append(f"predictions: {drift.reason}")
            elif drift.verdict == DRIFT_FAIL:
                notes.append(
                    f"predictions: {drift.reason}; not counted with fewer than {DRIFT_MIN_PREDICTIONS} "
                    f"predictions on a side ({fewest})"
                )
            elif drift.verdict == DRIFT_WARN:
                notes.append(f"predictions: {drift.reason}")
            else:
                passed_parts.append(f"predictions {drift.verdict}")
        quality = None
        if (stable.quality.labels or canary.quality.labels) and not guardrails:
            quality = compare(stable.quality, canary.quality, self.quality)
            if quality.verdict == QUALITY_FAIL:
                failures.append(quality.reason)
            elif quality.verdict == QUALITY_NODATA:
                notes.append(quality.reason)
            else:
                passed_parts.append(quality.reason)
        reason = "; ".join(failures) if failures else "; ".join(passed_parts)
        return AnalysisReport(
            passed=not failures,
            reason=reason,
            thresholds=run,
            judge=result,
            drift=drift,
            stable_requests=stable.requests,
            canary_requests=canary.requests,
            notes=tuple(notes),
            quality=quality,
        )

    def labels(self, snapshot: Mapping[str, Any]) -> tuple[int, int]:
        """Labels that arrived since the analysis began for (stable's, the canary's) answers."""
        stable = Traffic.of(snapshot, self.stable).since(self._stable_base)
        canary = Traffic.of(snapshot, self.canary).since(self._canary_base)
        return stable.quality.labels, canary.quality.labels

    def _judge(self, stable: Traffic, canary: Traffic) -> JudgeResult:
        config = self.judge_config
        stable_samples, canary_samples = judge_samples(stable), judge_samples(canary)
        results = []
        for metric in config.metrics:
            missing = ""
            if metric.name not in JUDGE_METRICS:
                missing = (
                    f"the router measures no '{metric.name}'{did_you_mean(metric.name, JUDGE_METRICS)}; "
                    f"the judge can compare {', '.join(JUDGE_METRICS)}"
                )
            results.append(
                classify_metric(
                    metric,
                    stable_samples.get(metric.name, ()),
                    canary_samples.get(metric.name, ()),
                    confidence=config.confidence,
                    missing=missing,
                )
            )
        return score_metrics(results, config.group_weights, config.pass_threshold, config.marginal_threshold)


def _lost(run: RunAssessment) -> str | None:
    bad = [f"{m.name} {m.phase}: {m.reason}" for m in run.metrics if m.phase in _LOST]
    return "; ".join(bad) if bad else None


def _side(name: str, summary: Summary) -> str:
    if name == ERRORS:
        return f"{summary.mean:.2%} errors of {summary.count} requests"
    unit = " ms" if name == LATENCY_MS else ""
    return f"mean {summary.mean:.4g}{unit}"


def _metric_failure(m: MetricResult) -> str:
    text = f"{m.name} {m.classification}"
    if m.classification in (HIGH, LOW):
        text += f": canary {_side(m.name, m.canary)} vs stable {_side(m.name, m.stable)}"
    return f"{text} ({m.reason})"
