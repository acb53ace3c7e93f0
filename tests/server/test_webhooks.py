"""Webhooks through the real server: signatures, replays, malformed bodies, pipelines created."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from serverproc import ServerProc, json_of
from sqlalchemy import create_engine, text

from aicd_testing import git, make_repo
from triggers.payloads import ZERO, delivery

CI = "job:\n  script: [echo hello]\n"
SECRET = "webhook-secret-0123"
PROVIDERS = ("github", "gitlab", "gitea")


def pipelines(server: ServerProc, project: str) -> list[tuple[Any, ...]]:
    """(id, ref, sha, source) of the project's pipelines, read from the database itself."""
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, ref, sha, source FROM pipelines WHERE project_dir = :key ORDER BY id"),
                {"key": f"server:{project}"},
            )
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def _commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", name)
    return git(repo, "rev-parse", "HEAD")


def _post(
    client: httpx.Client, project: str, provider: str, headers: dict[str, str], body: bytes
) -> httpx.Response:
    no_auth = {"Authorization": ""}  # the secret authenticates, not a token
    return client.post(f"/projects/{project}/hooks/{provider}", content=body, headers=headers | no_auth)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})


def test_each_provider_creates_exactly_one_pipeline(server: ServerProc, repo: Path) -> None:
    before = git(repo, "rev-parse", "HEAD")
    with server.client() as admin, server.client("") as anon:
        for provider in PROVIDERS:
            body = {"name": provider, "repo_url": str(repo), "webhook_secret": SECRET}
            assert admin.post("/projects", json=body).status_code == 201
        after = _commit(repo, "change")
        for provider in PROVIDERS:
            headers, body = delivery(provider, SECRET, "refs/heads/main", before, after)
            response = _post(anon, provider, provider, headers, body)
            assert response.status_code == 200, response.text
            result = json_of(response)
            assert result["status"] == "created" and isinstance(result["pipeline_id"], int)
            assert pipelines(server, provider) == [(result["pipeline_id"], "main", after, "push")]

            # Replays: the same delivery again, or the same signed body under a new delivery id.
            again = _post(anon, provider, provider, headers, body)
            assert again.status_code == 200 and again.json()["status"] == "duplicate"
            new_id = dict(headers)
            for key in ("X-GitHub-Delivery", "X-Gitlab-Event-UUID", "X-Gitea-Delivery"):
                if key in new_id:
                    new_id[key] = str(uuid.uuid4())
            assert _post(anon, provider, provider, new_id, body).json()["status"] == "duplicate"
            assert len(pipelines(server, provider)) == 1

        audit = json_of(admin.get("/projects/github/audit"))
        pushes = [e for e in audit if e["action"] == "webhook.push"]
        assert [e["actor"] for e in pushes] == ["webhook:github"]
        assert SECRET not in server.log()


def test_refused_deliveries_create_nothing(server: ServerProc, repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    with server.client() as admin, server.client("") as anon:
        body = {"name": "demo", "repo_url": str(repo), "webhook_secret": SECRET}
        assert admin.post("/projects", json=body).status_code == 201
        assert admin.post("/projects", json={"name": "nosecret", "repo_url": str(repo)}).status_code == 201

        for provider in PROVIDERS:
            for secret in (None, "wrong-secret-000"):
                headers, body = delivery(provider, secret, "refs/heads/main", ZERO, head)
                response = _post(anon, "demo", provider, headers, body)
                assert response.status_code == 401, response.text
                assert SECRET not in response.text and "wrong-secret" not in response.text
            # A refused delivery is not recorded: the same body, signed, still works afterwards.
        headers, body = delivery("gitea", SECRET, "refs/heads/main", ZERO, head)
        assert _post(anon, "demo", "gitea", headers, body).json()["status"] == "created"
        assert len(pipelines(server, "demo")) == 1

        headers, body = delivery("github", SECRET, "refs/heads/main", ZERO, head)
        # No secret, no such project, a wrong signature: one answer, which tells projects apart
        # for nobody (issue 11: 404 "no project" vs 401 naming the project did).
        refused = _post(anon, "nosecret", "github", headers, body)
        assert refused.status_code == 401 and "webhook refused" in refused.json()["error"]
        missing = _post(anon, "missing", "github", headers, body)
        wrong = _post(anon, "demo", "github", {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}, body)
        assert missing.status_code == wrong.status_code == 401
        assert missing.json() == refused.json() == wrong.json()
        assert "nosecret" not in refused.text and "missing" not in missing.text
        assert _post(anon, "demo", "bitbucket", headers, body).status_code == 422

        # Malformed but correctly signed bodies: 422 with the reason.
        for bad, reason in (
            (b"{oops", "not valid JSON"),
            (b'{"ref": "refs/heads/main"}', "'before' is missing"),
        ):
            headers, bad_body = delivery("github", SECRET, "refs/heads/main", ZERO, head, body=bad)
            response = _post(anon, "demo", "github", headers, bad_body)
            assert response.status_code == 422 and reason in response.json()["error"], response.text

        # A branch deletion and a ping create nothing.
        headers, body = delivery("gitlab", SECRET, "refs/heads/main", head, ZERO)
        assert _post(anon, "demo", "gitlab", headers, body).json()["status"] == "ignored"
        ping = {"X-GitHub-Event": "ping", "Content-Type": "application/json"}
        ping_body = b'{"zen": "Design for failure.", "hook_id": 1}'
        from triggers.payloads import sign

        ping["X-Hub-Signature-256"] = "sha256=" + sign(SECRET, ping_body)
        assert _post(anon, "demo", "github", ping, ping_body).json()["status"] == "ping"
        assert len(pipelines(server, "demo")) == 1
        assert pipelines(server, "nosecret") == []


def test_tag_push_and_unknown_commit(server_sqlite: ServerProc, repo: Path) -> None:
    server = server_sqlite
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "v1.0")
    with server.client() as admin, server.client("") as anon:
        body = {"name": "demo", "repo_url": str(repo), "webhook_secret": SECRET}
        assert admin.post("/projects", json=body).status_code == 201
        headers, body = delivery("gitlab", SECRET, "refs/tags/v1.0", ZERO, head)
        created = _post(anon, "demo", "gitlab", headers, body).json()
        assert created["status"] == "created"
        assert pipelines(server, "demo")[-1][1:] == ("v1.0", head, "push")
        # ... and it runs (the dispatcher takes it from here).
        deadline = time.monotonic() + 30
        status = ""
        while time.monotonic() < deadline:
            status = json_of(admin.get(f"/projects/demo/pipelines/{created['pipeline_id']}"))["status"]
            if status in ("success", "failed", "canceled"):
                break
            time.sleep(0.1)
        assert status == "success"

        # A push of a commit the repository does not have: a clear error, and a redelivery is not a replay.
        headers, body = delivery("github", SECRET, "refs/heads/main", head, "f" * 40)
        response = _post(anon, "demo", "github", headers, body)
        assert response.status_code == 422 and "f" * 40 in response.json()["error"]
        assert _post(anon, "demo", "github", headers, body).status_code == 422  # not "duplicate"
        assert len(pipelines(server, "demo")) == 1
