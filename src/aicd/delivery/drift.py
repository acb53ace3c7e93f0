"""Model-aware canary checks: did the canary's predictions drift from stable's? Pure functions.

Population stability index, with the stable version as the expected distribution::

    PSI = sum over bins (or classes) of (canary_share - stable_share) * ln(canary_share / stable_share)

Every term is >= 0, so PSI is too; it is symmetric in the two samples. Numeric values are
binned at the stable sample's quantiles (deciles by default; the outer bins are open-ended);
class counts compare class by class, over the classes either side predicted.

Empty bins and classes: a share of 0 makes ln(0) infinite, so a share below ``epsilon``
(1e-4, i.e. 0.01 %) counts as ``epsilon``. The shares are not renormalised: a class only one side
predicts then adds ``(share - epsilon) · ln(share / epsilon)`` (e.g. 0.05 adds 0.31, enough for
"significant" drift on its own), which is the point.

Reading a PSI, the convention of credit scoring, where the index comes from (Siddiqi, *Credit
Risk Scorecards*, Wiley 2006; see also Yurdakul, *Statistical Properties of Population
Stability Index*, 2018): below 0.1 no significant change; 0.1 to 0.25 a moderate shift, worth a
look; above 0.25 a significant shift.

Chi-square (class counts only): ``scipy.stats.chi2_contingency`` on the 2 x k table of stable
and canary counts (classes neither side predicted are left out; Yates' correction for two
classes, scipy's default). With large samples it flags shifts too small to matter, so it
warns, and PSI decides: the check fails on significant PSI, warns on moderate PSI or a
significant chi-square (p below ``alpha``), and passes otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from aicd.delivery.judge_stats import Array, scipy_stats
from aicd.errors import ConfigError

EPSILON = 1e-4
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
ALPHA = 0.02  # the judge's 98 % confidence
BINS = 10

STABLE = "stable"
MODERATE = "moderate"
SIGNIFICANT = "significant"
NODATA = "nodata"

DRIFT_PASS = "pass"
DRIFT_WARN = "warn"
DRIFT_FAIL = "fail"


@dataclass(frozen=True)
class DriftThresholds:
    psi_moderate: float = PSI_MODERATE
    psi_significant: float = PSI_SIGNIFICANT
    alpha: float = ALPHA
    epsilon: float = EPSILON
    bins: int = BINS


@dataclass(frozen=True)
class Psi:
    value: float
    labels: list[str]  # bin ranges or class names
    stable_share: list[float]
    canary_share: list[float]


@dataclass(frozen=True)
class ChiSquare:
    statistic: float
    p_value: float
    dof: int


@dataclass(frozen=True)
class DriftResult:
    psi: Psi | None
    level: str  # stable | moderate | significant | nodata
    chi_square: ChiSquare | None
    verdict: str  # pass | warn | fail
    reason: str
    stable_total: int = 0
    canary_total: int = 0
    classes: dict[str, tuple[int, int]] = field(default_factory=dict)  # class -> (stable, canary)


def psi_from_shares(
    stable: Sequence[float] | Array, canary: Sequence[float] | Array, epsilon: float = EPSILON
) -> float:
    """PSI of two share vectors over the same bins (each adding up to 1), shares floored at epsilon."""
    expected = np.maximum(np.asarray(stable, dtype=np.float64), epsilon)
    actual = np.maximum(np.asarray(canary, dtype=np.float64), epsilon)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_level(value: float, thresholds: DriftThresholds = DriftThresholds()) -> str:
    if value > thresholds.psi_significant:
        return SIGNIFICANT
    if value >= thresholds.psi_moderate:
        return MODERATE
    return STABLE


def psi_numeric(
    stable: Sequence[float] | Array,
    canary: Sequence[float] | Array,
    bins: int = BINS,
    epsilon: float = EPSILON,
) -> Psi:
    """PSI of numeric values, binned at the stable sample's quantiles. NaN values are left out."""
    s = np.asarray(stable, dtype=np.float64)
    c = np.asarray(canary, dtype=np.float64)
    s = s[~np.isnan(s)]
    c = c[~np.isnan(c)]
    if s.size == 0 or c.size == 0:
        raise ConfigError("PSI: no values to compare (a side is empty)")
    inner = np.unique(np.quantile(s, np.linspace(0, 1, bins + 1)[1:-1]))
    # bin i holds edges[i] < v <= edges[i + 1] (edges below); the outer bins are open-ended
    s_counts = np.bincount(np.searchsorted(inner, s, side="left"), minlength=inner.size + 1)
    c_counts = np.bincount(np.searchsorted(inner, c, side="left"), minlength=inner.size + 1)
    s_share = s_counts / s.size
    c_share = c_counts / c.size
    edges = [-math.inf, *inner.tolist(), math.inf]
    labels = [f"({edges[i]:.6g}, {edges[i + 1]:.6g}]" for i in range(len(edges) - 1)]
    return Psi(psi_from_shares(s_share, c_share, epsilon), labels, s_share.tolist(), c_share.tolist())


def _classes(stable: Mapping[str, int], canary: Mapping[str, int]) -> list[str]:
    return sorted({*stable, *canary})


def psi_classes(stable: Mapping[str, int], canary: Mapping[str, int], epsilon: float = EPSILON) -> Psi:
    """PSI of predicted class counts (classes either side predicted)."""
    names = _classes(stable, canary)
    s_total = sum(stable.values())
    c_total = sum(canary.values())
    if s_total <= 0 or c_total <= 0:
        raise ConfigError("PSI: no predictions to compare (a side has none)")
    s_share = [stable.get(n, 0) / s_total for n in names]
    c_share = [canary.get(n, 0) / c_total for n in names]
    return Psi(psi_from_shares(s_share, c_share, epsilon), names, s_share, c_share)


def chi_square_classes(stable: Mapping[str, int], canary: Mapping[str, int]) -> ChiSquare:
    """Chi-square test of homogeneity on the 2 x k table of class counts."""
    names = [n for n in _classes(stable, canary) if stable.get(n, 0) + canary.get(n, 0) > 0]
    if len(names) < 2:
        return ChiSquare(0.0, 1.0, 0)  # one class: the two sides cannot differ
    table = np.array([[stable.get(n, 0) for n in names], [canary.get(n, 0) for n in names]])
    result = scipy_stats().chi2_contingency(table)
    return ChiSquare(float(result.statistic), float(result.pvalue), int(result.dof))


def prediction_drift(
    stable: Mapping[str, int], canary: Mapping[str, int], thresholds: DriftThresholds = DriftThresholds()
) -> DriftResult:
    """The model-aware check on predicted class counts: PSI decides, chi-square warns."""
    classes = {n: (int(stable.get(n, 0)), int(canary.get(n, 0))) for n in _classes(stable, canary)}
    s_total = sum(stable.values())
    c_total = sum(canary.values())
    if s_total <= 0 or c_total <= 0:
        empty = " and ".join(side for side, total in (("stable", s_total), ("canary", c_total)) if total <= 0)
        reason = f"no predictions from {empty}: the prediction distributions cannot be compared"
        return DriftResult(None, NODATA, None, DRIFT_WARN, reason, s_total, c_total, classes)
    psi = psi_classes(stable, canary, thresholds.epsilon)
    chi = chi_square_classes(stable, canary)
    level = psi_level(psi.value, thresholds)
    significant = chi.p_value < thresholds.alpha
    text = f"PSI {psi.value:.4g} ({level}); chi-square {chi.statistic:.4g}, p = {chi.p_value:.3g}"
    if level == SIGNIFICANT:
        verdict = DRIFT_FAIL
        reason = f"the canary's predictions drifted: {text}, PSI above {thresholds.psi_significant:g}"
    elif level == MODERATE or significant:
        verdict = DRIFT_WARN
        reason = f"the canary's predictions moved: {text}"
    else:
        verdict = DRIFT_PASS
        reason = f"the canary predicts like stable: {text}"
    return DriftResult(psi, level, chi, verdict, reason, s_total, c_total, classes)
