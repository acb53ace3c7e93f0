"""The statistics of A/B experiments: the sample size each variant needs, the tests, the verdict.

An experiment (``strategy: experiment``, :mod:`aicd.deploy.strategies.experiment`) splits users
between two or more revisions (variants ``a``, ``b``, ...; ``a`` is the control, the revision that
served before) and compares them on one primary metric:

- ``accuracy``: live accuracy from delayed labels (docs/feedback.md). Two-sided two-proportion
  z-test with the pooled variance::

      z = (p_b - p_a) / sqrt(p (1 - p) (1/n_a + 1/n_b))

- ``business``: a number the service reports per answer (a response header). Welch's t-test on the
  means (default; needs only each variant's count, sum and sum of squares), or Mann-Whitney U on
  the values (``test: mann-whitney``, for heavy-tailed values; it compares distributions, not means).

**Fixed horizon.** The sample size per variant is fixed before the experiment starts, from the
smallest effect worth detecting (``effect``), ``alpha`` and ``power``:

- proportions: ``n = (z_{1-a/2} sqrt(2 p̄ q̄) + z_{power} sqrt(p1 q1 + p2 q2))² / (p1 - p2)²`` with
  ``p1`` the expected accuracy of the control (``baseline``) and ``p2 = p1 ± effect`` (the larger
  of the two ``n``, so either direction is found with the stated power);
- means: ``n = 2 (z_{1-a/2} + z_{power})² sd² / effect²`` (``sd``: the metric's standard deviation);
  Mann-Whitney takes ``π/3`` times as many (its efficiency against the t-test on normal data).

With more than two variants each one is compared with the control at ``alpha / (k - 1)``
(Bonferroni), so the chance of any false winner stays at or under ``alpha``. The verdict is taken
once, when every variant has its sample (no peeking: looking at p-values as data come in and
stopping at the first significant one inflates false positives several-fold). If the experiment's
``duration`` ends first, the result is ``inconclusive`` and the control keeps serving.

The winner is the variant significantly better than the control on the primary metric (the best
of them when several are) that also passes the guardrails (errors and latency, judged as the
canary judge judges them); with none, the control.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

ACCURACY = "accuracy"
BUSINESS = "business"
METRICS = (ACCURACY, BUSINESS)
WELCH = "welch"
MANN_WHITNEY = "mann-whitney"
TESTS = (WELCH, MANN_WHITNEY)
MAXIMIZE, MINIMIZE = "maximize", "minimize"
GOALS = (MAXIMIZE, MINIMIZE)
WINNER, NO_DIFFERENCE, INCONCLUSIVE = "winner", "no difference", "inconclusive"
MAX_SAMPLES = 100_000_000

_normal = NormalDist()


def _z(q: float) -> float:
    return _normal.inv_cdf(q)


def sample_size_proportions(p1: float, p2: float, alpha: float, power: float) -> int:
    """Observations per group to find ``p1`` vs ``p2`` with a two-sided two-proportion test."""
    if not (0 < p1 < 1 and 0 < p2 < 1) or p1 == p2:
        raise ValueError("proportions must be strictly between 0 and 1 and differ")
    z_a, z_b = _z(1 - alpha / 2), _z(power)
    mean = (p1 + p2) / 2
    top = z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil((top / (p1 - p2)) ** 2)


def sample_size_means(sd: float, effect: float, alpha: float, power: float, test: str = WELCH) -> int:
    """Observations per group to find a difference ``effect`` of means (standard deviation ``sd``)."""
    if not sd > 0 or not effect > 0:
        raise ValueError("sd and effect must be above 0")
    n = 2 * ((_z(1 - alpha / 2) + _z(power)) * sd / effect) ** 2
    if test == MANN_WHITNEY:
        n *= math.pi / 3
    return math.ceil(n)


@dataclass(frozen=True)
class Design:
    """What an experiment measures and how many samples each variant needs before the verdict."""

    metric: str = ACCURACY
    effect: float = 0.05  # the smallest difference worth detecting (accuracy points, or the metric's unit)
    alpha: float = 0.05
    power: float = 0.8
    variants: int = 2
    baseline: float = 0.5  # accuracy: the control's expected accuracy (0.5 needs the most samples)
    sd: float | None = None  # business: the metric's standard deviation
    test: str = WELCH  # business: welch | mann-whitney
    goal: str = MAXIMIZE  # business: is more better (maximize) or less (minimize)
    samples: int | None = None  # given by hand: overrides the computed sample size

    @property
    def alpha_each(self) -> float:
        """The level of each comparison with the control (Bonferroni over k - 1 comparisons)."""
        return self.alpha / max(1, self.variants - 1)

    def per_variant(self) -> int:
        """The sample size each variant needs before the verdict."""
        if self.samples is not None:
            return self.samples
        if self.metric == ACCURACY:
            sizes = [
                sample_size_proportions(self.baseline, other, self.alpha_each, self.power)
                for other in (self.baseline - self.effect, self.baseline + self.effect)
                if 0 < other < 1
            ]
            if not sizes:
                raise ValueError(f"baseline {self.baseline} ± effect {self.effect} leaves no valid accuracy")
            return max(sizes)
        if self.sd is None:
            raise ValueError("a business metric needs sd (its standard deviation) or samples")
        return sample_size_means(self.sd, self.effect, self.alpha_each, self.power, self.test)

    def explain(self) -> str:
        n = self.per_variant()
        if self.samples is not None:
            how = "given by hand"
        elif self.metric == ACCURACY:
            how = (
                f"to find a {self.effect * 100:g}-point accuracy difference from {self.baseline:.0%} "
                f"with power {self.power:g} at alpha {self.alpha:g}"
            )
        else:
            how = (
                f"to find a difference of {self.effect:g} in the mean (sd {self.sd:g}, {self.test}) "
                f"with power {self.power:g} at alpha {self.alpha:g}"
            )
        if self.variants > 2:
            how += f" (each of {self.variants - 1} comparisons at {self.alpha_each:.4g}, Bonferroni)"
        unit = "labels" if self.metric == ACCURACY else "values"
        return f"{n} {unit} per variant {how}"

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "effect": self.effect,
            "alpha": self.alpha,
            "alpha_each": self.alpha_each,
            "power": self.power,
            "variants": self.variants,
            "baseline": self.baseline,
            "sd": self.sd,
            "test": self.test,
            "goal": self.goal,
            "samples_per_variant": self.per_variant(),
        }


@dataclass(frozen=True)
class VariantData:
    """One variant's samples of the primary metric."""

    name: str
    revision: str
    n: int = 0  # labels (accuracy) or values (business)
    successes: int = 0  # accuracy: right answers
    total: float = 0.0  # business: sum of the values
    total_sq: float = 0.0  # ... and of their squares
    values: tuple[float, ...] = ()  # business, Mann-Whitney: the values (the most recent ones)

    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def variance(self) -> float:
        if self.n < 2:
            return 0.0
        return max(0.0, (self.total_sq - self.total * self.total / self.n) / (self.n - 1))


@dataclass(frozen=True)
class Comparison:
    """One variant against the control."""

    variant: str
    test: str
    control_estimate: float
    estimate: float
    difference: float  # variant - control
    statistic: float
    p_value: float
    significant: bool
    better: bool  # significant and in the good direction
    guardrail: str | None = None  # why the guardrails (errors, latency) rule it out, else None

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "test": self.test,
            "control": round(self.control_estimate, 6),
            "estimate": round(self.estimate, 6),
            "difference": round(self.difference, 6),
            "statistic": round(self.statistic, 6) if math.isfinite(self.statistic) else None,
            "p_value": round(self.p_value, 9),
            "significant": self.significant,
            "better": self.better,
            "guardrail": self.guardrail,
        }


@dataclass(frozen=True)
class ExperimentResult:
    verdict: str  # winner | no difference | inconclusive
    winner: str  # the variant to promote (the control when there is no winner)
    reason: str
    design: Design
    samples: Mapping[str, int]
    comparisons: tuple[Comparison, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "winner": self.winner,
            "reason": self.reason,
            "design": self.design.to_json(),
            "samples": dict(self.samples),
            "comparisons": [c.to_json() for c in self.comparisons],
            **self.extra,
        }


def two_proportions(ca: int, na: int, cb: int, nb: int) -> tuple[float, float]:
    """(z, two-sided p) of "b's proportion differs from a's" (pooled variance)."""
    if na <= 0 or nb <= 0:
        raise ValueError("both groups need at least one observation")
    pooled = (ca + cb) / (na + nb)
    variance = pooled * (1 - pooled) * (1 / na + 1 / nb)
    difference = cb / nb - ca / na
    if variance <= 0:
        return (0.0, 1.0) if difference == 0 else (math.copysign(math.inf, difference), 0.0)
    z = difference / math.sqrt(variance)
    return z, 2 * (1 - _normal.cdf(abs(z)))


def welch(a: VariantData, b: VariantData) -> tuple[float, float]:
    """(t, two-sided p) of Welch's t-test of b's mean against a's, from counts, sums, sums of squares."""
    if a.n < 2 or b.n < 2:
        raise ValueError("Welch's test needs at least two values per group")
    va, vb = a.variance() / a.n, b.variance() / b.n
    difference = (b.mean() or 0.0) - (a.mean() or 0.0)
    if va + vb <= 0:
        return (0.0, 1.0) if difference == 0 else (math.copysign(math.inf, difference), 0.0)
    t = difference / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va * va / (a.n - 1) if va else 0.0) + (vb * vb / (b.n - 1) if vb else 0.0))
    from aicd.delivery.judge_stats import scipy_stats

    return t, float(2 * scipy_stats().t.sf(abs(t), df))


def mann_whitney_two_sided(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(U of b, two-sided p)."""
    from aicd.delivery.judge_stats import scipy_stats

    if not a or not b:
        raise ValueError("Mann-Whitney needs values on both sides")
    result = scipy_stats().mannwhitneyu(b, a, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def compare_variant(design: Design, control: VariantData, variant: VariantData) -> Comparison:
    """``variant`` against ``control`` on the primary metric, at ``design.alpha_each``."""
    if design.metric == ACCURACY:
        statistic, p_value = two_proportions(control.successes, control.n, variant.successes, variant.n)
        base, estimate = control.successes / control.n, variant.successes / variant.n
        test = "two-proportion z"
        up = True
    else:
        base, estimate = control.mean() or 0.0, variant.mean() or 0.0
        if design.test == MANN_WHITNEY:
            statistic, p_value = mann_whitney_two_sided(control.values, variant.values)
            test = "Mann-Whitney U"
            # the direction of a rank test: U above its mean means b's values tend to be larger
            up_rank = statistic > len(control.values) * len(variant.values) / 2
        else:
            statistic, p_value = welch(control, variant)
            test = "Welch t"
            up_rank = estimate > base
        up = up_rank if design.goal == MAXIMIZE else not up_rank
    difference = estimate - base
    if design.metric == ACCURACY:
        up = difference > 0
    significant = p_value < design.alpha_each
    return Comparison(
        variant.name, test, base, estimate, difference, statistic, p_value, significant, significant and up
    )


def decide(
    design: Design,
    variants: Sequence[VariantData],
    *,
    guardrails: Mapping[str, str | None] | None = None,
    final: bool = False,
) -> ExperimentResult | None:
    """The verdict once every variant has its sample (None before, unless ``final``: the experiment's
    time is up, the result is then ``inconclusive``). ``variants[0]`` is the control; ``guardrails``:
    variant -> why it may not win (errors, latency), None when it may."""
    needed = design.per_variant()
    samples = {v.name: v.n for v in variants}
    control = variants[0]
    short = {name: n for name, n in samples.items() if n < needed}
    if short:
        if not final:
            return None
        listed = ", ".join(f"{name} {n}" for name, n in short.items())
        return ExperimentResult(
            INCONCLUSIVE,
            control.name,
            f"experiment inconclusive: the planned {needed} samples per variant were not reached "
            f"({listed}); no verdict on fewer (fixed horizon), so no winner",
            design,
            samples,
        )
    comparisons = []
    for variant in variants[1:]:
        comparison = compare_variant(design, control, variant)
        guard = (guardrails or {}).get(variant.name)
        if guard is not None:
            comparison = Comparison(**{**comparison.__dict__, "guardrail": guard})
        comparisons.append(comparison)
    winners = [c for c in comparisons if c.better and c.guardrail is None]
    what = "accuracy" if design.metric == ACCURACY else "the business metric"

    def shown(c: Comparison) -> str:
        value = (
            f"{c.estimate:.1%} vs {c.control_estimate:.1%}"
            if design.metric == ACCURACY
            else f"mean {c.estimate:.4g} vs {c.control_estimate:.4g}"
        )
        return f"{c.variant} {value} ({c.test} = {c.statistic:.3g}, p = {c.p_value:.3g})"

    details = "; ".join(
        shown(c) + (f", ruled out: {c.guardrail}" if c.guardrail else "") for c in comparisons
    )
    if winners:
        sign = 1 if design.metric == ACCURACY or design.goal == MAXIMIZE else -1
        best = max(winners, key=lambda c: sign * c.difference)
        return ExperimentResult(
            WINNER,
            best.variant,
            f"experiment: {best.variant} wins on {what} against {control.name} at alpha "
            f"{design.alpha_each:.3g} with {needed} samples per variant: {details}",
            design,
            samples,
            tuple(comparisons),
        )
    return ExperimentResult(
        NO_DIFFERENCE,
        control.name,
        f"experiment: no variant is significantly better than {control.name} on {what} at alpha "
        f"{design.alpha_each:.3g} with {needed} samples per variant: {details}",
        design,
        samples,
        tuple(comparisons),
    )


__all__ = [
    "ACCURACY",
    "BUSINESS",
    "Comparison",
    "Design",
    "ExperimentResult",
    "VariantData",
    "decide",
    "sample_size_means",
    "sample_size_proportions",
    "two_proportions",
    "welch",
]
