"""The experiment's statistics: sample sizes, the false-positive rate with A = B, the power at
the sample size the design states (simulations with a seeded RNG, at the pure-function level)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aicd.delivery.experiment_stats import (
    ACCURACY,
    BUSINESS,
    INCONCLUSIVE,
    MANN_WHITNEY,
    MINIMIZE,
    NO_DIFFERENCE,
    WINNER,
    Design,
    VariantData,
    decide,
    sample_size_means,
    sample_size_proportions,
    two_proportions,
    welch,
)

RUNS = 2000


def margin(rate: float, runs: int) -> float:
    """Three binomial standard errors: a simulated rate strays further by chance about 1 in 700 runs."""
    return 3 * math.sqrt(rate * (1 - rate) / runs)


def accuracy_run(rng: np.random.Generator, design: Design, rates: list[float]) -> VariantData | None:
    n = design.per_variant()
    variants = [
        VariantData(name, f"r{i + 1}", n=n, successes=int(rng.binomial(n, p)))
        for i, (name, p) in enumerate(zip("abcd", rates, strict=False))
    ]
    result = decide(design, variants)
    assert result is not None
    return next((v for v in variants if v.name == result.winner and result.verdict == WINNER), None)


def test_sample_sizes_match_the_textbook_formulas() -> None:
    # by hand: pbar 0.825; (1.95996 * sqrt(2 * 0.825 * 0.175) + 0.84162 * sqrt(0.16 + 0.1275)) / 0.05
    # = 30.089, squared 905.4 -> 906 (R's power.prop.test(p1=.8, p2=.85, power=.8) says 905.3)
    assert sample_size_proportions(0.80, 0.85, 0.05, 0.8) == 906
    # 50 % vs 55 %: 1565 (the worst case of a 5-point difference)
    assert sample_size_proportions(0.50, 0.55, 0.05, 0.8) == 1565
    # means: 2 (1.96 + 0.8416)^2 sd^2 / d^2 = 15.70 per group for d = sd
    assert sample_size_means(1.0, 1.0, 0.05, 0.8) == 16
    assert sample_size_means(1.0, 1.0, 0.05, 0.8, MANN_WHITNEY) == math.ceil(15.698 * math.pi / 3)
    design = Design(metric=ACCURACY, effect=0.05, baseline=0.8)
    assert design.per_variant() == max(
        sample_size_proportions(0.8, 0.75, 0.05, 0.8), sample_size_proportions(0.8, 0.85, 0.05, 0.8)
    )
    assert "1094 labels per variant" in design.explain()
    three = Design(metric=ACCURACY, effect=0.05, baseline=0.8, variants=3)
    assert three.alpha_each == 0.025 and three.per_variant() > design.per_variant()
    assert Design(samples=77).per_variant() == 77
    with pytest.raises(ValueError, match="sd"):
        Design(metric=BUSINESS).per_variant()


def test_two_proportion_and_welch_agree_with_scipy_and_statsmodels_style_numbers() -> None:
    from scipy import stats

    z, p = two_proportions(80, 100, 90, 100)
    # the pooled z-test is the chi-square test of the 2x2 table without continuity correction
    chi2, p_chi2, _, _ = stats.chi2_contingency([[80, 20], [90, 10]], correction=False)
    assert z == pytest.approx(math.sqrt(chi2)) and p == pytest.approx(p_chi2)
    a = VariantData("a", "r1", n=3, total=6.0, total_sq=14.0)  # values 1, 2, 3
    b = VariantData("b", "r2", n=3, total=15.0, total_sq=77.0)  # values 4, 5, 6
    t, p = welch(a, b)
    ref = stats.ttest_ind([4, 5, 6], [1, 2, 3], equal_var=False)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)


def test_with_a_equal_to_b_false_winners_stay_within_alpha() -> None:
    rng = np.random.default_rng(20261206)
    design = Design(metric=ACCURACY, effect=0.05, baseline=0.8, alpha=0.05)
    significant = 0
    winners = 0
    for _ in range(RUNS):
        n = design.per_variant()
        a = VariantData("a", "r1", n=n, successes=int(rng.binomial(n, 0.8)))
        b = VariantData("b", "r2", n=n, successes=int(rng.binomial(n, 0.8)))
        result = decide(design, [a, b])
        assert result is not None
        significant += result.comparisons[0].significant
        winners += result.verdict == WINNER
    rate = significant / RUNS
    print(f"\nA = B, {RUNS} experiments of {design.per_variant()} labels per variant: "
          f"{rate:.2%} significant (two-sided), {winners / RUNS:.2%} false winners; alpha 5%")  # fmt: skip
    assert rate <= 0.05 + margin(0.05, RUNS)
    assert winners / RUNS <= 0.025 + margin(0.025, RUNS)  # a false winner must also be "better"


def test_three_variants_keep_the_family_wise_false_positive_rate_within_alpha() -> None:
    rng = np.random.default_rng(7)
    design = Design(metric=ACCURACY, effect=0.05, baseline=0.8, variants=3)
    any_significant = 0
    for _ in range(RUNS):
        n = design.per_variant()
        variants = [
            VariantData(x, f"r{i}", n=n, successes=int(rng.binomial(n, 0.8))) for i, x in enumerate("abc")
        ]
        result = decide(design, variants)
        assert result is not None
        any_significant += any(c.significant for c in result.comparisons)
    rate = any_significant / RUNS
    print(f"\nA = B = C, {RUNS} experiments: {rate:.2%} with any significant difference; alpha 5%")
    assert rate <= 0.05 + margin(0.05, RUNS)


@pytest.mark.parametrize("baseline", [0.80, 0.85])
def test_a_real_five_point_difference_is_found_at_the_stated_sample_size(baseline: float) -> None:
    rng = np.random.default_rng(42)
    design = Design(metric=ACCURACY, effect=0.05, baseline=baseline, alpha=0.05, power=0.8)
    found = sum(
        (winner := accuracy_run(rng, design, [baseline, baseline + 0.05])) is not None and winner.name == "b"
        for _ in range(RUNS)
    )
    power = found / RUNS
    print(
        f"\n{baseline:.0%} vs {baseline + 0.05:.0%}: {design.explain()}; found in {power:.1%} of {RUNS} runs"
    )
    assert power >= 0.8 - margin(0.8, RUNS)
    # and the worse variant is never named the winner
    worse = sum(
        (w := accuracy_run(rng, design, [baseline, baseline - 0.05])) is not None and w.name == "b"
        for _ in range(200)
    )
    assert worse == 0


def test_business_metric_false_positives_and_power_with_welch_and_mann_whitney() -> None:
    rng = np.random.default_rng(3)
    for test in ("welch", MANN_WHITNEY):
        design = Design(metric=BUSINESS, effect=1.0, sd=5.0, test=test)
        n = design.per_variant()
        runs = 400 if test == MANN_WHITNEY else RUNS

        def data(name: str, mean: float, n: int = n) -> VariantData:
            values = rng.normal(mean, 5.0, n)
            return VariantData(
                name, name, n=n, total=float(values.sum()), total_sq=float((values**2).sum()),
                values=tuple(values.tolist()),
            )  # fmt: skip

        false = sum(decide(design, [data("a", 10), data("b", 10)]).verdict == WINNER for _ in range(runs))  # type: ignore[union-attr]
        found = sum(decide(design, [data("a", 10), data("b", 11)]).winner == "b" for _ in range(runs))  # type: ignore[union-attr]
        print(
            f"\n{test}: {n} per variant; A = B false winners {false / runs:.2%}, "
            f"1-sd/5 found {found / runs:.1%}"
        )
        assert false / runs <= 0.025 + margin(0.025, runs)
        assert found / runs >= 0.8 - margin(0.8, runs)
    lower = Design(metric=BUSINESS, effect=1.0, sd=1.0, goal=MINIMIZE, samples=50)
    a = VariantData("a", "r1", n=50, total=500.0, total_sq=50 * 101.0)  # mean 10, sd ~1
    b = VariantData("b", "r2", n=50, total=400.0, total_sq=50 * 17.0)  # mean 8, sd ~1
    result = decide(lower, [a, b])
    assert result is not None and result.winner == "b"  # less is better


def test_no_verdict_before_the_horizon_then_inconclusive_and_guardrails_rule_out_a_winner() -> None:
    design = Design(metric=ACCURACY, samples=100)
    short = [VariantData("a", "r1", n=100, successes=80), VariantData("b", "r2", n=99, successes=99)]
    assert decide(design, short) is None  # no peeking: nothing before every variant has 100
    result = decide(design, short, final=True)
    assert result is not None and result.verdict == INCONCLUSIVE and result.winner == "a"
    assert "not reached" in result.reason
    full = [VariantData("a", "r1", n=100, successes=70), VariantData("b", "r2", n=100, successes=95)]
    result = decide(design, full)
    assert result is not None and result.verdict == WINNER and result.winner == "b"
    assert result.to_json()["design"]["samples_per_variant"] == 100
    guarded = decide(design, full, guardrails={"b": "errors high"})
    assert guarded is not None and guarded.verdict == NO_DIFFERENCE and guarded.winner == "a"
    assert "ruled out: errors high" in guarded.reason
