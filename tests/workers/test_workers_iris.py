"""The example iris pipeline with its jobs spread over two `aicd worker`s (RabbitMQ, PostgreSQL):
the registry and the deploys reached through the job tokens, as on a server running its jobs
itself (tests/examples/test_iris_on_server.py)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml
from workers_cluster import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from serverproc import make_project
from test_iris_on_server import EXAMPLE, _run, _server_ci, _stop_environments
from test_iris_service import require_example_deps

from aicd_testing import git


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_iris_pipeline_over_two_workers(cluster: Cluster, tmp_path: Path) -> None:
    require_example_deps()
    repo = tmp_path / "iris"
    shutil.copytree(
        EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", "model", "metrics.*", ".aicd")
    )
    ci = repo / ".gitlab-ci.yml"
    ci.write_text(_server_ci(ci.read_text()))
    config = yaml.safe_load((repo / "aicd.yml").read_text())
    config["service"]["command"] = [sys.executable, "app.py"]
    (repo / "aicd.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "iris service")
    one = cluster.register(untagged=True, description="one")
    two = cluster.register(untagged=True, description="two")
    cluster.worker(one, name="one")
    cluster.worker(two, name="two")
    server = cluster.server
    try:
        make_project(server, "iris", str(repo))
        with server.client(timeout=60) as api:
            assert (
                api.put("/projects/iris/variables/PYTHON", json={"value": sys.executable}).status_code == 200
            )
            pipeline, jobs = _run(api, timeout=900)
            model = api.get("/models/iris").json()
            v1 = api.get("/models/iris/versions/1").json()
            deployments = api.get("/projects/iris/deployments").json()
    finally:
        _stop_environments(server)
    assert pipeline["status"] == "success"
    assert {j["runner_id"] for j in jobs.values()} == {one["id"], two["id"]}  # spread over both
    assert model["latest_version"] == 1 and model["aliases"] == {"production": 1}
    assert (v1["lineage"]["pipeline_id"], v1["lineage"]["job_id"]) == (pipeline["id"], jobs["register"]["id"])
    assert sorted((d["environment"], d["status"]) for d in deployments) == [
        ("production", "succeeded"),
        ("staging", "succeeded"),
    ]
