"""The judge, statistically: false alarms and detection over 500 generated canary analyses.

One analysis compares what a canary analysis window holds per side (docs/judge.md, "Sample
sizes"): 300 latencies (the router's reservoir of raw latencies, log-normal around 40 ms) and
1000 requests as per-request 0/1 error indicators. Both metrics count either way
(direction: either), the stricter setting for false alarms. Fixed seed: the counts below are
reproducible, and the bounds are the issue's (at most 2 % false alarms, at least 95 % caught).
"""

from __future__ import annotations

import numpy as np
import pytest

from aicd.delivery.judge import HIGH, PASS, VERDICT_PASS, JudgeConfig, MetricConfig, judge

TRIALS = 500
LATENCY_N = 300
REQUESTS_N = 1000
SEED = 20240605

CONFIG = JudgeConfig(metrics=(MetricConfig("latency_ms"), MetricConfig("error")))


def _latencies(rng: np.random.Generator) -> np.ndarray:
    return rng.lognormal(mean=np.log(40.0), sigma=0.5, size=(TRIALS, LATENCY_N))


def _errors(rng: np.random.Generator, rate: float) -> np.ndarray:
    return (rng.random((TRIALS, REQUESTS_N)) < rate).astype(np.float64)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, list[tuple[str, str, str]]]:
    """(verdict, latency class, error class) per trial, for the same and for the worse canary."""
    rng = np.random.default_rng(SEED)
    stable_latency, same_latency, worse_latency = _latencies(rng), _latencies(rng), _latencies(rng) * 1.5
    stable_errors, same_errors, worse_errors = _errors(rng, 0.01), _errors(rng, 0.01), _errors(rng, 0.05)
    out: dict[str, list[tuple[str, str, str]]] = {"same": [], "worse": []}
    for i in range(TRIALS):
        stable = {"latency_ms": stable_latency[i], "error": stable_errors[i]}
        for kind, canary in (
            ("same", {"latency_ms": same_latency[i], "error": same_errors[i]}),
            ("worse", {"latency_ms": worse_latency[i], "error": worse_errors[i]}),
        ):
            result = judge(CONFIG, stable, canary)
            by_name = {m.name: m.classification for m in result.metrics}
            out[kind].append((result.verdict, by_name["latency_ms"], by_name["error"]))
    return out


def test_same_distribution_false_alarms_at_most_2_percent(
    outcomes: dict[str, list[tuple[str, str, str]]],
) -> None:
    same = outcomes["same"]
    false_alarms = sum(verdict != VERDICT_PASS for verdict, _, _ in same)
    latency_alarms = sum(lat != PASS for _, lat, _ in same)
    error_alarms = sum(err != PASS for _, _, err in same)
    assert false_alarms <= 0.02 * TRIALS, (false_alarms, latency_alarms, error_alarms)
    assert latency_alarms <= 0.02 * TRIALS and error_alarms <= 0.02 * TRIALS


def test_latency_50_percent_slower_caught_95_percent(outcomes: dict[str, list[tuple[str, str, str]]]) -> None:
    caught = sum(lat == HIGH for _, lat, _ in outcomes["worse"])
    assert caught >= 0.95 * TRIALS, caught


def test_error_rate_1_to_5_percent_caught_95_percent(outcomes: dict[str, list[tuple[str, str, str]]]) -> None:
    caught = sum(err == HIGH for _, _, err in outcomes["worse"])
    assert caught >= 0.95 * TRIALS, caught
    failed = sum(verdict != VERDICT_PASS for verdict, _, _ in outcomes["worse"])
    assert failed >= 0.95 * TRIALS


def test_error_rate_alone_is_caught_with_latency_unchanged() -> None:
    """The error metric on its own (latency the same): the judgement fails on errors alone."""
    rng = np.random.default_rng(SEED + 1)
    config = JudgeConfig(metrics=(MetricConfig("error", direction="increase"),))
    stable, canary = _errors(rng, 0.01), _errors(rng, 0.05)
    failed = sum(
        judge(config, {"error": s}, {"error": c}).verdict != VERDICT_PASS
        for s, c in zip(stable, canary, strict=True)
    )
    assert failed >= 0.95 * TRIALS, failed
