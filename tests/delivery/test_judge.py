"""The canary judge: agreement with scipy and with Kayenta's interval, classification, score."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from aicd.delivery.judge import (
    ERROR,
    HIGH,
    LOW,
    NODATA,
    NODATA_FAIL,
    PASS,
    VERDICT_FAIL,
    VERDICT_MARGINAL,
    VERDICT_PASS,
    EffectSize,
    JudgeConfig,
    MetricConfig,
    classify_metric,
    judge,
    resolve_weights,
)
from aicd.delivery.judge_stats import (
    HODGES_LEHMANN,
    PROPORTIONS,
    hodges_lehmann,
    kth_differences,
    mann_whitney,
    proportion_difference,
    shift_test,
)

RNG_SEED = 7


def _rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


# --- the statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
def test_u_and_p_value_equal_scipys(ties: bool) -> None:
    rng = _rng()
    stable = rng.lognormal(3.0, 0.5, 240)
    canary = rng.lognormal(3.1, 0.5, 260)
    if ties:
        stable, canary = np.round(stable), np.round(canary)
    u, p = mann_whitney(canary, stable)
    expected = stats.mannwhitneyu(canary, stable, alternative="two-sided")
    assert u == expected.statistic and p == expected.pvalue
    # and the judge reports those very numbers
    result = classify_metric(MetricConfig("m"), stable, canary)
    assert result.test is not None
    assert (result.test.u, result.test.p_value) == (expected.statistic, expected.pvalue)
    # U of the canary: pairs where the canary is higher, ties counted half
    diffs = np.subtract.outer(canary, stable)
    assert u == pytest.approx(np.sum(diffs > 0) + 0.5 * np.sum(diffs == 0))


def _kayenta_interval(canary: np.ndarray, stable: np.ndarray, confidence: float) -> tuple[float, float]:
    """kayenta-mannwhitney's MannWhitney.calculateConfidenceInterval (R's wilcox.test, asymptotic),
    transcribed: root-finding on the tie- and continuity-corrected normal statistic."""
    x, y = canary, stable
    nx, ny = float(x.size), float(y.size)

    def wdiff(mu: float, quantile: float) -> float:
        ranks = stats.rankdata(np.concatenate([x - mu, y]))
        dz = ranks[: x.size].sum() - nx * (nx + 1) / 2 - nx * ny / 2
        correction = np.sign(dz) * 0.5
        _, counts = np.unique(ranks, return_counts=True)
        sigma = math.sqrt(
            (nx * ny / 12) * ((nx + ny + 1) - np.sum(counts**3 - counts) / ((nx + ny) * (nx + ny - 1)))
        )
        return float((dz - correction) / sigma - quantile)

    mu_min, mu_max = float(x.min() - y.max()), float(x.max() - y.min())
    z = stats.norm.ppf((1 - confidence) / 2)

    def root(quantile: float) -> float:
        if wdiff(mu_min, quantile) <= 0:
            return mu_min
        if wdiff(mu_max, quantile) >= 0:
            return mu_max
        return float(optimize.brentq(wdiff, mu_min, mu_max, args=(quantile,), xtol=1e-12))

    return root(-z), root(z)


@pytest.mark.parametrize(("n", "m", "shift"), [(30, 40, 0.0), (60, 50, 8.0), (25, 25, -5.0)])
def test_interval_is_kayentas_and_estimate_is_the_median_difference(n: int, m: int, shift: float) -> None:
    rng = _rng()
    stable = rng.normal(100.0, 10.0, m)
    canary = rng.normal(100.0 + shift, 10.0, n)
    estimate, lower, upper = hodges_lehmann(canary, stable, 0.98)
    ref_lower, ref_upper = _kayenta_interval(canary, stable, 0.98)
    assert lower == pytest.approx(ref_lower, abs=1e-9)
    assert upper == pytest.approx(ref_upper, abs=1e-9)
    assert estimate == pytest.approx(float(np.median(np.subtract.outer(canary, stable))))
    assert lower < estimate < upper


def test_order_statistics_by_bisection_match_sorting() -> None:
    rng = _rng()
    x = np.sort(np.round(rng.normal(50, 10, 80), 1))  # with ties
    y = np.sort(np.round(rng.normal(52, 10, 70), 1))
    everything = np.sort(np.subtract.outer(x, y).ravel())
    ranks = [1, 17, 2800, 2801, 5600]
    assert kth_differences(x, y, ranks, max_pairs=0) == {r: float(everything[r - 1]) for r in ranks}
    assert kth_differences(x, y, ranks) == {r: float(everything[r - 1]) for r in ranks}


def test_binary_samples_use_the_difference_of_proportions() -> None:
    stable = np.zeros(1000)
    stable[:10] = 1
    canary = np.zeros(1000)
    canary[:50] = 1
    test = shift_test(canary, stable, 0.98)
    assert test.method == PROPORTIONS
    assert test.estimate == pytest.approx(0.04)
    assert 0 < test.lower < 0.04 < test.upper
    # the Hodges-Lehmann shift of 0/1 data is degenerate: why the proportions are used
    assert hodges_lehmann(canary, stable, 0.98) == (0.0, 0.0, 0.0)
    difference, lower, upper = proportion_difference(stable, stable, 0.98)
    assert difference == 0 and lower < 0 < upper
    assert shift_test(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0]), 0.98).method == HODGES_LEHMANN


# --- classification ------------------------------------------------------------------------------


def _latency(rng: np.random.Generator, n: int = 200, factor: float = 1.0) -> np.ndarray:
    return rng.lognormal(np.log(40.0), 0.4, n) * factor


def test_high_low_and_pass() -> None:
    rng = _rng()
    stable = _latency(rng)
    high = classify_metric(MetricConfig("lat"), stable, _latency(rng, factor=1.5))
    assert high.classification == HIGH
    assert high.effect == pytest.approx(high.canary.mean / high.stable.mean)
    assert "lies above the band" in high.reason
    low = classify_metric(MetricConfig("lat"), stable, _latency(rng, factor=0.6))
    assert low.classification == LOW and "below" in low.reason
    same = classify_metric(MetricConfig("lat"), stable, _latency(rng))
    assert same.classification == PASS and "no significant change" in same.reason


def test_direction_of_interest() -> None:
    rng = _rng()
    stable, slower, faster = _latency(rng), _latency(rng, factor=1.5), _latency(rng, factor=0.6)
    only_up = MetricConfig("lat", direction="increase")
    assert classify_metric(only_up, stable, slower).classification == HIGH
    faster_result = classify_metric(only_up, stable, faster)
    assert faster_result.classification == PASS
    assert "only increases count" in faster_result.reason
    only_down = MetricConfig("throughput", direction="decrease")
    assert classify_metric(only_down, stable, slower).classification == PASS
    assert classify_metric(only_down, stable, faster).classification == LOW


def test_allowed_effect_size() -> None:
    rng = _rng()
    stable, slower = _latency(rng), _latency(rng, factor=1.3)
    tolerant = MetricConfig("lat", effect=EffectSize(allowed_increase=1.5))
    result = classify_metric(tolerant, stable, slower)
    assert result.classification == PASS and "within the allowed increase 1.5" in result.reason
    strict = MetricConfig("lat", effect=EffectSize(allowed_increase=1.2))
    assert classify_metric(strict, stable, slower).classification == HIGH
    by_median = MetricConfig("lat", effect=EffectSize(measure="median_ratio", allowed_increase=1.5))
    assert classify_metric(by_median, stable, slower).classification == PASS
    cles = classify_metric(
        MetricConfig("lat", effect=EffectSize(measure="cles", allowed_increase=0.6)), stable, slower
    )
    assert 0.6 < cles.effect <= 1 and cles.classification == HIGH
    cles_tolerant = MetricConfig("lat", effect=EffectSize(measure="cles", allowed_increase=0.95))
    assert classify_metric(cles_tolerant, stable, slower).classification == PASS


def test_nodata_too_few_samples_and_missing() -> None:
    result = classify_metric(MetricConfig("lat"), [1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert result.classification == NODATA
    assert "stable has 3, canary 3; at least 10" in result.reason
    assert (
        classify_metric(MetricConfig("lat", min_samples=3), [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]).test is not None
    )
    must = classify_metric(MetricConfig("lat", must_have_data=True), [], [1.0] * 20)
    assert must.classification == NODATA_FAIL and not must.critical_failure
    # Kayenta: a critical metric without data is a failure of the whole judgement
    critical = classify_metric(MetricConfig("lat", critical=True), [1.0] * 20, [1.0] * 3)
    assert critical.classification == NODATA_FAIL and critical.critical_failure
    assert critical.reason.endswith("at least 10 on each side are needed (a critical metric must have data)")
    result = judge(JudgeConfig(metrics=(MetricConfig("lat"),)), {"lat": [1.0] * 20}, {}, canary_name="c.json")
    assert result.metrics[0].classification == NODATA
    assert result.metrics[0].reason == '"lat" is not in c.json'


def test_nan_strategies_and_infinite_values() -> None:
    rng = _rng()
    stable = list(_latency(rng, 30))
    canary = [*_latency(rng, 30), math.nan, math.nan]
    removed = classify_metric(MetricConfig("lat"), stable, canary)
    assert removed.canary.count == 30
    replaced = classify_metric(MetricConfig("lat", nan_strategy="replace"), stable, canary)
    assert replaced.canary.count == 32 and replaced.canary.min == 0
    broken = classify_metric(MetricConfig("lat", critical=True), stable, [*canary, math.inf])
    assert broken.classification == ERROR and "infinite" in broken.reason and broken.critical_failure


def test_identical_and_constant_samples_pass() -> None:
    same = classify_metric(MetricConfig("m"), [3.0, 1.0, 2.0] * 5, [1.0, 2.0, 3.0] * 5)
    assert same.classification == PASS and "identical" in same.reason and same.effect == 1
    constant = classify_metric(MetricConfig("m"), [0.0] * 20, [0.0] * 30)
    assert constant.classification == PASS and "same" in constant.reason


def test_outlier_removal() -> None:
    rng = _rng()
    stable = _latency(rng)
    canary = np.concatenate([_latency(rng), [1e6, 2e6]])
    kept = classify_metric(MetricConfig("lat"), stable, canary)
    cleaned = classify_metric(MetricConfig("lat", outliers="remove"), stable, canary)
    assert kept.canary.count == 202 and cleaned.canary.count == 200
    assert cleaned.canary.max < 1e3


# --- scoring -------------------------------------------------------------------------------------


def _metrics(
    rng: np.random.Generator, worse: set[str], names: list[str]
) -> tuple[dict[str, np.ndarray], ...]:
    stable = {n: _latency(rng) for n in names}
    canary = {n: _latency(rng, factor=1.6 if n in worse else 1.0) for n in names}
    return stable, canary


def test_score_thresholds_pass_marginal_fail() -> None:
    rng = _rng()
    names = ["a", "b", "c", "d"]
    config = JudgeConfig(
        metrics=tuple(MetricConfig(n) for n in names), pass_threshold=95, marginal_threshold=75
    )
    stable, canary = _metrics(rng, set(), names)
    ok = judge(config, stable, canary)
    assert ok.verdict == VERDICT_PASS and ok.score == 100 and ok.reason == "every metric passed"
    stable, canary = _metrics(rng, {"d"}, names)
    marginal = judge(config, stable, canary)
    assert marginal.score == 75 and marginal.verdict == VERDICT_MARGINAL and marginal.reason == "d High"
    assert [m.weight for m in marginal.metrics] == [25, 25, 25, 25]
    stable, canary = _metrics(rng, {"c", "d"}, names)
    failed = judge(config, stable, canary)
    assert failed.score == 50 and failed.verdict == VERDICT_FAIL


def test_group_weights_as_kayenta() -> None:
    assert resolve_weights(["lat", "err", "cpu"], {"lat": 50}) == {"lat": 50, "err": 25, "cpu": 25}
    assert resolve_weights(["lat", "err"], {}) == {"lat": 50, "err": 50}
    rng = _rng()
    metrics = (
        MetricConfig("p50", group="latency"),
        MetricConfig("p99", group="latency"),
        MetricConfig("err"),
    )
    stable, canary = _metrics(rng, {"p99"}, ["p50", "p99", "err"])
    result = judge(JudgeConfig(metrics=metrics, group_weights={"latency": 80}), stable, canary)
    assert result.group_scores == {"latency": 50, "err": 100}
    assert result.score == pytest.approx(0.8 * 50 + 0.2 * 100)
    assert [m.weight for m in result.metrics] == pytest.approx([40, 40, 20])


def test_nodata_metrics_do_not_count_but_half_of_them_fail() -> None:
    rng = _rng()
    metrics = (MetricConfig("a"), MetricConfig("b"), MetricConfig("c"))
    stable = {"a": _latency(rng), "b": _latency(rng), "c": [1.0]}
    canary = {"a": _latency(rng), "b": _latency(rng), "c": [1.0]}
    one = judge(JudgeConfig(metrics=metrics), stable, canary)
    assert [m.classification for m in one.metrics] == [PASS, PASS, NODATA]
    assert one.group_scores["c"] == 100 and one.verdict == VERDICT_PASS
    half = judge(JudgeConfig(metrics=metrics[1:]), stable, canary)
    assert half.score == 0 and half.verdict == VERDICT_FAIL and "1 of 2 metrics have no data" in half.reason


def test_critical_metric_fails_the_whole_judgement() -> None:
    rng = _rng()
    names = [f"m{i}" for i in range(10)]
    stable, canary = _metrics(rng, {"m0"}, names)
    plain = JudgeConfig(metrics=tuple(MetricConfig(n) for n in names))
    assert judge(plain, stable, canary).score == 90
    critical = JudgeConfig(metrics=(MetricConfig("m0", critical=True), *plain.metrics[1:]))
    result = judge(critical, stable, canary)
    assert result.score == 0 and result.verdict == VERDICT_FAIL
    assert result.reason == "critical metric failed: m0" and result.metrics[0].critical_failure
    # High, but within the critical effect size: counts as an ordinary failure
    lenient = JudgeConfig(
        metrics=(
            MetricConfig("m0", critical=True, effect=EffectSize(critical_increase=3.0)),
            *plain.metrics[1:],
        )
    )
    result = judge(lenient, stable, canary)
    assert result.metrics[0].classification == HIGH and not result.metrics[0].critical_failure
    assert result.score == 90


def test_error_counts_as_a_failure_in_the_score() -> None:
    rng = _rng()
    config = JudgeConfig(metrics=(MetricConfig("a"), MetricConfig("b")))
    result = judge(
        config, {"a": _latency(rng), "b": _latency(rng)}, {"a": _latency(rng), "b": [math.inf] * 20}
    )
    assert result.metrics[1].classification == ERROR and result.score == 50
