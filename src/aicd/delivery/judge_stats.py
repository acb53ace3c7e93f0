"""The statistics of the canary judge: Mann-Whitney U, Hodges-Lehmann shift, a proportion interval.

Kayenta's judge (NetflixACAJudge, kayenta-mannwhitney's ``MannWhitney.scala``) compares the
canary ("experiment") with the stable version ("control") by the shift between the two samples:
the Hodges-Lehmann estimate (the median of all pairwise differences canary - stable) and its
confidence interval, found the way R's ``wilcox.test(conf.int = TRUE, exact = FALSE)`` finds it:
the shifts ``mu`` where the normal approximation of the rank-sum statistic of ``canary - mu``
against ``stable``, with the tie and continuity corrections, crosses the quantiles ``±z``.

That statistic is a step function of ``mu`` that jumps at the pairwise differences, so the
roots are order statistics of those differences: with ``N = n·m`` differences ``D(1) <= ... <=
D(N)`` and ``sigma`` the rank-sum standard deviation (ties within each sample corrected), the
interval is ``[D(k), D(N + 1 - k)]`` with ``k = ceil(N/2 - 1/2 - z·sigma)``. This module
computes those order statistics directly instead of root-finding (same numbers, a test checks it).

The p-value is scipy's (``scipy.stats.mannwhitneyu``, two-sided). scipy is imported when first
used so that importing the judge stays cheap.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

# Above this many pairwise differences the order statistics are found by bisection on the value
# (memory O(n + m)) instead of materialising all n·m differences (exact, and fast below this).
MAX_MATERIALISED_PAIRS = 4_000_000

HODGES_LEHMANN = "hodges-lehmann"
PROPORTIONS = "proportions"


def scipy_stats() -> Any:
    """`scipy.stats`, imported on first use (it takes a few hundred ms)."""
    return importlib.import_module("scipy.stats")


@dataclass(frozen=True)
class ShiftTest:
    """Canary against stable: the test, the estimated shift and its confidence interval."""

    u: float  # Mann-Whitney U of the canary sample (scipy's statistic for mannwhitneyu(canary, stable))
    p_value: float  # two-sided
    estimate: float  # canary - stable: Hodges-Lehmann shift, or difference of proportions
    lower: float
    upper: float
    confidence: float
    method: str  # HODGES_LEHMANN | PROPORTIONS


def z_quantile(confidence: float) -> float:
    """The two-sided normal quantile: 2.326 for 98 %."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def mann_whitney(canary: Array, stable: Array) -> tuple[float, float]:
    """(U of the canary sample, two-sided p-value), exactly as scipy computes them."""
    result = scipy_stats().mannwhitneyu(canary, stable, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def is_binary(*samples: Array) -> bool:
    """Every value is 0 or 1 (a per-request success/error indicator)."""
    return all(bool(np.all((s == 0) | (s == 1))) for s in samples)


def shift_test(canary: Array, stable: Array, confidence: float) -> ShiftTest:
    """The judge's test. Needs at least one value on each side and two distinct values overall."""
    u, p_value = mann_whitney(canary, stable)
    if is_binary(canary, stable):
        estimate, lower, upper = proportion_difference(canary, stable, confidence)
        method = PROPORTIONS
    else:
        estimate, lower, upper = hodges_lehmann(canary, stable, confidence)
        method = HODGES_LEHMANN
    return ShiftTest(u, p_value, estimate, lower, upper, confidence, method)


def _tie_term(sorted_values: Array) -> float:
    _, counts = np.unique(sorted_values, return_counts=True)
    counts = counts.astype(np.float64)
    return float(np.sum(counts**3 - counts))


def hodges_lehmann(canary: Array, stable: Array, confidence: float) -> tuple[float, float, float]:
    """(estimate, lower, upper): the Hodges-Lehmann shift canary - stable and its interval."""
    x = np.sort(canary)
    y = np.sort(stable)
    n, m = x.size, y.size
    pairs = n * m
    total = n + m
    ties = _tie_term(x) + _tie_term(y)
    variance = n * m / 12 * ((total + 1) - ties / (total * (total - 1))) if total > 1 else 0.0
    sigma = math.sqrt(max(variance, 0.0))
    k = math.ceil(pairs / 2 - 0.5 - z_quantile(confidence) * sigma)
    k = min(max(k, 1), pairs)
    middle = [(pairs + 1) // 2, pairs // 2 + 1]  # the median: one rank (N odd) or the mean of two
    ranks = sorted({k, pairs + 1 - k, *middle})
    found = kth_differences(x, y, ranks)
    estimate = (found[middle[0]] + found[middle[1]]) / 2
    return estimate, found[k], found[pairs + 1 - k]


def kth_differences(
    x: Array, y: Array, ranks: list[int], max_pairs: int = MAX_MATERIALISED_PAIRS
) -> dict[int, float]:
    """The order statistics D(rank) (1-based) of the differences x_i - y_j; x and y sorted.

    Up to `max_pairs` differences they are materialised and partitioned; beyond, bisection."""
    if x.size * y.size <= max_pairs:
        diffs = np.subtract.outer(x, y).ravel()
        picked = np.partition(diffs, [r - 1 for r in ranks])
        return {r: float(picked[r - 1]) for r in ranks}
    return {r: _kth_by_bisection(x, y, r) for r in ranks}


def _boundary(x: Array, y: Array, t: float) -> npt.NDArray[np.intp]:
    """Per x_i, the first j with x_i - y_j <= t (as computed in floating point; y sorted).

    ``x_i - y_j`` is monotone in ``y_j``, so those j are a suffix. searchsorted finds it up to
    rounding; the loops move the boundary by whole runs of equal values until it is exact."""
    m = y.size
    bound = np.searchsorted(y, x - t, side="left")
    while True:
        prev = bound - 1
        move = prev >= 0
        move[move] = x[move] - y[prev[move]] <= t
        if not move.any():
            break
        bound[move] = np.searchsorted(y, y[prev[move]], side="left")
    while True:
        move = bound < m
        move[move] = x[move] - y[bound[move]] > t
        if not move.any():
            break
        bound[move] = np.searchsorted(y, y[bound[move]], side="right")
    return bound


def _kth_by_bisection(x: Array, y: Array, rank: int) -> float:
    """D(rank) without materialising the differences: bisection on the value, counting pairs."""
    m = y.size

    def count_at_most(t: float) -> int:
        return int(np.sum(m - _boundary(x, y, t)))

    def next_above(t: float) -> float:
        last = _boundary(x, y, t) - 1  # the last j with x_i - y_j > t
        ok = last >= 0
        return float(np.min(x[ok] - y[last[ok]]))

    lo = float(np.nextafter(x[0] - y[-1], -np.inf))
    hi = float(x[-1] - y[0])
    while True:
        candidate = next_above(lo)
        if count_at_most(candidate) >= rank:
            return candidate
        lo = candidate
        mid = lo + (hi - lo) / 2
        if count_at_most(mid) >= rank:
            hi = mid
        else:
            lo = mid


def _wilson(successes: float, n: int, z: float) -> tuple[float, float]:
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion_difference(canary: Array, stable: Array, confidence: float) -> tuple[float, float, float]:
    """(difference, lower, upper) of the canary's and stable's proportions of ones.

    Newcombe's hybrid score interval (Newcombe 1998, method 10) from the two Wilson intervals:
    it behaves with rare events and zero counts, where the Wald interval does not.
    """
    z = z_quantile(confidence)
    pc = float(np.mean(canary))
    ps = float(np.mean(stable))
    lc, uc = _wilson(float(np.sum(canary)), canary.size, z)
    ls, us = _wilson(float(np.sum(stable)), stable.size, z)
    difference = pc - ps
    lower = difference - math.sqrt((pc - lc) ** 2 + (us - ps) ** 2)
    upper = difference + math.sqrt((uc - pc) ** 2 + (ps - ls) ** 2)
    return difference, lower, upper


def remove_outliers(values: Array, factor: float) -> Array:
    """Kayenta's IQR detector with reduced sensitivity: keep values inside
    ``[min(P1, Q1 - factor·IQR), max(P99, Q3 + factor·IQR)]``."""
    if values.size < 4:
        return values
    p1, q1, q3, p99 = np.percentile(values, [1, 25, 75, 99])
    iqr = q3 - q1
    low = min(p1, q1 - factor * iqr)
    high = max(p99, q3 + factor * iqr)
    kept: Array = values[(values >= low) & (values <= high)]
    return kept
