"""`aicd incident list|declare|resolve` on the local database (AICD_HOME), as a real process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aicd.store.deployments import open_deploy_store
from aicd_testing import aicd, clean_env


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A home whose database has an environment `prod` (and `prod` of another scope)."""
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'aicd.db'}"
    with open_deploy_store(url) as store:
        store.ensure_environment("prod")
        store.ensure_environment("prod", scope="other-project")
    return {**clean_env(), "AICD_HOME": str(home), "AICD_DATABASE_URL": url, "USER": "alice"}


def run(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return aicd(tmp_path, "incident", *args, env=env)


def test_declare_list_resolve(tmp_path: Path, env: dict[str, str]) -> None:
    declared = run(
        tmp_path, env, "declare", "prod", "--title", "answers are wrong", "--cause", "bad features"
    )
    assert declared.returncode == 0, declared.stderr
    assert declared.stdout.strip() == "incident #1 declared in prod: answers are wrong"
    listed = run(tmp_path, env, "list", "--open")
    assert "#1" in listed.stdout and "declared" in listed.stdout and "open for" in listed.stdout

    resolved = run(tmp_path, env, "resolve", "1", "--resolution", "features fixed", "--json")
    assert resolved.returncode == 0, resolved.stderr
    record = json.loads(resolved.stdout)
    assert (record["opened_by"], record["resolved_by"], record["resolution"]) == (
        "alice",
        "alice",
        "features fixed",
    )
    assert run(tmp_path, env, "list", "--open").stdout.strip() == "no open incidents"
    (only,) = json.loads(run(tmp_path, env, "list", "--env", "prod", "--json").stdout)
    assert only["id"] == 1 and only["resolved_at"] >= only["opened_at"]

    again = run(tmp_path, env, "resolve", "1")
    assert (
        again.returncode == 1 and "was resolved already" in again.stderr and "Traceback" not in again.stderr
    )


def test_scopes_and_mistakes_are_one_clear_line(tmp_path: Path, env: dict[str, str]) -> None:
    other = {**env, "AICD_ENV_SCOPE": "other-project"}
    assert run(tmp_path, other, "declare", "prod", "--title", "theirs").returncode == 0
    assert json.loads(run(tmp_path, env, "list", "--json").stdout) == []  # not this scope's
    foreign = run(tmp_path, env, "resolve", "1")
    assert foreign.returncode == 1 and foreign.stderr.strip() == "aicd: no incident #1"

    unknown = run(tmp_path, env, "declare", "prd", "--title", "x")
    assert unknown.returncode == 1 and "no environment 'prd'" in unknown.stderr and "prod" in unknown.stderr
    blank = run(tmp_path, env, "declare", "prod", "--title", " ")
    assert blank.returncode == 2 and "needs a title" in blank.stderr
    assert run(tmp_path, env, "resolve", "0").returncode == 2  # click: ID is 1 or more
