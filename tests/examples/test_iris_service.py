"""The example AI service in examples/iris-service: its own test suite, and its pipeline under `aicd run`."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from aicd_testing import clean_env, git

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iris-service"
AICD = [sys.executable, "-m", "aicd.cli.main"]


def require_example_deps() -> None:
    """Fail (not skip): the example is part of the product, its dependencies must be installed."""
    missing = [name for name in ("sklearn", "flask", "joblib") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not importable by {sys.executable}: the iris example needs them; "
            "install with `pip install -e '.[examples]'` (or `pip install scikit-learn flask`)",
            pytrace=False,
        )


def example_env() -> dict[str, str]:
    env = clean_env()
    env.pop("IRIS_WORSE_MODEL", None)
    env.pop("MODEL_PATH", None)
    env["PYTHON"] = sys.executable
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def test_example_own_test_suite_passes(tmp_path: Path) -> None:
    require_example_deps()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={tmp_path / 'r.xml'}"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=600,
        env=example_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout
    assert 'failures="0"' in (tmp_path / "r.xml").read_text()


@pytest.mark.slow
def test_pipeline_runs_end_to_end(tmp_path: Path) -> None:
    require_example_deps()
    repo = tmp_path / "iris"
    shutil.copytree(
        EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", "model", "metrics.*", ".aicd")
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "iris service")

    try:
        _pipeline_runs_end_to_end(repo)
    finally:  # the deployed services outlive the pipeline: stop them
        for env in ("staging", "production"):
            subprocess.run([*AICD, "env", "stop", env], cwd=repo, capture_output=True, env=example_env())


def _pipeline_runs_end_to_end(repo: Path) -> None:
    proc = subprocess.run(
        [*AICD, "run", "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
        env=example_env(),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["pipeline"]["status"] == "success"
    jobs = {j["name"]: j for j in result["jobs"]}
    assert list(jobs) == [
        *("build", "test", "train", "evaluate", "gate", "register"),
        *("deploy-staging", "deploy-production", "promote"),
    ]
    assert all(j["status"] == "success" for j in jobs.values()), proc.stderr

    tests = jobs["test"]["tests"]
    assert tests is not None, "the test job's JUnit report was not read"
    assert tests["total"] >= 20 and tests["passed"] == tests["total"] and tests["failed"] == 0

    run_dir = Path(jobs["evaluate"]["log_path"]).parent.parent
    [metrics_json] = list((run_dir / "artifacts").glob("*/metrics.json"))
    metrics = json.loads(metrics_json.read_text())
    assert metrics["accuracy"] > 0.9
    assert metrics["macro_f1"] > 0.9
    assert 0.0 < metrics["log_loss"] < 1.0
    assert metrics["p95_latency_ms"] > 0.0
    [metrics_report] = list((run_dir / "reports").glob("*/metrics.txt"))
    assert metrics_report.read_text().rstrip().endswith("# EOF")
    # Both environments serve the model; the deployments name their pipeline and job.
    shown = {j["name"]: j["id"] for j in _aicd_json(repo, "show", str(result["pipeline"]["id"]))["jobs"]}
    for env in ("staging", "production"):
        [deployment] = _aicd_json(repo, "env", "history", env)
        assert (deployment["revision"], deployment["status"]) == ("r1", "succeeded")
        assert deployment["pipeline_id"] == str(result["pipeline"]["id"])
        assert deployment["commit_sha"] == git(repo, "rev-parse", "HEAD")
        assert deployment["job_id"] == str(shown[f"deploy-{env}"])
        status = _aicd_json(repo, "env", "status", env)
        assert status["status"] == "healthy" and status["environment"]["stable_revision"] == "r1"
        answer = httpx.post(f"{status['url']}/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}, timeout=10)
        assert answer.status_code == 200 and answer.json()["predictions"] == [0]
    [gate_report] = list((run_dir / "artifacts").glob("*/gate-report.json"))
    first_report = json.loads(gate_report.read_text())
    assert first_report["passed"] is True and first_report["baseline"] is None
    assert "no baseline yet: models:/iris@production does not exist" in first_report["baseline_note"]

    # The register job put the model in the project's registry with its lineage; promote made it production.
    production = _aicd_json(repo, "model", "show", "models:/iris@production")
    first_pipeline = result["pipeline"]["id"]
    job_ids = {j["name"]: j["id"] for j in _aicd_json(repo, "show", str(first_pipeline))["jobs"]}
    assert (production["version"], production["artifact"]["name"]) == (1, "model/")
    assert production["metrics"]["accuracy"] == metrics["accuracy"]
    assert production["lineage"]["commit"] == git(repo, "rev-parse", "HEAD")
    assert production["lineage"]["pipeline_id"] == first_pipeline
    assert production["lineage"]["job_id"] == job_ids["register"]
    assert production["lineage"]["dataset_hash"].startswith("sha256:")
    assert production["tags"] == {"variant": "standard"}
    assert production["pipeline"]["status"] == "success"
    assert production["pipeline"]["job"] == {"name": "register", "status": "success"}
    from_commit = _aicd_json(repo, "model", "lineage", "--commit", git(repo, "rev-parse", "HEAD"))
    assert [v["uri"] for v in from_commit] == ["models:/iris/1"]

    # The same pipeline with the worse-model knob on: stopped at the gate.
    worse = subprocess.run(
        [*AICD, "run", "--json", "--variable", "IRIS_WORSE_MODEL=1"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
        env=example_env(),
        stdin=subprocess.DEVNULL,
    )
    assert worse.returncode == 1, worse.stdout + worse.stderr
    result = json.loads(worse.stdout)
    assert result["pipeline"]["status"] == "failed"
    jobs = {j["name"]: j for j in result["jobs"]}
    assert jobs["evaluate"]["status"] == "success"
    assert jobs["gate"]["status"] == "failed" and jobs["gate"]["exit_code"] == 1
    assert [
        jobs[name]["status"] for name in ("register", "deploy-staging", "deploy-production", "promote")
    ] == ["skipped"] * 4
    assert len(_aicd_json(repo, "env", "history", "production")) == 1
    run_dir = Path(jobs["gate"]["log_path"]).parent.parent
    [gate_report] = list((run_dir / "artifacts").glob("*/gate-report.json"))
    report = json.loads(gate_report.read_text())
    assert report["passed"] is False
    assert {c["metric"] for c in report["checks"] if c["verdict"] == "fail"} >= {"accuracy", "macro_f1"}
    # It was judged against production (version 1), and nothing was registered or promoted.
    assert report["baseline"]["model_uri"] == "models:/iris@production" and report["baseline"]["version"] == 1
    regression = [c for c in report["checks"] if c["kind"] == "max_regression_pct"]
    assert [(c["metric"], c["verdict"]) for c in regression] == [("accuracy", "fail")]
    assert [v["version"] for v in _aicd_json(repo, "model", "list", "iris")] == [1]
    assert _aicd_json(repo, "model", "show", "models:/iris@production")["version"] == 1


def _aicd_json(repo: Path, *args: str) -> Any:
    proc = subprocess.run(
        [*AICD, *args, "--json"], cwd=repo, capture_output=True, text=True, timeout=60, env=example_env()
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)
