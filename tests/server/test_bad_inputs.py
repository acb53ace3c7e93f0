"""Bad input through the real server: each is one clear 4xx {"error": ...}, never a 5xx.

Malformed webhook bodies for every provider (what test_webhooks.py does not already cover), a
broken pipeline file arriving by webhook, and the inputs schemathesis found giving 500s:
numbers beyond the database's integers, non-ASCII digits taken for ids, a NUL in a ref or in
a pipeline variable.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
from serverproc import ServerProc, json_of, make_project
from test_webhooks import PROVIDERS, SECRET, _post, pipelines

from aicd_testing import git, make_repo
from triggers.payloads import ZERO, delivery, gitea_push, github_push, gitlab_push

CI = "job:\n  script: [echo hello]\n"
BROKEN_CI = "job:\n  stage: nowhere\n  scrip: [true]\n"
HUGE = "9" * 40  # beyond any 64-bit integer
SUPERSCRIPT = "\u00b3"  # str.isdigit() says yes, int() says no


def _push(provider: str, head: str) -> dict[str, Any]:
    maker = {"github": github_push, "gitlab": gitlab_push, "gitea": gitea_push}[provider]
    return maker("refs/heads/main", ZERO, head)


def _error(response: httpx.Response, status: int, *parts: str) -> str:
    assert response.status_code == status, response.text
    message = json_of(response)["error"]
    assert isinstance(message, str) and message, response.text
    for part in parts:
        assert part in message, (part, message)
    return message


def _wait_failed(client: httpx.Client, path: str, timeout: float = 30) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while (found := json_of(client.get(path)))["status"] != "failed":
        assert time.monotonic() < end, found
        time.sleep(0.1)
    return dict(found)


def test_malformed_webhook_bodies(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    head = git(repo, "rev-parse", "HEAD")
    make_project(server, "demo", str(repo), webhook_secret=SECRET)
    with server.client("") as anon:
        for provider in PROVIDERS:
            no_ref = _push(provider, head)
            del no_ref["ref"]
            bad_ref = _push(provider, head) | {"ref": 5}
            cases: list[tuple[bytes, int, str]] = [
                (b"not json at all", 422, "not valid JSON"),
                (b"", 422, "the body is empty"),
                (b'{"ref": "\xff"}', 422, "not valid JSON"),  # not UTF-8
                (b"[1, 2]", 422, "must be a JSON object, not list"),
                (b'"refs/heads/main"', 422, "must be a JSON object"),
                (json.dumps(no_ref).encode(), 422, "field 'ref' is missing"),
                (json.dumps(bad_ref).encode(), 422, "field 'ref' must be a non-empty string"),
                (b"[" * 100_000 + b"]" * 100_000, 422, "nested too deeply"),
                (b" " * (25 * 1024 * 1024 + 1), 413, "larger than"),
            ]
            for number, (body, status, reason) in enumerate(cases):
                headers, signed = delivery(
                    provider, SECRET, "refs/heads/main", ZERO, head, body=body, delivery_id=f"bad-{number}"
                )
                message = _error(_post(anon, "demo", provider, headers, signed), status, reason)
                assert provider in message or status == 413, message
            # Nothing was recorded: the same delivery id with a good body still runs.
            headers, body = delivery(provider, SECRET, "refs/heads/main", ZERO, head, delivery_id="bad-0")
            assert json_of(_post(anon, "demo", provider, headers, body))["status"] == "created"

        # A large body sent without a Content-Length (chunked) is cut off as well.
        headers, _ = delivery("github", SECRET, "refs/heads/main", ZERO, head)
        chunks = (b" " * (1024 * 1024) for _ in range(26))
        response = anon.post("/projects/demo/hooks/github", content=chunks, headers=headers)
        _error(response, 413, "larger than")
    assert len(pipelines(server, "demo")) == len(PROVIDERS)
    assert "Traceback" not in server.log()


def test_a_broken_pipeline_file_pushed_by_webhook_is_a_failed_pipeline(
    server_sqlite: ServerProc, tmp_path: Path
) -> None:
    server = server_sqlite
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": BROKEN_CI})
    head = git(repo, "rev-parse", "HEAD")
    make_project(server, "broken", str(repo), webhook_secret=SECRET)
    with server.client() as admin:
        headers, body = delivery("gitlab", SECRET, "refs/heads/main", ZERO, head)
        created = json_of(_post(admin, "broken", "gitlab", headers, body))
        assert created["status"] == "created", created
        pipeline_id = created["pipeline_id"]
        found = _wait_failed(admin, f"/projects/broken/pipelines/{pipeline_id}")
        # Every lint message, each with its file and line.
        assert ".gitlab-ci.yml:" in found["error"] and "nowhere" in found["error"], found
        assert "scrip" in found["error"], found
        assert json_of(admin.get(f"/projects/broken/pipelines/{pipeline_id}/jobs")) == []


def test_numbers_and_text_no_database_can_hold(server: ServerProc, tmp_path: Path) -> None:
    """Regressions: each of these was a 500 (SQLite: OverflowError; PostgreSQL: out of range;
    int("³"): ValueError; git: embedded null byte)."""
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    make_project(server, "demo", str(repo), webhook_secret=SECRET)
    with server.client() as admin:
        job = admin.post("/projects/demo/pipelines", json={"ref": "main"})
        assert job.status_code == 201, job.text
        for path in (
            f"/users/{HUGE}/tokens",
            f"/tokens/{HUGE}",
            f"/projects/demo/pipelines/{HUGE}",
            f"/projects/demo/jobs/{HUGE}",
            f"/projects/demo/members/{2**63}",
        ):
            method = "DELETE" if path.startswith(("/tokens", "/projects/demo/members")) else "GET"
            _error(admin.request(method, path), 422, "less than or equal to")
        _error(admin.get("/projects/demo/pipelines/0"), 422, "greater than or equal to 1")
        # A project named by digits that are not an id is no project.
        for name in (HUGE, SUPERSCRIPT, str(2**63)):
            _error(admin.get(f"/projects/{name}"), 404, f"no project {name!r}")
            _error(admin.post(f"/projects/{name}/hooks/github", content=b"{}"), 401, "webhook refused")
        _error(admin.get("/audit", params={"project": SUPERSCRIPT}), 404, "does not exist")
        _error(admin.get("/audit", params={"project": HUGE}), 404, "does not exist")
        # Model versions: 32-bit numbers, ASCII digits.
        _error(admin.get(f"/models/m/versions/{HUGE}"), 422, "versions go up to 2147483647")
        _error(admin.get(f"/models/m/versions/{SUPERSCRIPT}"), 422, "expected a version number")
        _error(admin.put("/models/m/aliases/prod", json={"version": 2**31}), 422, "less than or equal to")
        digest = "sha256:" + hashlib.sha256(b"w").hexdigest()
        assert admin.put(f"/objects/{digest}", content=b"w").status_code == 201
        body = {"artifact": {"digest": digest, "name": "w.bin"}, "lineage": {"pipeline_id": 2**63}}
        _error(admin.post("/models/m/versions", json=body), 422, "less than or equal to")
        # A NUL in a ref, a sha or a pipeline variable.
        _error(admin.post("/projects/demo/pipelines", json={"ref": "ma\x00in"}), 422, "NUL character")
        sha = {"ref": "main", "sha": "abc\x00def"}
        _error(admin.post("/projects/demo/pipelines", json=sha), 422, "NUL character")
        nul = {"ref": "main", "variables": [{"key": "A", "value": "a\x00b"}]}
        _error(admin.post("/projects/demo/pipelines", json=nul), 422, "body.variables.0.value", "NUL")
        # A Last-Event-ID that is not a number starts the stream from the beginning.
        job_id = json_of(admin.get(f"/projects/demo/pipelines/{job.json()['id']}/jobs"))[0]["id"]
        stream = admin.get(
            f"/projects/demo/jobs/{job_id}/log/stream", headers={b"Last-Event-ID": SUPERSCRIPT.encode()}
        )
        assert stream.status_code == 200 and "event: end" in stream.text, stream.text
    assert "internal error" not in server.log() and "Traceback" not in server.log()
