"""`aicd monitor --once` as a real process: an environment whose address does not answer is down."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from aicd.store.deployments import open_deploy_store
from aicd_testing import aicd, clean_env


def test_once_reports_down_opens_an_incident_and_exits_1(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'aicd.db'}"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing answers there
    with open_deploy_store(url) as store:
        env = store.ensure_environment("prod")
        store.update_environment(
            env.id, status="healthy", url=f"http://127.0.0.1:{port}", stable_revision="r1"
        )
        store.ensure_environment("staging")  # idle: not probed
    env_vars = {**clean_env(), "AICD_HOME": str(home), "AICD_DATABASE_URL": url}

    done = aicd(tmp_path, "monitor", "--once", "--json", "--interval", "500ms", env=env_vars)
    assert done.returncode == 1, done.stderr
    changes = {c["environment"]: c for c in json.loads(done.stdout)}
    assert changes["prod"]["state"] == "down" and changes["prod"]["action"] == "opened"
    assert "connection refused" in changes["prod"]["message"]
    assert changes["staging"]["state"] == "idle"  # nothing deployed yet: not probed
    again = aicd(tmp_path, "monitor", "--once", "--env", "prod", env=env_vars)
    assert again.returncode == 1 and "prod: down" in again.stdout and "opened" not in again.stdout
    with open_deploy_store(url) as store:
        (incident,) = store.list_incidents(environment="prod")
    assert incident.kind == "down" and incident.resolved_at is None

    unknown = aicd(tmp_path, "monitor", "--env", "prd", env=env_vars)
    assert unknown.returncode == 1 and "no environment 'prd'" in unknown.stderr
    bad = aicd(tmp_path, "monitor", "--interval", "often", env=env_vars)
    assert bad.returncode == 2 and bad.stderr.startswith("aicd: --interval: 'often' is not a duration")
