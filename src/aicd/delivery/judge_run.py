"""Kayenta's judge on two sets of samples, with the prediction drift check: one verdict and its report.

Shared by `aicd judge` (sample files) and the server's integrations (samples in a request from
Argo Rollouts' web metric provider or a Flagger webhook), so both judge alike.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aicd.delivery.drift import DRIFT_FAIL, DriftResult, DriftThresholds, prediction_drift
from aicd.delivery.judge import VERDICT_FAIL, VERDICT_PASS, JudgeConfig, JudgeResult, MetricConfig
from aicd.delivery.judge import judge as run_judge
from aicd.delivery.judge_config import EFFECT_KEYS, METRIC_KEYS, AnalysisConfig, metric_config, with_weights
from aicd.delivery.judge_json import drift_json, judge_json
from aicd.delivery.samples import Samples
from aicd.errors import ConfigError


@dataclass(frozen=True)
class Judgement:
    verdict: str  # pass, marginal or fail (a failed drift check fails)
    reason: str
    result: JudgeResult
    drift: DriftResult | None
    notes: list[str]
    payload: dict[str, Any]  # the JSON report (build_report)

    @property
    def passed(self) -> bool:
        return self.verdict == VERDICT_PASS


def parse_metric_flag(text: str) -> tuple[dict[str, Any], set[str]]:
    """(raw mapping as in aicd.yml, the keys it gives) from one --metric value; ConfigError if malformed."""
    where = f"--metric {text!r}"
    parts = [p.strip() for p in text.split(":")]
    if not parts[0]:
        raise ConfigError(f"{where}: the metric name comes first, e.g. --metric latency_ms:increase")
    raw: dict[str, Any] = {"name": parts[0]}
    effect: dict[str, Any] = {}
    given: set[str] = set()
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            if key in ("increase", "decrease", "either"):
                raw["direction"] = key
                given.add("direction")
            elif key in ("critical", "must_have_data"):
                raw[key] = True
                given.add(key)
            else:
                raise ConfigError(
                    f"{where}: {part!r} is not a direction (increase, decrease, either), 'critical', "
                    "'must_have_data' or KEY=VALUE"
                )
            continue
        value = value.strip()
        target = effect if key in EFFECT_KEYS else raw
        if key == "name" or (key not in EFFECT_KEYS and key not in METRIC_KEYS):
            raise ConfigError(
                f"{where}: unknown key {key!r}; known: {', '.join((*METRIC_KEYS[1:], *EFFECT_KEYS))}"
            )
        target[key] = _flag_value(key, value)
        given.add(key)
    if effect:
        raw["effect_size"] = effect
    return raw, given


def _flag_value(key: str, value: str) -> Any:
    if key in ("group", "nan_strategy", "outliers", "measure", "direction"):
        return value
    if key in ("critical", "must_have_data"):
        return {"true": True, "false": False}.get(value.lower(), value)
    if key == "min_samples":
        try:
            return int(value)
        except ValueError:
            return value
    try:
        return float(value)
    except ValueError:
        return value


def _same(where: str, _key: str) -> str:
    return where


def merge_metrics(
    configured: Sequence[MetricConfig], weights: dict[str, float], flags: Sequence[str]
) -> tuple[list[MetricConfig], dict[str, float]]:
    """The configured metrics with --metric flags adding metrics or overriding the fields they give."""
    by_name = {m.name: m for m in configured}
    out_weights = dict(weights)
    for text in flags:
        raw, given = parse_metric_flag(text)
        errors: list[str] = []
        where = f"--metric {text!r}"
        metric, weight = metric_config(raw, where, functools.partial(_same, where), errors)
        if errors or metric is None:
            raise ConfigError("\n".join(e.removeprefix(f"{where}: ") for e in errors))
        current = by_name.get(metric.name)
        if current is None:
            by_name[metric.name] = metric
        else:
            fields = {k: getattr(metric, k) for k in given if k in MetricConfig.__dataclass_fields__}
            effect = {k: getattr(metric.effect, k) for k in given if k in EFFECT_KEYS}
            if effect:
                fields["effect"] = dataclasses.replace(current.effect, **effect)
            by_name[metric.name] = dataclasses.replace(current, **fields)
        if weight is not None:
            out_weights[metric.name] = weight
    return list(by_name.values()), out_weights


def build_report(
    result: JudgeResult,
    drift: DriftResult | None,
    verdict: str,
    reason: str,
    stable_file: str,
    canary_file: str,
    notes: list[str],
) -> dict[str, Any]:
    judged = judge_json(result)
    return {
        "verdict": verdict,
        "passed": verdict == VERDICT_PASS,
        "reason": reason,
        "score": result.score,
        "judge_verdict": result.verdict,
        "pass_threshold": result.pass_threshold,
        "marginal_threshold": result.marginal_threshold,
        "stable_file": stable_file,
        "canary_file": canary_file,
        "metrics": judged["metrics"],
        "groups": judged["groups"],
        "drift": None if drift is None else drift_json(drift),
        "notes": notes,
    }


def _drift(
    stable: Samples, canary: Samples, thresholds: DriftThresholds, notes: list[str]
) -> DriftResult | None:
    if stable.predictions and canary.predictions:
        return prediction_drift(stable.predictions, canary.predictions, thresholds)
    only = [s.file for s in (stable, canary) if s.predictions]
    if only:
        notes.append(f"predictions only in {only[0]}: the drift check needs them in both files")
    return None


def judge_samples(
    analysis: AnalysisConfig,
    stable: Samples,
    canary: Samples,
    *,
    metrics: list[MetricConfig],
    weights: dict[str, float],
    pass_threshold: float | None = None,
    marginal_threshold: float | None = None,
) -> Judgement:
    """Judge ``canary`` against ``stable`` with ``metrics`` (from :func:`merge_metrics`); ConfigError
    when there is nothing to judge or the thresholds contradict each other."""
    notes: list[str] = []
    if not metrics:
        names = list(dict.fromkeys([*stable.metrics, *canary.metrics]))
        metrics = [MetricConfig(name=n) for n in names]
        if names:
            notes.append("no metrics configured: every metric judged with the defaults (direction either)")
    else:
        configured = {m.name for m in metrics}
        extra = sorted({*stable.metrics, *canary.metrics} - configured)
        if extra:
            notes.append(f"not judged (not configured): {', '.join(extra)}")
    judge_config = JudgeConfig(
        metrics=tuple(metrics),
        group_weights=analysis.judge.group_weights,
        pass_threshold=analysis.judge.pass_threshold if pass_threshold is None else pass_threshold,
        marginal_threshold=analysis.judge.marginal_threshold
        if marginal_threshold is None
        else marginal_threshold,
    )
    if judge_config.marginal_threshold > judge_config.pass_threshold:
        raise ConfigError(
            f"the marginal threshold {judge_config.marginal_threshold:g} is above the pass threshold "
            f"{judge_config.pass_threshold:g}; the marginal band lies below the pass threshold"
        )
    judge_config = with_weights(judge_config, weights, analysis.file or "--metric")
    drift = _drift(stable, canary, analysis.drift, notes)
    if not metrics and drift is None:
        raise ConfigError(f"{stable.file}, {canary.file}: no metrics and no predictions to judge")
    result = run_judge(
        judge_config, stable.metrics, canary.metrics, stable_name=stable.file, canary_name=canary.file
    )
    verdict, reason = result.verdict, result.reason
    if not metrics:
        verdict, reason = VERDICT_PASS, "no metrics to judge"
    if drift is not None and drift.verdict == DRIFT_FAIL:
        verdict, reason = VERDICT_FAIL, f"{reason}; {drift.reason}" if metrics else drift.reason
    payload = build_report(result, drift, verdict, reason, stable.file, canary.file, notes)
    return Judgement(verdict=verdict, reason=reason, result=result, drift=drift, notes=notes, payload=payload)


__all__ = ["Judgement", "build_report", "judge_samples", "merge_metrics", "parse_metric_flag"]
