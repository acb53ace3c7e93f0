"""Model-aware drift: population stability index and chi-square on predicted classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from aicd.delivery.drift import (
    DRIFT_FAIL,
    DRIFT_PASS,
    DRIFT_WARN,
    EPSILON,
    MODERATE,
    NODATA,
    SIGNIFICANT,
    STABLE,
    DriftThresholds,
    chi_square_classes,
    prediction_drift,
    psi_classes,
    psi_from_shares,
    psi_level,
    psi_numeric,
)
from aicd.errors import ConfigError


def test_psi_by_hand() -> None:
    stable = [0.5, 0.3, 0.2]
    canary = [0.4, 0.3, 0.3]
    expected = (0.4 - 0.5) * math.log(0.4 / 0.5) + 0 + (0.3 - 0.2) * math.log(0.3 / 0.2)
    assert psi_from_shares(stable, canary) == pytest.approx(expected)
    assert psi_from_shares(canary, stable) == pytest.approx(expected)  # symmetric
    assert psi_from_shares(stable, stable) == 0


def test_empty_class_is_smoothed_with_epsilon() -> None:
    psi = psi_classes({"a": 50, "b": 50}, {"a": 45, "b": 50, "c": 5})
    assert psi.labels == ["a", "b", "c"]
    assert psi.stable_share == [0.5, 0.5, 0.0] and psi.canary_share == [0.45, 0.5, 0.05]
    by_hand = (0.45 - 0.5) * math.log(0.45 / 0.5) + (0.05 - EPSILON) * math.log(0.05 / EPSILON)
    assert psi.value == pytest.approx(by_hand)
    assert math.isfinite(psi.value) and psi_level(psi.value) == SIGNIFICANT  # a new class is drift


def test_levels_follow_the_convention() -> None:
    assert psi_level(0.05) == STABLE
    assert psi_level(0.1) == MODERATE and psi_level(0.25) == MODERATE
    assert psi_level(0.2501) == SIGNIFICANT
    assert psi_level(0.15, DriftThresholds(psi_moderate=0.2)) == STABLE


def test_psi_numeric_on_generated_scores() -> None:
    rng = np.random.default_rng(11)
    stable = rng.normal(0.0, 1.0, 5000)
    same = psi_numeric(stable, rng.normal(0.0, 1.0, 5000))
    assert len(same.labels) == 10 and same.labels[0].startswith("(-inf, ")
    assert sum(same.stable_share) == pytest.approx(1.0)
    assert same.stable_share == pytest.approx([0.1] * 10)
    assert same.value < 0.02 and psi_level(same.value) == STABLE
    shifted = psi_numeric(stable, rng.normal(0.5, 1.0, 5000))
    assert psi_level(shifted.value) in (MODERATE, SIGNIFICANT)
    far = psi_numeric(stable, rng.normal(1.5, 1.0, 5000))
    assert psi_level(far.value) == SIGNIFICANT
    with pytest.raises(ConfigError, match="no values"):
        psi_numeric([math.nan], [1.0])


def test_chi_square_is_scipys_on_the_class_table() -> None:
    stable = {"setosa": 50, "versicolor": 48, "virginica": 52, "unused": 0}
    canary = {"setosa": 50, "versicolor": 30, "virginica": 70}
    result = chi_square_classes(stable, canary)
    expected = stats.chi2_contingency(np.array([[50, 48, 52], [50, 30, 70]]))
    assert result.statistic == expected.statistic and result.p_value == expected.pvalue
    assert result.dof == 2
    assert chi_square_classes({"a": 5}, {"a": 9}).p_value == 1.0


def test_prediction_drift_verdicts() -> None:
    same = prediction_drift({"a": 500, "b": 500}, {"a": 510, "b": 490})
    assert same.verdict == DRIFT_PASS and same.level == STABLE and "predicts like stable" in same.reason
    # a tiny shift on a big sample: chi-square is significant, PSI is not: a warning
    big = prediction_drift({"a": 50000, "b": 50000}, {"a": 51500, "b": 48500})
    assert big.chi_square is not None and big.chi_square.p_value < 0.02
    assert big.level == STABLE and big.verdict == DRIFT_WARN
    moderate = prediction_drift({"a": 50, "b": 50}, {"a": 66, "b": 34})
    assert moderate.level == MODERATE and moderate.verdict == DRIFT_WARN
    drifted = prediction_drift({"a": 50, "b": 48, "c": 52}, {"a": 50, "b": 5, "c": 95})
    assert drifted.verdict == DRIFT_FAIL and drifted.level == SIGNIFICANT
    assert drifted.classes == {"a": (50, 50), "b": (48, 5), "c": (52, 95)}
    empty = prediction_drift({"a": 3}, {})
    assert (
        empty.level == NODATA and empty.verdict == DRIFT_WARN and "no predictions from canary" in empty.reason
    )
