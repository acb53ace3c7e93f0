"""The model registry by project on the real `aicd server` (SQLite and PostgreSQL).

Two projects, A and B; a model of A. Every caller (A's viewer, developer and maintainer, B's
developer, a user with no role, the admin, and job tokens of A and of B) tries every action
(read, register a version, move an ordinary alias, move the protected alias, remove each), and
must get exactly the status the rules give. Then A grants B reads, and B's callers may read, and
still change nothing.

The job tokens here are minted the way the server mints them (JobTokenStore, with a `running`
job row in the server's database), so that every caller and action can be tried without a job
holding the token: test_job_tokens.py shows a real job using its own.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import httpx
import pytest
from serverproc import ServerProc, make_project, make_user

from aicd.core.access import hash_token, new_job_token
from aicd.store.db import connect
from aicd.store.job_tokens import JobTokenStore
from aicd.store.records import NewJob
from aicd.store.repository import RunStore
from aicd_testing import aicd, make_repo

MODEL = "a-model"
ACTIONS = ("read", "register", "alias", "protected", "unalias", "unprotect")
ALLOWED = {"read": 200, "register": 201, "alias": 200, "protected": 200, "unalias": 200, "unprotect": 200}
ALL_404 = dict.fromkeys(ACTIONS, 404)

EXPECTED: dict[str, dict[str, int]] = {
    "viewer A": {"read": 200} | dict.fromkeys(ACTIONS[1:], 403),
    "developer A": {**ALLOWED, "protected": 403, "unprotect": 403},
    "maintainer A": ALLOWED,
    "admin": ALLOWED,
    "developer B": ALL_404,
    "outsider": ALL_404,
    "job A (main)": ALLOWED,  # the default branch is protected: its jobs may promote
    "job A (branch)": {**ALLOWED, "protected": 403, "unprotect": 403},
    "job B (main)": ALL_404,
}
# After A grants B reads: B reads, and may change nothing.
AFTER_GRANT = {
    "developer B": {"read": 200} | dict.fromkeys(ACTIONS[1:], 403),
    "job B (main)": {"read": 200} | dict.fromkeys(ACTIONS[1:], 403),
    "outsider": ALL_404,
}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _job_token(server: ServerProc, project: str, project_id: int, *, protected: bool) -> str:
    """A live job token of a `running` job of `project`, as the dispatcher makes one."""
    token = new_job_token()
    with RunStore.open(server.database_url) as runs:
        pipeline = runs.create_pipeline(
            project_dir=f"server:{project}",
            ref="main" if protected else "feature",
            sha=secrets.token_hex(20),
            source="push",
            file=".gitlab-ci.yml",
            run_dir_root=str(server.home / "runs"),
        )
        (job_id,) = runs.add_jobs(pipeline.id, [NewJob("train", "train", "on_success", False, "running")])
    database = connect(server.database_url)
    try:
        JobTokenStore(database).create(
            hash_token(token),
            project_id=project_id,
            pipeline_id=pipeline.id,
            job_id=job_id,
            expires_at=9e9,
            protected_ref=protected,
        )
    finally:
        database.dispose()
    return token


def _act(server: ServerProc, admin: httpx.Client, token: str, action: str, data: bytes) -> int:
    # the same starting point for every call: production and staging -> 1
    for alias in ("production", "staging"):
        assert admin.put(f"/models/{MODEL}/aliases/{alias}", json={"version": 1}).status_code == 200
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as api:
        headers = (
            {"JOB-TOKEN": token} if token.startswith("aicdjob_") else {"Authorization": f"Bearer {token}"}
        )
        if action == "read":
            response = api.get(f"/models/{MODEL}/aliases/production", headers=headers)
        elif action == "register":
            body = {"artifact": {"digest": _digest(data), "name": "m.bin"}}
            response = api.post(f"/models/{MODEL}/versions", json=body, headers=headers)
        elif action in ("alias", "protected"):
            alias = "staging" if action == "alias" else "production"
            response = api.put(f"/models/{MODEL}/aliases/{alias}", json={"version": 2}, headers=headers)
        else:
            alias = "staging" if action == "unalias" else "production"
            response = api.delete(f"/models/{MODEL}/aliases/{alias}", headers=headers)
    if response.status_code >= 400:
        assert response.json()["error"], response.text
    if response.status_code == 404:
        assert "a-model" not in api_models(server, token), "a hidden model must not be listed"
    return response.status_code


def api_models(server: ServerProc, token: str) -> list[str]:
    headers = {"JOB-TOKEN": token} if token.startswith("aicdjob_") else {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as api:
        response = api.get("/models", headers=headers)
    assert response.status_code == 200, response.text
    return [m["name"] for m in response.json()]


@pytest.mark.slow
def test_registry_access_by_project(server: ServerProc, tmp_path: Path) -> None:
    ids = {
        name: int(make_project(server, name, str(make_repo(tmp_path / name, {"README": "x\n"})))["id"])
        for name in ("pa", "pb")
    }
    tokens = {
        "viewer A": make_user(server, "va", ("pa", "viewer"))[1],
        "developer A": make_user(server, "da", ("pa", "developer"))[1],
        "maintainer A": make_user(server, "ma", ("pa", "maintainer"))[1],
        "developer B": make_user(server, "db", ("pb", "developer"))[1],
        "outsider": make_user(server, "nobody")[1],
        "admin": server.admin_token,
        "job A (main)": _job_token(server, "pa", ids["pa"], protected=True),
        "job A (branch)": _job_token(server, "pa", ids["pa"], protected=False),
        "job B (main)": _job_token(server, "pb", ids["pb"], protected=True),
    }
    data = b"weights of a-model"
    with server.client() as admin:
        assert admin.put(f"/objects/{_digest(data)}", content=data).status_code == 201
        for _ in range(2):
            body = {"artifact": {"digest": _digest(data), "name": "m.bin"}, "project": "pa"}
            assert admin.post(f"/models/{MODEL}/versions", json=body).status_code == 201, body
        assert admin.get(f"/models/{MODEL}").json()["project"] == "pa"
        assert admin.get("/projects/pa/protected-aliases").json()["aliases"] == ["production"]

        got = {
            caller: {action: _act(server, admin, tokens[caller], action, data) for action in ACTIONS}
            for caller in EXPECTED
        }
        assert got == EXPECTED

        # A's maintainer grants B reads (audited); B reads, writes nothing
        with server.client(tokens["maintainer A"]) as maintainer:
            granted = maintainer.put("/projects/pa/model-readers/pb")
            assert granted.status_code == 200 and granted.json()["readers"] == ["pb"]
        with server.client(tokens["developer A"]) as developer:
            assert developer.put("/projects/pa/model-readers/pb").status_code == 403
        audit = admin.get("/projects/pa/audit").json()
        assert any(e["action"] == "model_readers.grant" and e["actor"] == "ma" for e in audit)
        got = {
            caller: {action: _act(server, admin, tokens[caller], action, data) for action in ACTIONS}
            for caller in AFTER_GRANT
        }
        assert got == AFTER_GRANT
        assert MODEL in api_models(server, tokens["developer B"])

        # a project can protect other aliases: staging now needs a maintainer too
        with server.client(tokens["maintainer A"]) as maintainer:
            put = maintainer.put(
                "/projects/pa/protected-aliases", json={"aliases": ["production", "staging"]}
            )
            assert put.status_code == 200, put.text
        assert _act(server, admin, tokens["developer A"], "alias", data) == 403
        assert _act(server, admin, tokens["maintainer A"], "alias", data) == 200
        # registry changes are in A's audit log
        actions = {e["action"] for e in admin.get("/projects/pa/audit").json()}
        assert {
            "model.register",
            "model.alias.set",
            "model.alias.delete",
            "project.protected_aliases",
        } <= actions


def test_cli_grants_reads_and_protects_aliases(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    for name in ("pa", "pb"):
        make_project(server, name, str(make_repo(tmp_path / name, {"README": "x\n"})))
    _, maintainer = make_user(server, "ma", ("pa", "maintainer"))
    _, viewer = make_user(server, "va", ("pa", "viewer"))
    env = server.cli_env(maintainer)
    shown = aicd(tmp_path, "project", "model-readers", "pa", env=env)
    assert shown.returncode == 0 and "model readers of project pa: none" in shown.stdout, shown.stderr
    added = aicd(tmp_path, "project", "model-readers", "pa", "--add", "pb", "--json", env=env)
    assert added.returncode == 0 and json.loads(added.stdout) == {"project": "pa", "readers": ["pb"]}
    denied = aicd(tmp_path, "project", "model-readers", "pa", "--remove", "pb", env=server.cli_env(viewer))
    assert denied.returncode != 0 and "maintainer" in denied.stderr and "Traceback" not in denied.stderr
    removed = aicd(tmp_path, "project", "model-readers", "pa", "--remove", "pb", env=env)
    assert "model readers of project pa: none" in removed.stdout, removed.stderr
    protected = aicd(tmp_path, "project", "protected-aliases", "pa", env=env)
    assert "protected aliases of project pa: production" in protected.stdout, protected.stderr
    changed = aicd(tmp_path, "project", "protected-aliases", "pa", "production", "stable", env=env)
    assert "protected aliases of project pa: production, stable" in changed.stdout, changed.stderr
    bad = aicd(tmp_path, "project", "protected-aliases", "pa", "Not An Alias", env=env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    cleared = aicd(tmp_path, "project", "protected-aliases", "pa", "--none", env=env)
    assert "protected aliases of project pa: none" in cleared.stdout, cleared.stderr


def test_an_admin_gives_a_model_to_another_project(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    for name in ("pa", "pb"):
        make_project(server, name, str(make_repo(tmp_path / name, {"README": "x\n"})))
    _, developer_b = make_user(server, "db", ("pb", "developer"))
    _, maintainer_a = make_user(server, "ma", ("pa", "maintainer"))
    data = b"weights"
    with server.client() as admin:
        assert admin.put(f"/objects/{_digest(data)}", content=data).status_code == 201
        body = {"artifact": {"digest": _digest(data), "name": "m.bin"}}
        assert admin.post("/models/orphan/versions", json=body).status_code == 201  # an admin's: no project
        assert admin.get("/models/orphan").json()["project"] is None
        with server.client(developer_b) as dev:
            assert dev.get("/models/orphan").status_code == 200  # everyone reads a model of no project
            refused = dev.post("/models/orphan/versions", json=body)
            assert refused.status_code == 403 and "only an admin" in refused.json()["error"]
        with server.client(maintainer_a) as maintainer:
            assert maintainer.patch("/models/orphan", json={"project": "pa"}).status_code == 403
        assert admin.patch("/models/orphan", json={"project": "nope"}).status_code == 404
        moved = admin.patch("/models/orphan", json={"project": "pb"})
        assert moved.status_code == 200 and moved.json()["project"] == "pb"
        with server.client(developer_b) as dev:
            assert dev.post("/models/orphan/versions", json=body).status_code == 201
        with server.client(maintainer_a) as maintainer:
            assert maintainer.get("/models/orphan").status_code == 404
        assert any(e["action"] == "model.project" for e in admin.get("/projects/pb/audit").json())
