"""GET /api/v1/reliability and /api/v1/metrics over real HTTP, on SQLite and PostgreSQL.

The server is the real app (create_app: lifespan, stores, dispatcher, access control) under
uvicorn on 127.0.0.1 in a thread of the test. The history is tests/reliability/history.py;
/metrics must parse with prometheus_client's parser and its figures must equal
`aicd metrics --json` for the same window.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from aicd.server.app import API_PREFIX, create_app
from aicd.server.settings import ServerSettings
from aicd.store.db import connect
from aicd.store.projects_repo import ProjectStore
from aicd.store.records import NewJob
from aicd.store.repository import RunStore
from aicd_testing import aicd, clean_env
from pg_testing import fresh_database
from reliability import history
from reliability.history import production

WINDOW = {"since": history.SINCE_ISO, "until": history.UNTIL_ISO}


@dataclass
class Served:
    url: str  # http://127.0.0.1:port
    database_url: str
    admin_token: str
    scopes: dict[str, str]  # project name -> the environments' scope (AICD_ENV_SCOPE: the name)

    def client(self, token: str | None = None) -> httpx.Client:
        token = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url + API_PREFIX, headers=headers, timeout=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    if request.param == "sqlite":
        (tmp_path / "home").mkdir()
        yield from _serve(tmp_path, f"sqlite:///{tmp_path / 'home' / 'aicd.db'}")
    else:
        with fresh_database("aicd_metrics") as engine:
            yield from _serve(tmp_path, engine.url.render_as_string(hide_password=False))


def _serve(tmp_path: Path, database_url: str) -> Iterator[Served]:
    settings = ServerSettings.load(
        environ={}, home=tmp_path / "home", database_url=database_url, poll=False, environments=False
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        scopes = _world(database_url)
        token = (tmp_path / "home" / "admin-token").read_text().strip()
        yield Served(f"http://127.0.0.1:{port}", database_url, token, scopes)
    finally:
        server.should_exit = True
        thread.join(30)


def _world(database_url: str) -> dict[str, str]:
    """Projects alpha (the history, two pipelines with jobs) and beta (one environment)."""
    database = connect(database_url)
    try:
        store = ProjectStore(database)
        created = {
            name: store.create(name, f"/nonexistent/{name}.git", "main", ".gitlab-ci.yml", None, None)
            for name in ("alpha", "beta")
        }
        scopes = {name: project.name for name, project in created.items()}
        runs = RunStore(database)
        for status, seconds in (("success", 90.0), ("failed", 30.0)):
            pipeline = runs.create_pipeline(
                project_dir=created["alpha"].key,
                ref="main",
                sha="a" * 40,
                source="push",
                file=".gitlab-ci.yml",
                run_dir_root="/tmp/aicd-runs",
            )
            runs.update_pipeline(pipeline.id, status=status, started_at=1000.0, finished_at=1000.0 + seconds)
            (job,) = runs.add_jobs(pipeline.id, [NewJob("test", "test", "on_success", False)])
            runs.update_job(job, status=status, started_at=1000.0, finished_at=1000.0 + seconds / 2)
    finally:
        database.dispose()
    history.record(database_url, scope=scopes["alpha"])
    from aicd.store.deployments import DeployStore

    with DeployStore(connect(database_url), owns_database=True) as deploys:
        beta = deploys.ensure_environment("beta-prod", scope=scopes["beta"])
        deploys.begin_deployment(beta.id, revision="r1", strategy="recreate", actor="test")
    return scopes


def _user(served: Served, name: str, project: str | None) -> str:
    with served.client() as admin:
        user = admin.post("/users", json={"name": name})
        assert user.status_code == 201, user.text
        user_id = user.json()["id"]
        if project:
            member = admin.put(f"/projects/{project}/members/{user_id}", json={"role": "viewer"})
            assert member.status_code == 200, member.text
        token = admin.post(f"/users/{user_id}/tokens", json={"name": "t"})
        assert token.status_code == 201, token.text
        return str(token.json()["token"])


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _cli_json(served: Served, *args: str, tmp_path: Path, scope: str) -> dict[str, Any]:
    env = {**clean_env(), "AICD_DATABASE_URL": served.database_url, "AICD_ENV_SCOPE": scope}
    done = aicd(
        tmp_path,
        "metrics",
        "--since",
        history.SINCE_ISO,
        "--until",
        history.UNTIL_ISO,
        "--json",
        *args,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_reliability_json_equals_the_cli(served: Served, tmp_path: Path) -> None:
    with served.client() as admin:
        response = admin.get("/reliability", params={**WINDOW, "project": "alpha"})
    assert response.status_code == 200, response.text
    api = response.json()
    assert [e["project"] for e in api["environments"]] == ["alpha", "alpha"]
    assert production(api)["reliability"]["mttf_s"] == pytest.approx(history.MTTF)
    assert production(api)["dora"]["lead_time"]["value"] == pytest.approx(history.LEAD_TIME)
    local = _cli_json(served, tmp_path=tmp_path, scope=served.scopes["alpha"])
    for entry in api["environments"]:
        entry.pop("project")
    assert api == local
    # the CLI in remote mode draws the same JSON from the server
    remote = _cli_json(served, "--server", served.url, "--token", served.admin_token, "--project", "alpha",
                       tmp_path=tmp_path, scope="")  # fmt: skip
    for entry in remote["environments"]:
        assert entry.pop("project") == "alpha"
    assert remote == local


def test_prometheus_page_parses_and_equals_the_cli(served: Served, tmp_path: Path) -> None:
    with served.client() as admin:
        response = admin.get("/metrics", params=WINDOW)
    assert response.status_code == 200, response.text
    # the same page where Prometheus looks by default, with the same token
    headers = {"Authorization": f"Bearer {served.admin_token}"}
    root = httpx.get(f"{served.url}/metrics", params=WINDOW, headers=headers, timeout=30)
    assert root.status_code == 200 and _samples(root.text) == _samples(response.text)
    assert httpx.get(f"{served.url}/metrics", timeout=30).status_code == 401
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    local = production(_cli_json(served, tmp_path=tmp_path, scope=served.scopes["alpha"]))
    labels = (("environment", "production"), ("project", "alpha"))
    f, dora = local["reliability"], local["dora"]
    expected = {
        "aicd_reliability_observed_seconds": f["window"]["observed_s"],
        "aicd_reliability_uptime_seconds": f["uptime_s"],
        "aicd_reliability_downtime_seconds": f["downtime_s"],
        "aicd_reliability_failures": f["failures"],
        "aicd_reliability_incidents": f["incidents"],
        "aicd_reliability_open_incidents": f["open_incidents"],
        "aicd_reliability_mttf_seconds": f["mttf_s"],
        "aicd_reliability_mttf_lower_bound": 0.0,
        "aicd_reliability_mttr_seconds": f["mttr_s"],
        "aicd_reliability_mtbf_seconds": f["mtbf_s"],
        "aicd_reliability_availability_ratio": f["availability"],
        "aicd_reliability_error_budget_seconds": f["error_budget"]["budget_s"],
        "aicd_reliability_error_budget_left_seconds": f["error_budget"]["left_s"],
        "aicd_reliability_error_budget_left_ratio": f["error_budget"]["left_fraction"],
        "aicd_dora_deployment_frequency_per_day": dora["deployment_frequency"]["value"],
        "aicd_dora_deployments": dora["deployment_frequency"]["deployments"],
        "aicd_dora_lead_time_seconds": dora["lead_time"]["value"],
        "aicd_dora_change_failure_rate_ratio": dora["change_failure_rate"]["value"],
        "aicd_dora_time_to_restore_seconds": dora["time_to_restore"]["value"],
    }
    for name, value in expected.items():
        assert samples[(name, labels)] == pytest.approx(value), name
    assert samples[("aicd_reliability_mttf_seconds", labels)] == pytest.approx(history.MTTF)  # and by hand
    level = dict(labels)
    for key, bucket, got in (
        ("deployment_frequency", "Weekly", "high"),
        ("lead_time", "One day", "elite"),
        ("change_failure_rate", "16-45%", "medium"),
        ("time_to_restore", "One day", "high"),
    ):
        for candidate in ("elite", "high", "medium", "low"):
            sample_labels = tuple(sorted({**level, "key": key, "bucket": bucket, "level": candidate}.items()))
            assert samples[("aicd_dora_level", sample_labels)] == (1.0 if candidate == got else 0.0)
    # staging and beta-prod observed nothing: figures without a value have no sample
    staging = (("environment", "staging"), ("project", "alpha"))
    assert samples[("aicd_reliability_observed_seconds", staging)] == 0
    assert ("aicd_reliability_availability_ratio", staging) not in samples
    assert (
        "aicd_reliability_observed_seconds",
        (("environment", "beta-prod"), ("project", "beta")),
    ) in samples
    # pipelines and jobs of alpha: one success (90 s, its job 45 s), one failure (30 s, its job 15 s)
    for status, pipeline_s, job_s in (("success", 90.0, 45.0), ("failed", 30.0, 15.0)):
        run = (("project", "alpha"), ("status", status))
        assert samples[("aicd_pipelines", run)] == 1
        assert samples[("aicd_pipeline_duration_seconds_count", run)] == 1
        assert samples[("aicd_pipeline_duration_seconds_sum", run)] == pytest.approx(pipeline_s)
        assert samples[("aicd_jobs", run)] == 1
        assert samples[("aicd_job_duration_seconds_sum", run)] == pytest.approx(job_s)


def test_callers_see_only_their_projects(served: Served) -> None:
    viewer = _user(served, "viewer", "alpha")
    outsider = _user(served, "outsider", None)
    with served.client(viewer) as client:
        mine = client.get("/reliability", params=WINDOW).json()
        assert {(e["project"], e["environment"]) for e in mine["environments"]} == {
            ("alpha", "production"),
            ("alpha", "staging"),
        }
        page = client.get("/metrics", params=WINDOW).text
        assert 'project="beta"' not in page and 'project="alpha"' in page
        hidden = client.get("/reliability", params={"project": "beta"})
        assert hidden.status_code == 404 and "no project 'beta'" in hidden.json()["error"]
    with served.client(outsider) as client:
        assert client.get("/reliability", params=WINDOW).json()["environments"] == []
        assert 'project="' not in client.get("/metrics").text
    with served.client("") as anonymous:
        assert anonymous.get("/metrics").status_code == 401
        assert anonymous.get("/reliability").status_code == 401
    with served.client() as admin:
        everything = admin.get("/reliability", params=WINDOW).json()
        assert {e["environment"] for e in everything["environments"]} == {
            "production",
            "staging",
            "beta-prod",
        }


def test_bad_parameters_are_clear_4xx(served: Served) -> None:
    with served.client() as admin:
        unknown = admin.get("/reliability", params={"env": "prodution"})
        assert unknown.status_code == 404
        assert unknown.json()["error"] == "no environment 'prodution' (did you mean \"production\"?)"
        since = admin.get("/reliability", params={"since": "last tuesday"})
        assert since.status_code == 422 and "--since 'last tuesday'" in since.json()["error"]
        future = admin.get("/metrics", params={"until": "2999-01-01"})
        assert future.status_code == 422 and "in the future" in future.json()["error"]
        assert admin.get("/metrics", params={"slo": "1.5"}).status_code == 422
        assert admin.get("/metrics", params={"until": "nan"}).status_code == 422
