"""The Argo Rollouts and Flagger contracts' logic (delivery/integrations.py); over HTTP: tests/server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aicd.delivery.integrations import (
    FLAGGER_HOOKS,
    MAX_VALUES,
    JudgeRequest,
    flagger_decision,
    flagger_request,
    judge_request,
)
from aicd.errors import ConfigError

RNG = np.random.default_rng(7)
STABLE = {"latency_ms": [float(v) for v in RNG.normal(100, 5, 100)]}
SAME = {"latency_ms": [float(v) for v in RNG.normal(100, 5, 100)]}
SLOW = {"latency_ms": [float(v) for v in RNG.normal(140, 5, 100)]}
SPECS = "latency_ms:increase:critical"


def request_for(canary: dict[str, list[float]] | None) -> JudgeRequest | None:
    if canary is None:
        return flagger_request({"metrics": SPECS}, None)
    return flagger_request(
        {"baseline": json.dumps(STABLE), "canary": json.dumps(canary), "metrics": SPECS}, None
    )


@pytest.mark.parametrize(
    ("hook", "nothing", "passing", "failing"),
    [
        ("confirm-rollout", True, True, False),
        ("pre-rollout", True, True, False),
        ("rollout", False, True, False),
        ("confirm-promotion", False, True, False),
        ("post-rollout", True, True, True),
        ("rollback", False, False, True),
    ],
)
def test_go_or_halt_per_hook(hook: str, nothing: bool, passing: bool, failing: bool) -> None:
    assert hook in FLAGGER_HOOKS
    assert flagger_decision(hook, request_for(None)).go is nothing
    assert flagger_decision(hook, request_for(SAME)).go is passing
    assert flagger_decision(hook, request_for(SLOW)).go is failing


def test_metadata_overrides_the_configured_canary() -> None:
    configured = {"baseline": STABLE, "canary": SAME, "metrics": [SPECS]}
    assert flagger_decision("rollout", flagger_request({}, configured)).go
    override = {"canary": json.dumps(SLOW)}
    decision = flagger_decision("rollout", flagger_request(override, configured))
    assert not decision.go
    assert decision.to_json("rollout")["classification"] == {"latency_ms": "High"}


def test_bad_requests_say_where() -> None:
    with pytest.raises(ConfigError, match=r"^body: canary missing"):
        judge_request({"baseline": STABLE})
    with pytest.raises(ConfigError, match=r"^body.metrics: not valid JSON"):
        judge_request({"baseline": STABLE, "canary": SAME, "metrics": "[latency"})
    with pytest.raises(ConfigError, match=r"^body.pass_threshold: a score from 0 to 100"):
        judge_request({"baseline": STABLE, "canary": SAME, "pass_threshold": "120"})
    with pytest.raises(ConfigError, match=rf"at most {MAX_VALUES} per side"):
        judge_request({"baseline": {"x": [1.0] * (MAX_VALUES + 1)}, "canary": SAME})
    with pytest.raises(ConfigError, match="'deploy' is not a Flagger webhook type"):
        flagger_decision("deploy", None)
