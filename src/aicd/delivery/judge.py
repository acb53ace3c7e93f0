"""The canary judge, as Kayenta's NetflixACAJudge does it: pure verdict logic, no files, no output.

Per metric (:func:`classify_metric`), stable ("control") against canary ("experiment"):

1. NaN values are removed (``nan_strategy: remove``, the default) or replaced by 0 (``replace``);
   an infinite value is an ``Error``. Outliers are removed only with ``outliers: remove``
   (Kayenta's IQR detector, factor 3, reduced sensitivity).
2. Fewer than ``min_samples`` values on a side: ``Nodata``; ``NodataFailMetric`` when the
   metric is ``critical`` (as Kayenta: a critical metric without data fails the judgement) or
   ``must_have_data``. Kayenta says Nodata only for an empty side; too few samples cannot show
   anything either, so aicd asks for 10 by default.
3. Identical samples, or one single value on both sides: ``Pass``.
4. A two-sided Mann-Whitney U test at 98 % confidence (:mod:`aicd.delivery.judge_stats`): the
   Hodges-Lehmann shift ``canary - stable`` and its 98 % interval ``[lower, upper]``. The metric
   is ``High`` when its direction allows increases (``increase`` or ``either``), the whole
   interval lies above the tolerance band ``±0.25·|estimate|`` and the effect size reaches
   ``allowed_increase``; ``Low`` likewise below the band with an effect at most
   ``allowed_decrease``; else ``Pass``. A NaN effect (a zero mean) skips the effect check.
   0/1 samples (per-request errors) have a degenerate shift (0 whenever fewer than half of the
   pairs differ), so for them the estimate and interval are those of the difference of the two
   proportions (Newcombe's interval) under the same rule: an aicd addition, documented in
   docs/judge.md.
5. Effect size (``effect_size.measure``): ``mean_ratio`` (canary mean / stable mean, Kayenta's
   default), ``median_ratio``, or ``cles`` (the share of pairs where the canary is higher, ties
   half). Neutral values: 1 for the ratios, 0.5 for cles.

The score (:func:`score_metrics`): per group, the share of its Pass among Pass, High, Low,
NodataFailMetric and Error metrics (Nodata metrics do not count; a group with only Nodata
scores 100); the summary is the weighted mean of the group scores, groups without a weight
sharing what the weights leave of 100. The score is 0 when a critical metric fails (High or Low
beyond ``critical_increase``/``critical_decrease``, or NodataFailMetric or Error) or when half
the metrics or more are Nodata. ``score >= pass_threshold``: pass; ``>= marginal_threshold``:
marginal; else fail.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from aicd.delivery.judge_stats import (
    PROPORTIONS,
    Array,
    ShiftTest,
    mann_whitney,
    remove_outliers,
    shift_test,
)

CONFIDENCE = 0.98
TOLERANCE = 0.25  # the band around 0 is ±TOLERANCE·|estimate|
NODATA_SHARE = 0.5  # this share of Nodata metrics or more fails the judgement
MIN_SAMPLES = 10
PASS_THRESHOLD = 95.0
MARGINAL_THRESHOLD = 75.0

PASS = "Pass"
HIGH = "High"
LOW = "Low"
NODATA = "Nodata"
NODATA_FAIL = "NodataFailMetric"
ERROR = "Error"
FAILING = (HIGH, LOW, NODATA_FAIL, ERROR)

INCREASE = "increase"
DECREASE = "decrease"
EITHER = "either"
DIRECTIONS = (INCREASE, DECREASE, EITHER)

MEAN_RATIO = "mean_ratio"
MEDIAN_RATIO = "median_ratio"
CLES = "cles"
MEASURES = (MEAN_RATIO, MEDIAN_RATIO, CLES)

NAN_REMOVE = "remove"
NAN_REPLACE = "replace"
OUTLIERS_KEEP = "keep"
OUTLIERS_REMOVE = "remove"

VERDICT_PASS = "pass"
VERDICT_MARGINAL = "marginal"
VERDICT_FAIL = "fail"


def neutral_effect(measure: str) -> float:
    return 0.5 if measure == CLES else 1.0


@dataclass(frozen=True)
class EffectSize:
    """Kayenta's ``effectSize``: how big a significant change must be to count (None: neutral)."""

    measure: str = MEAN_RATIO
    allowed_increase: float | None = None
    allowed_decrease: float | None = None
    critical_increase: float | None = None
    critical_decrease: float | None = None

    def limit(self, which: str) -> float:
        value = getattr(self, which)
        return neutral_effect(self.measure) if value is None else float(value)


@dataclass(frozen=True)
class MetricConfig:
    name: str
    direction: str = EITHER  # which change is bad: increase | decrease | either
    group: str | None = None  # default: the metric's own name
    critical: bool = False
    must_have_data: bool = False
    nan_strategy: str = NAN_REMOVE
    outliers: str = OUTLIERS_KEEP
    outlier_factor: float = 3.0
    min_samples: int = MIN_SAMPLES
    effect: EffectSize = field(default_factory=EffectSize)

    @property
    def group_name(self) -> str:
        return self.group or self.name


@dataclass(frozen=True)
class JudgeConfig:
    metrics: tuple[MetricConfig, ...] = ()
    group_weights: Mapping[str, float] = field(default_factory=dict)
    pass_threshold: float = PASS_THRESHOLD
    marginal_threshold: float = MARGINAL_THRESHOLD
    confidence: float = CONFIDENCE


@dataclass(frozen=True)
class Summary:
    count: int
    mean: float
    median: float
    min: float
    max: float
    std: float

    @staticmethod
    def of(values: Array) -> Summary:
        if values.size == 0:
            nan = math.nan
            return Summary(0, nan, nan, nan, nan, nan)
        return Summary(
            int(values.size),
            float(np.mean(values)),
            float(np.median(values)),
            float(np.min(values)),
            float(np.max(values)),
            float(np.std(values)),
        )


@dataclass(frozen=True)
class MetricResult:
    config: MetricConfig
    classification: str
    reason: str
    stable: Summary
    canary: Summary
    effect: float  # NaN when undefined (a zero mean) or not computed
    test: ShiftTest | None = None
    critical_failure: bool = False
    weight: float = 0.0  # this metric's share of the score, in points (filled by the scorer)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class JudgeResult:
    metrics: list[MetricResult]
    group_scores: dict[str, float]
    group_weights: dict[str, float]
    score: float
    verdict: str  # pass | marginal | fail
    reason: str
    pass_threshold: float
    marginal_threshold: float

    @property
    def passed(self) -> bool:
        return self.verdict == VERDICT_PASS


def _prepare(values: Sequence[float] | Array, config: MetricConfig) -> Array:
    array = np.asarray(values, dtype=np.float64)
    nan = np.isnan(array)
    if config.nan_strategy == NAN_REPLACE:
        array = np.where(nan, 0.0, array)
    else:
        array = array[~nan]
    if config.outliers == OUTLIERS_REMOVE:
        array = remove_outliers(array, config.outlier_factor)
    return array


def effect_size(measure: str, canary: Array, stable: Array, u: float | None = None) -> float:
    """The effect of the canary against stable; NaN when a ratio's mean or median is 0."""
    if measure == CLES:
        if u is None:
            u, _ = mann_whitney(canary, stable)
        return u / (canary.size * stable.size)
    pick = np.mean if measure == MEAN_RATIO else np.median
    c = float(pick(canary))
    s = float(pick(stable))
    if c == 0 or s == 0:
        return math.nan
    return c / s


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def classify_metric(
    config: MetricConfig,
    stable_values: Sequence[float] | Array,
    canary_values: Sequence[float] | Array,
    *,
    confidence: float = CONFIDENCE,
    missing: str = "",
) -> MetricResult:
    """Classify one metric: Pass, High, Low, Nodata, NodataFailMetric or Error (module docstring).

    `missing` explains an absent sample (e.g. 'not in canary.json') for the Nodata reason.
    """
    raw_stable = np.asarray(stable_values, dtype=np.float64)
    raw_canary = np.asarray(canary_values, dtype=np.float64)
    for side, raw in (("stable", raw_stable), ("canary", raw_canary)):
        if np.any(np.isinf(raw)):
            stable, canary = Summary.of(np.array([])), Summary.of(np.array([]))
            reason = f"the {side} sample has an infinite value: a measurement went wrong; fix the sample"
            return _result(config, ERROR, reason, stable, canary)
    stable_array = _prepare(raw_stable, config)
    canary_array = _prepare(raw_canary, config)
    stable = Summary.of(stable_array)
    canary = Summary.of(canary_array)
    need = max(config.min_samples, 1)
    if stable_array.size < need or canary_array.size < need:
        label = NODATA_FAIL if config.must_have_data or config.critical else NODATA
        reason = missing or (
            f"too few samples: stable has {stable_array.size}, canary {canary_array.size}; "
            f"at least {need} on each side are needed"
        )
        if config.critical:
            reason += " (a critical metric must have data)"
        return _result(config, label, reason, stable, canary)
    neutral = neutral_effect(config.effect.measure)
    if np.array_equal(np.sort(stable_array), np.sort(canary_array)):
        return _result(config, PASS, "the stable and canary samples are identical", stable, canary, neutral)
    if np.all(stable_array == stable_array[0]) and np.all(canary_array == stable_array[0]):
        return _result(config, PASS, "every value is the same", stable, canary, neutral)
    test = shift_test(canary_array, stable_array, confidence)
    effect = effect_size(config.effect.measure, canary_array, stable_array, test.u)
    return _judge_shift(config, test, effect, stable, canary)


def _result(
    config: MetricConfig,
    label: str,
    reason: str,
    stable: Summary,
    canary: Summary,
    effect: float = math.nan,
    test: ShiftTest | None = None,
) -> MetricResult:
    critical = config.critical and label in (NODATA_FAIL, ERROR)
    return MetricResult(config, label, reason, stable, canary, effect, test, critical)


def _judge_shift(
    config: MetricConfig, test: ShiftTest, effect: float, stable: Summary, canary: Summary
) -> MetricResult:
    band = TOLERANCE * abs(test.estimate)
    what = "difference of proportions" if test.method == PROPORTIONS else "shift"
    pct = f"{test.confidence * 100:g}%"
    interval = f"the {pct} interval of the {what} [{_fmt(test.lower)}, {_fmt(test.upper)}]"
    measure = config.effect.measure
    effect_text = "NaN" if math.isnan(effect) else _fmt(effect)
    higher = test.lower > band
    lower = test.upper < -band
    if not (higher or lower):
        reason = f"no significant change: {interval} reaches the band ±{_fmt(band)} around 0"
        return MetricResult(config, PASS, reason, stable, canary, effect, test)
    way = INCREASE if higher else DECREASE
    if config.direction not in (way, EITHER):
        reason = (
            f"the canary is significantly {'higher' if higher else 'lower'}, "
            f"but only {'increases' if config.direction == INCREASE else 'decreases'} count (direction: "
            f"{config.direction})"
        )
        return MetricResult(config, PASS, reason, stable, canary, effect, test)
    allowed = config.effect.limit("allowed_increase" if higher else "allowed_decrease")
    within = not math.isnan(effect) and (effect < allowed if higher else effect > allowed)
    if within:
        reason = (
            f"significantly {'higher' if higher else 'lower'}, but the {measure} {effect_text} is within "
            f"the allowed {'increase' if higher else 'decrease'} {_fmt(allowed)}"
        )
        return MetricResult(config, PASS, reason, stable, canary, effect, test)
    label = HIGH if higher else LOW
    side = "above" if higher else "below"
    reason = (
        f"the canary is {'higher' if higher else 'lower'}: {interval} lies {side} the band "
        f"±{_fmt(band)}; {measure} {effect_text}"
    )
    critical_limit = config.effect.limit("critical_increase" if higher else "critical_decrease")
    beyond = math.isnan(effect) or (effect >= critical_limit if higher else effect <= critical_limit)
    critical = config.critical and beyond
    if critical:
        reason += f" (critical metric, beyond {_fmt(critical_limit)})"
    return MetricResult(config, label, reason, stable, canary, effect, test, critical)


def resolve_weights(groups: Iterable[str], configured: Mapping[str, float]) -> dict[str, float]:
    """Each group's weight: configured, else an equal share of what is left of 100 (Kayenta)."""
    names = list(dict.fromkeys(groups))
    unweighted = [g for g in names if g not in configured]
    left = max(100.0 - sum(configured.get(g, 0.0) for g in names), 0.0)
    share = left / len(unweighted) if unweighted else 0.0
    return {g: float(configured.get(g, share)) for g in names}


def score_metrics(
    results: Sequence[MetricResult],
    group_weights: Mapping[str, float],
    pass_threshold: float = PASS_THRESHOLD,
    marginal_threshold: float = MARGINAL_THRESHOLD,
) -> JudgeResult:
    """Group scores, the weighted summary score and its verdict (module docstring)."""
    weights = resolve_weights((r.config.group_name for r in results), group_weights)
    scores: dict[str, float] = {}
    for group in weights:
        labels = [r.classification for r in results if r.config.group_name == group]
        counted = [label for label in labels if label != NODATA]
        scores[group] = 100.0 * sum(label == PASS for label in counted) / len(counted) if counted else 100.0
    total_weight = sum(weights.values())
    score = sum(scores[g] * w for g, w in weights.items()) / total_weight if total_weight > 0 else 0.0
    sized = []
    for r in results:
        members = sum(1 for o in results if o.config.group_name == r.config.group_name)
        share = weights[r.config.group_name] / members / total_weight * 100 if total_weight > 0 else 0.0
        sized.append(replace(r, weight=share))
    reason = ""
    critical = [r.name for r in results if r.critical_failure]
    nodata = [r.name for r in results if r.classification == NODATA]
    if critical:
        score = 0.0
        reason = f"critical metric failed: {', '.join(critical)}"
    elif results and len(nodata) / len(results) >= NODATA_SHARE:
        score = 0.0
        reason = f"{len(nodata)} of {len(results)} metrics have no data ({', '.join(nodata)})"
    elif not results:
        reason = "no metrics to judge"
    if score >= pass_threshold and results:
        verdict = VERDICT_PASS
    elif score >= marginal_threshold and results:
        verdict = VERDICT_MARGINAL
    else:
        verdict = VERDICT_FAIL
    if not reason:
        failing = [f"{r.name} {r.classification}" for r in results if r.classification in FAILING]
        reason = ", ".join(failing) if failing else "every metric passed"
    return JudgeResult(
        metrics=sized,
        group_scores=scores,
        group_weights=weights,
        score=score,
        verdict=verdict,
        reason=reason,
        pass_threshold=pass_threshold,
        marginal_threshold=marginal_threshold,
    )


def judge(
    config: JudgeConfig,
    stable: Mapping[str, Sequence[float] | Array],
    canary: Mapping[str, Sequence[float] | Array],
    *,
    stable_name: str = "the stable sample",
    canary_name: str = "the canary sample",
) -> JudgeResult:
    """Classify every configured metric and score them."""
    results = []
    for metric in config.metrics:
        missing = [
            name for name, data in ((stable_name, stable), (canary_name, canary)) if metric.name not in data
        ]
        why = f'"{metric.name}" is not in {" nor ".join(missing)}' if missing else ""
        results.append(
            classify_metric(
                metric,
                stable.get(metric.name, ()),
                canary.get(metric.name, ()),
                confidence=config.confidence,
                missing=why,
            )
        )
    return score_metrics(results, config.group_weights, config.pass_threshold, config.marginal_threshold)
