"""Plain JSON (no NaN, no infinity) of the canary analysis' parts: threshold run, judge, drift."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from aicd.delivery.drift import DriftResult
from aicd.delivery.judge import JudgeResult, Summary
from aicd.delivery.thresholds import MetricAssessment, RunAssessment


def number(value: float | None) -> float | str | None:
    """A float for JSON: NaN -> None, infinities -> "inf" / "-inf"."""
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _floats(values: dict[str, Any]) -> dict[str, Any]:
    return {k: number(v) if isinstance(v, float) else v for k, v in values.items()}


def _summary(s: Summary) -> dict[str, Any]:
    return _floats(dataclasses.asdict(s))


def metric_assessment_json(m: MetricAssessment) -> dict[str, Any]:
    return {
        "name": m.name,
        "phase": m.phase,
        "reason": m.reason,
        "count": m.count,
        "successful": m.successful,
        "failed": m.failed,
        "inconclusive": m.inconclusive,
        "errors": m.errors,
        "consecutive_errors": m.consecutive_errors,
        "measurements": [
            {"phase": v.phase, "value": number(v.value), "reason": v.reason} for v in m.measurements
        ],
    }


def run_json(run: RunAssessment) -> dict[str, Any]:
    return {
        "phase": run.phase,
        "reason": run.reason,
        "metrics": [metric_assessment_json(m) for m in run.metrics],
    }


def judge_json(result: JudgeResult) -> dict[str, Any]:
    metrics = []
    for r in result.metrics:
        metrics.append(
            {
                "name": r.name,
                "group": r.config.group_name,
                "direction": r.config.direction,
                "critical": r.config.critical,
                "classification": r.classification,
                "reason": r.reason,
                "critical_failure": r.critical_failure,
                "weight": r.weight,
                "effect": {"measure": r.config.effect.measure, "value": number(r.effect)},
                "stable": _summary(r.stable),
                "canary": _summary(r.canary),
                "test": None if r.test is None else _floats(dataclasses.asdict(r.test)),
            }
        )
    return {
        "verdict": result.verdict,
        "score": result.score,
        "reason": result.reason,
        "pass_threshold": result.pass_threshold,
        "marginal_threshold": result.marginal_threshold,
        "groups": {
            g: {"score": s, "weight": result.group_weights[g]} for g, s in result.group_scores.items()
        },
        "metrics": metrics,
    }


def drift_json(drift: DriftResult) -> dict[str, Any]:
    return {
        "verdict": drift.verdict,
        "level": drift.level,
        "reason": drift.reason,
        "psi": None if drift.psi is None else number(drift.psi.value),
        "chi_square": None if drift.chi_square is None else _floats(dataclasses.asdict(drift.chi_square)),
        "stable_total": drift.stable_total,
        "canary_total": drift.canary_total,
        "classes": {k: {"stable": s, "canary": c} for k, (s, c) in drift.classes.items()},
    }
