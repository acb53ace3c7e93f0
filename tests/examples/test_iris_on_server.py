"""The example iris pipeline on a real `aicd server`: its registry steps (the gate's baseline,
register, promote) and its deploys (staging blue-green, production canary) reach the server through
the API with each job's CI_JOB_TOKEN.

The jobs get neither AICD_HOME nor AICD_DATABASE_URL; they reach the server at AICD_SERVER, so this
passes whether or not the server sandboxes them. What the test changes in the example's
pipeline, and why:
- jobs call `"$PYTHON" -m aicd.cli.main` instead of `aicd` and PYTHON is a project variable (this
  interpreter, which has aicd and the example's dependencies): nothing depends on the server's PATH;
  aicd.yml's service command is this interpreter too.
The environments the pipelines started are stopped at the end (`aicd env stop` on the server's home).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from test_iris_service import require_example_deps

from aicd.demo.load import TrafficLoad
from aicd_testing import git
from server.serverproc import ServerProc, make_project

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iris-service"
FINAL = {"success", "failed", "canceled", "skipped", "manual"}


def _server_ci(text: str) -> str:
    ci = yaml.safe_load(text)
    for job in ci.values():
        if isinstance(job, dict) and "script" in job:
            job["script"] = [re.sub(r"^aicd ", '"$PYTHON" -m aicd.cli.main ', line) for line in job["script"]]
    return yaml.safe_dump(ci, sort_keys=False)


def _run(api: httpx.Client, timeout: float = 600) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    created = api.post("/projects/iris/pipelines", json={"ref": "main"})
    assert created.status_code == 201, created.text
    pipeline_id = created.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        pipeline = api.get(f"/projects/iris/pipelines/{pipeline_id}").json()
        if pipeline["status"] in FINAL:
            break
        assert time.monotonic() < deadline, f"pipeline still {pipeline['status']}"
        time.sleep(0.5)
    jobs = {j["name"]: j for j in api.get(f"/projects/iris/pipelines/{pipeline_id}/jobs").json()}
    if pipeline["status"] != "success":
        logs = {n: api.get(f"/projects/iris/jobs/{j['id']}/log").text[-3000:] for n, j in jobs.items()}
        raise AssertionError(f"pipeline {pipeline['status']}: {json.dumps(logs, indent=1)}")
    return pipeline, jobs


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_iris_pipeline_on_a_server_uses_job_tokens(tmp_path: Path) -> None:
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

    server = ServerProc(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'aicd.db'}", poll=False)
    server.start()
    try:
        make_project(server, "iris", str(repo))
        with server.client(timeout=60) as api:
            put = api.put("/projects/iris/variables/PYTHON", json={"value": sys.executable})
            assert put.status_code == 200, put.text
            first, jobs1 = _run(api)
            # the second production deploy is a canary judged on live traffic: give it some
            [production] = [
                e for e in api.get("/projects/iris/environments").json() if e["name"] == "production"
            ]
            load = TrafficLoad(production["url"], workers=2, pause=0.02).start()
            try:
                second, jobs2 = _run(api)
            finally:
                traffic = load.stop()
            gate1 = api.get(f"/projects/iris/jobs/{jobs1['gate']['id']}/artifacts/gate-report.json").json()
            gate2 = api.get(f"/projects/iris/jobs/{jobs2['gate']['id']}/artifacts/gate-report.json").json()
            model = api.get("/models/iris").json()
            v1 = api.get("/models/iris/versions/1").json()
            audit = api.get("/projects/iris/audit").json()
            register_log = api.get(f"/projects/iris/jobs/{jobs1['register']['id']}/log").text
            deployments = api.get("/projects/iris/deployments").json()
            environments = {e["name"]: e for e in api.get("/projects/iris/environments").json()}
            prediction = httpx.post(
                f"{environments['production']['url']}/predict", json={"features": [[5.1, 3.5, 1.4, 0.2]]}
            )
    finally:
        try:
            _stop_environments(server)
        finally:
            server.stop(check=False)

    # the first gate had no baseline; the second compared with production (v1) fetched over the API
    assert gate1["passed"] is True and gate1["baseline"] is None
    assert "models:/iris@production does not exist" in gate1["baseline_note"]
    assert gate2["passed"] is True and gate2["baseline"]["version"] == 1
    assert gate2["baseline"]["metrics"]["accuracy"] == v1["metrics"]["accuracy"]
    # two versions of the project's model; promote (a job of the default branch) moved production
    assert model["project"] == "iris" and model["latest_version"] == 2
    assert model["aliases"] == {"production": 2}
    # the server wrote the lineage from the register job's token
    head = git(repo, "rev-parse", "HEAD")
    assert v1["lineage"]["commit"] == head and v1["lineage"]["project"] == "iris"
    assert (v1["lineage"]["pipeline_id"], v1["lineage"]["job_id"]) == (first["id"], jobs1["register"]["id"])
    assert v1["pipeline"]["job"] == {"name": "register", "status": "success"}
    actors = {(e["action"], e["actor"]) for e in audit}
    assert ("model.register", f"job:{jobs2['register']['id']}") in actors
    assert ("model.alias.set", f"job:{jobs2['promote']['id']}") in actors
    assert "aicdjob_" not in register_log  # the token never shows in a log
    assert second["sha"] == head
    # each pipeline deployed staging then production through the API, recorded from the jobs' tokens
    done = sorted((d["environment"], d["pipeline_id"], d["job_id"], d["status"]) for d in deployments)
    assert done == sorted(
        (env, str(p["id"]), str(j[f"deploy-{env}"]["id"]), "succeeded")
        for p, j in ((first, jobs1), (second, jobs2))
        for env in ("staging", "production")
    ), deployments
    assert all(d["sha"] == head for d in deployments)
    assert prediction.status_code == 200 and "predictions" in prediction.json()
    assert traffic.requests > 0 and traffic.failures == 0, traffic.to_json()  # no request lost


def _stop_environments(server: ServerProc) -> None:
    import subprocess

    from aicd_testing import AICD, clean_env

    environ = {
        **clean_env(),
        "AICD_HOME": str(server.home),
        "AICD_DATABASE_URL": server.database_url,
        "AICD_ENV_SCOPE": "iris",
    }
    for env in ("staging", "production"):
        subprocess.run(
            [*AICD, "env", "stop", env], env=environ, capture_output=True, timeout=600, check=False
        )
