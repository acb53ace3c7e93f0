"""/projects/{project}/incidents on the real `aicd server` (SQLite and PostgreSQL), `aicd incident`
against it, and the monitor the server runs: a dead address opens a `down` incident, a live one
closes it.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from serverproc import ServerProc, make_project, make_user

from aicd.store.db import connect
from aicd.store.deployments import DeployStore, EnvironmentRecord
from aicd_testing import aicd, make_repo

CI = "build:\n  script: [echo built]\n"


def environment(server: ServerProc, name: str, scope: str, **fields: Any) -> EnvironmentRecord:
    """An environment of the project `scope` in the server's database (idle unless `fields` say)."""
    with DeployStore(connect(server.database_url), owns_database=True) as store:
        env = store.ensure_environment(name, scope=scope)
        return store.update_environment(env.id, **fields) if fields else env


def projects(server: ServerProc, tmp_path: Path, *names: str) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    for name in names:
        make_project(server, name, str(repo))


def test_declare_list_resolve_with_roles_audit_and_events(server: ServerProc, tmp_path: Path) -> None:
    projects(server, tmp_path, "alpha", "beta")
    environment(server, "prod", "alpha")
    environment(server, "prod", "beta")
    _, viewer = make_user(server, "vera", ("alpha", "viewer"))
    _, developer = make_user(server, "dev", ("alpha", "developer"))
    with server.client(developer) as dev, server.client(viewer) as view, server.client() as admin:
        declared = dev.post(
            "/projects/alpha/incidents",
            json={
                "environment": "prod",
                "title": "predictions time out",
                "cause": "the feature store is slow",
            },
        )
        assert declared.status_code == 201, declared.text
        incident = declared.json()
        assert incident["kind"] == "declared" and incident["opened_by"] == "dev"
        assert incident["resolved_at"] is None and incident["cause"] == "the feature store is slow"

        assert (
            view.post("/projects/alpha/incidents", json={"environment": "prod", "title": "x"}).status_code
            == 403
        )
        unknown = dev.post("/projects/alpha/incidents", json={"environment": "prd", "title": "x"})
        assert unknown.status_code == 404 and "did you mean" in unknown.json()["error"]
        blank = dev.post("/projects/alpha/incidents", json={"environment": "prod", "title": "   "})
        assert blank.status_code == 422 and "title" in blank.json()["error"]

        other = admin.post("/projects/beta/incidents", json={"environment": "prod", "title": "beta's own"})
        assert other.status_code == 201, other.text
        listed = view.get("/projects/alpha/incidents").json()
        assert [i["id"] for i in listed] == [incident["id"]]  # not beta's, though both are "prod"
        assert (
            view.get("/projects/alpha/incidents", params={"open": "true", "environment": "prod"}).json()
            == listed
        )
        stray = dev.post(f"/projects/alpha/incidents/{other.json()['id']}/resolve", json={})
        assert stray.status_code == 404, stray.text  # beta's incident is not alpha's to resolve

        resolved = dev.post(
            f"/projects/alpha/incidents/{incident['id']}/resolve", json={"resolution": "cache added"}
        )
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["resolved_by"] == "dev" and resolved.json()["resolution"] == "cache added"
        assert resolved.json()["resolved_at"] >= incident["opened_at"]
        again = dev.post(f"/projects/alpha/incidents/{incident['id']}/resolve")  # no body at all is fine
        assert again.status_code == 409 and "resolved already" in again.json()["error"]
        assert view.get("/projects/alpha/incidents", params={"open": "true"}).json() == []

        audit = admin.get("/projects/alpha/audit").json()
        actions = [(a["actor"], a["action"], a["target"]) for a in audit]
        assert ("dev", "incident.declare", f"incident #{incident['id']}") in actions
        assert ("dev", "incident.resolve", f"incident #{incident['id']}") in actions
        events = view.get("/projects/alpha/deployment-events", params={"environment": "prod"}).json()
        assert [e["kind"] for e in events] == ["incident.opened", "incident.resolved"]
        assert events[1]["actor"] == "dev"


def test_the_cli_against_the_server(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    projects(server, tmp_path, "alpha")
    environment(server, "staging", "alpha")
    env = server.cli_env()

    def run(*args: str) -> Any:
        done = aicd(tmp_path, "incident", *args, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    declared = json.loads(
        run("declare", "staging", "--title", "login broken", "--project", "alpha", "--json")
    )
    assert declared["kind"] == "declared" and declared["opened_by"] == "admin"
    table = run("list", "--project", "alpha")
    assert "login broken" in table and "open for" in table
    run("resolve", str(declared["id"]), "--resolution", "reverted", "--project", "alpha")
    (listed,) = json.loads(run("list", "--project", "alpha", "--json"))
    assert listed["resolution"] == "reverted" and listed["resolved_by"] == "admin"
    no_project = aicd(tmp_path, "incident", "list", env=env)  # AICD_SERVER set: remote, needs --project
    assert no_project.returncode == 2 and "--project NAME" in no_project.stderr


def test_the_server_monitors_every_project_environment(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    projects(server, tmp_path, "alpha")
    port = free_port()
    environment(
        server, "web", "alpha", status="healthy", url=f"http://127.0.0.1:{port}", stable_revision="r1"
    )
    with server.client() as admin:

        def down() -> list[dict[str, Any]]:
            return [i for i in admin.get("/projects/alpha/incidents").json() if i["kind"] == "down"]

        wait_until(lambda: bool(down()), 15)
        (incident,) = down()
        assert incident["opened_by"] == "monitor" and incident["environment"] == "web"
        assert "its agent is not running" in incident["title"]
        with health_server(port):
            wait_until(lambda: down()[0]["resolved_at"] is not None, 15)  # the next probe: within 5 s
        (incident,) = down()
        assert incident["resolution"] == "recovered" and incident["resolved_by"] == "monitor"
    assert "alpha/web: down" in server.log()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def health_server(port: int) -> Iterator[None]:
    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Healthy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
