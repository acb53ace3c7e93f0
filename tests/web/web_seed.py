"""Filling the registry and the deployment store of a test server through their own stores (the
calls `aicd model register` and the deploy agent make), with a real judge's report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from aicd.delivery.drift import prediction_drift
from aicd.delivery.judge import JudgeConfig, MetricConfig, judge
from aicd.delivery.judge_json import drift_json, judge_json
from aicd.store.deployments import DeployStore, open_deploy_store
from aicd.store.registry import NewVersion, open_registry

EVIL = "<script>alert(1)</script>"


def seed_models(url: str, project: str, owner: int, pipeline_id: int, job_id: int, sha: str) -> None:
    """iris v1 (production) and v2 (staging, from the pipeline), staging moved twice."""
    with open_registry(url) as store:
        first = NewVersion(
            metrics={"accuracy": 0.9, "f1": 0.8}, commit_sha="a" * 40, ref="main", project=project
        )
        store.register_version("iris", first, alias="production", actor="alice", project_id=owner)
        second = NewVersion(
            metrics={"accuracy": 0.95, EVIL: 1.0},
            commit_sha=sha,
            ref="main",
            pipeline_id=pipeline_id,
            job_id=job_id,
            project=project,
            created_by="bob",
        )
        store.register_version("iris", second, alias="staging", actor="bob", project_id=owner)
        store.set_alias("iris", "staging", 1, actor="carol")
        store.set_alias("iris", "staging", 2, actor="carol")


def analysis(bad: bool) -> dict[str, Any]:
    """A real judge's and drift check's report, as the deploy agent stores it."""
    stable = {"latency_ms": [10.0 + (i % 7) for i in range(60)], "error_rate": [0.0] * 60}
    canary = {
        "latency_ms": [(30.0 if bad else 10.0) + (i % 7) for i in range(60)],
        "error_rate": [0.0] * 60,
    }
    config = JudgeConfig(
        metrics=(MetricConfig("latency_ms", direction="increase"), MetricConfig("error_rate", "increase"))
    )
    result = judge(config, stable, canary)
    drift = prediction_drift({"setosa": 50, "versicolor": 50}, {"setosa": 48, EVIL: 52})
    return {
        "passed": not bad,
        "reason": "latency_ms is High" if bad else "all metrics pass",
        "stable_requests": 600,
        "canary_requests": 150,
        "thresholds": {"phase": "Successful", "reason": "", "metrics": []},
        "judge": judge_json(result),
        "drift": drift_json(drift),
        "notes": [],
    }


def seed_environment(url: str, project: str, tmp_path: Path) -> None:
    """production: r1 deployed, r2 rolled back after a bad canary, r3 a canary at its 2nd step."""
    with open_deploy_store(url) as store:
        _seed_environment(store, project, tmp_path)


def _seed_environment(store: DeployStore, project: str, tmp_path: Path) -> None:
    env = store.ensure_environment("production", scope=project, tier="production")
    state_dir = tmp_path / "env-state"
    state_dir.mkdir()
    steps = [
        {"kind": "set_weight", "weight": 20},
        {"kind": "pause", "duration": None},
        {"kind": "set_weight", "weight": 50},
    ]
    (state_dir / "plan.json").write_text(json.dumps({"strategy": "canary", "steps": steps}))
    for _ in range(3):
        store.new_revision(env.id, release_dir=str(tmp_path), spec={}, commit_sha="c" * 40, ref="main")
    now = time.time()
    one = store.begin_deployment(
        env.id, revision="r1", strategy="recreate", actor="alice", commit_at=now - 600
    )
    store.set_deployment(one.id, status="succeeded", finished=True)
    two = store.begin_deployment(
        env.id, revision="r2", strategy="canary", actor="bob", previous_revision="r1"
    )
    store.set_deployment(
        two.id, status="rolled_back", reason=f"canary failed: {EVIL}", analysis=analysis(True)
    )
    store.set_deployment(two.id, finished=True)
    incident = store.open_incident(env.id, "change_failure", f"bad canary {EVIL}", opened_by="system")
    store.resolve_incident(incident.id, resolved_by="system")
    store.open_incident(env.id, "down", "router down", opened_by="system")
    three = store.begin_deployment(
        env.id, revision="r3", strategy="canary", actor="bob", previous_revision="r1"
    )
    for index, step in enumerate(steps[:2]):
        store.add_event(env.id, "step", f"step {index + 1}/3", deployment_id=three.id, data=step)
    store.update_environment(
        env.id,
        status="paused",
        stable_revision="r1",
        canary_revision="r3",
        weights={"r1": 80, "r3": 20},
        state_dir=str(state_dir),
    )
