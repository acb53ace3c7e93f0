"""Live model quality from delayed labels: is the candidate's accuracy (or error) worse than stable's?

The router joins labels to the answers they judge (:mod:`aicd.deploy.router.feedback`); this
module compares two revisions on them:

- classes: a one-sided two-proportion z-test of non-inferiority. H0: the candidate's accuracy is
  at least stable's minus ``margin``; the candidate fails when the data reject H0 at ``alpha``::

      z = (p_stable - p_candidate - margin) / sqrt(p (1 - p) (1/n_stable + 1/n_candidate))

  with ``p`` the pooled accuracy. With ``margin`` 0 this is the classic two-proportion test
  (one-sided); a small margin (default 2 points) keeps two equally good models from failing each
  other by chance more often than ``alpha``, and still catches a real drop of several points once
  a few hundred labels per side have arrived.
- numbers: Mann-Whitney U on the absolute errors (one-sided: the candidate's errors larger), and
  the MAE of the candidate above stable's by more than ``margin`` (in the label's unit).

Below ``min_labels`` labels on either side there is no verdict (``nodata``): a note, not a failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

CLASSES = "classes"
NUMBERS = "numbers"
KINDS = (CLASSES, NUMBERS)
PASS, FAIL, NODATA = "pass", "fail", "nodata"

DEFAULT_MARGIN = 0.02
DEFAULT_ALPHA = 0.05
DEFAULT_MIN_LABELS = 30


@dataclass(frozen=True)
class QualityConfig:
    """How live quality is judged (``environments.<env>.feedback`` in aicd.yml)."""

    labels: str = CLASSES  # classes: accuracy; numbers: MAE/RMSE
    margin: float = DEFAULT_MARGIN  # accuracy points (0.02 = 2 points), or error units for numbers
    alpha: float = DEFAULT_ALPHA
    min_labels: int = DEFAULT_MIN_LABELS

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "margin": self.margin,
            "alpha": self.alpha,
            "min_labels": self.min_labels,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QualityConfig:
        return cls(
            labels=str(data.get("labels", CLASSES)),
            margin=float(data.get("margin", DEFAULT_MARGIN)),
            alpha=float(data.get("alpha", DEFAULT_ALPHA)),
            min_labels=int(data.get("min_labels", DEFAULT_MIN_LABELS)),
        )


@dataclass(frozen=True)
class Side:
    """One revision's labelled answers over a period."""

    labels: int = 0
    correct: int = 0
    numeric_labels: int = 0
    abs_error_sum: float = 0.0
    sq_error_sum: float = 0.0
    abs_errors: tuple[float, ...] = ()  # the most recent absolute errors

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labels if self.labels else None

    @property
    def mae(self) -> float | None:
        return self.abs_error_sum / self.numeric_labels if self.numeric_labels else None

    @property
    def rmse(self) -> float | None:
        return math.sqrt(self.sq_error_sum / self.numeric_labels) if self.numeric_labels else None

    def to_json(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        return {
            "labels": self.labels,
            "correct": self.correct,
            "accuracy": rounded(self.accuracy),
            "numeric_labels": self.numeric_labels,
            "mae": rounded(self.mae),
            "rmse": rounded(self.rmse),
        }


@dataclass(frozen=True)
class QualityResult:
    verdict: str  # pass | fail | nodata
    reason: str
    kind: str
    stable: Side
    canary: Side
    statistic: float | None = None  # z (classes) or U (numbers)
    p_value: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "kind": self.kind,
            "stable": self.stable.to_json(),
            "canary": self.canary.to_json(),
            "statistic": None if self.statistic is None else round(self.statistic, 6),
            "p_value": None if self.p_value is None else round(self.p_value, 9),
        }


def two_proportion_worse(
    stable_correct: int, stable_n: int, canary_correct: int, canary_n: int, margin: float = 0.0
) -> tuple[float, float]:
    """(z, one-sided p-value) of "the candidate's accuracy is below stable's minus ``margin``"."""
    if stable_n <= 0 or canary_n <= 0:
        raise ValueError("both sides need at least one label")
    p_stable, p_canary = stable_correct / stable_n, canary_correct / canary_n
    pooled = (stable_correct + canary_correct) / (stable_n + canary_n)
    variance = pooled * (1 - pooled) * (1 / stable_n + 1 / canary_n)
    difference = p_stable - p_canary - margin
    if variance <= 0:  # every answer right (or every one wrong) on both sides: no spread
        z = math.inf if difference > 0 else (-math.inf if difference < 0 else 0.0)
    else:
        z = difference / math.sqrt(variance)
    p_value = 1.0 - NormalDist().cdf(z) if math.isfinite(z) else (0.0 if z > 0 else 1.0)
    return z, p_value


def compare(stable: Side, canary: Side, config: QualityConfig) -> QualityResult:
    """The candidate's live quality against stable's."""
    kind = config.labels
    fewest = min(stable.labels, canary.labels)
    if kind == NUMBERS:
        fewest = min(stable.numeric_labels, canary.numeric_labels)
    if fewest < config.min_labels:
        return QualityResult(
            NODATA,
            f"live {_name(kind)}: {fewest} labels on a side, fewer than {config.min_labels}: no verdict "
            f"(stable {_describe(stable, kind)}, canary {_describe(canary, kind)})",
            kind,
            stable,
            canary,
        )
    if kind == NUMBERS:
        return _compare_errors(stable, canary, config)
    z, p_value = two_proportion_worse(
        stable.correct, stable.labels, canary.correct, canary.labels, config.margin
    )
    both = f"canary {_describe(canary, kind)} vs stable {_describe(stable, kind)}"
    worse = p_value < config.alpha
    if math.isfinite(z):
        test = f"two-proportion z = {z:.2f}, p = {p_value:.3g}, margin {config.margin * 100:g} points"
    else:  # no spread: every answer right (or every one wrong) on both sides; z is +-inf
        every = "right" if canary.correct == canary.labels else "wrong"
        test = f"every answer {every} on both sides: nothing to test, margin {config.margin * 100:g} points"
    reason = f"live accuracy lower: {both} ({test})" if worse else f"live accuracy {both}: not worse ({test})"
    return QualityResult(FAIL if worse else PASS, reason, kind, stable, canary, z, p_value)


def _compare_errors(stable: Side, canary: Side, config: QualityConfig) -> QualityResult:
    from aicd.delivery.judge_stats import scipy_stats

    both = f"canary {_describe(canary, NUMBERS)} vs stable {_describe(stable, NUMBERS)}"
    u: float | None = None
    p_value: float | None = None
    if canary.abs_errors and stable.abs_errors:
        result = scipy_stats().mannwhitneyu(canary.abs_errors, stable.abs_errors, alternative="greater")
        u, p_value = float(result.statistic), float(result.pvalue)
    mae_c, mae_s = canary.mae or 0.0, stable.mae or 0.0
    worse = p_value is not None and p_value < config.alpha and mae_c - mae_s > config.margin
    shown = "n/a" if p_value is None else f"{p_value:.3g}"
    test = f"Mann-Whitney U = {u}, p = {shown}, margin {config.margin:g}"
    reason = f"live errors larger: {both} ({test})" if worse else f"live errors {both}: not worse ({test})"
    return QualityResult(FAIL if worse else PASS, reason, NUMBERS, stable, canary, u, p_value)


def _name(kind: str) -> str:
    return "errors" if kind == NUMBERS else "accuracy"


def _describe(side: Side, kind: str) -> str:
    if kind == NUMBERS:
        mae, rmse = side.mae, side.rmse
        if mae is None or rmse is None:
            return "no numeric labels"
        return f"MAE {mae:.4g}, RMSE {rmse:.4g} of {side.numeric_labels}"
    accuracy = side.accuracy
    return "no labels" if accuracy is None else f"{accuracy:.1%} of {side.labels}"


def parse_quality(raw: Mapping[str, Any], where: str) -> tuple[QualityConfig, list[str]]:
    """The judging keys of ``environments.<env>.feedback`` (labels, margin, alpha, min_labels)."""
    errors: list[str] = []
    config = QualityConfig()
    labels = raw.get("labels", CLASSES)
    if labels not in KINDS:
        errors.append(f"{where}.labels: {labels!r} is not one of {', '.join(KINDS)}")
        labels = CLASSES
    margin = raw.get("margin", DEFAULT_MARGIN)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < math.inf:
        errors.append(f"{where}.margin must be a number, 0 or more (is {margin!r})")
        margin = DEFAULT_MARGIN
    alpha = raw.get("alpha", DEFAULT_ALPHA)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
        errors.append(f"{where}.alpha must be a number between 0 and 0.5 (is {alpha!r})")
        alpha = DEFAULT_ALPHA
    least = raw.get("min_labels", DEFAULT_MIN_LABELS)
    if isinstance(least, bool) or not isinstance(least, int) or least < 1:
        errors.append(f"{where}.min_labels must be a whole number, 1 or more (is {least!r})")
        least = DEFAULT_MIN_LABELS
    if labels == CLASSES and margin >= 1:
        errors.append(
            f"{where}.margin is in accuracy points for labels: classes (0.02 = 2 points); is {margin}"
        )
    config = QualityConfig(labels=str(labels), margin=float(margin), alpha=float(alpha), min_labels=least)
    return config, errors


def side_of(counters: Mapping[str, Any]) -> Side:
    """A :class:`Side` from the router's per-revision ``quality`` counters."""
    return Side(
        labels=int(counters.get("labels", 0)),
        correct=int(counters.get("correct", 0)),
        numeric_labels=int(counters.get("numeric_labels", 0)),
        abs_error_sum=float(counters.get("abs_error_sum", 0.0)),
        sq_error_sum=float(counters.get("sq_error_sum", 0.0)),
        abs_errors=tuple(float(v) for v in counters.get("abs_errors", ())),
    )


def recent(values: Sequence[float], count: int) -> tuple[float, ...]:
    """The last ``count`` of ``values`` (all of them when fewer)."""
    return tuple(values[len(values) - min(count, len(values)) :])


__all__ = [
    "CLASSES",
    "FAIL",
    "KINDS",
    "NODATA",
    "NUMBERS",
    "PASS",
    "QualityConfig",
    "QualityResult",
    "Side",
    "compare",
    "parse_quality",
    "side_of",
    "two_proportion_worse",
]
