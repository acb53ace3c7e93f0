"""Helpers for the pipeline tests against the real server: projects on real git repos,
triggering, waiting, reading Server-Sent Events."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from serverproc import API, ServerProc, json_of, make_project

from aicd_testing import git, make_repo

FINAL = frozenset({"success", "failed", "canceled", "skipped", "manual"})


def new_project(server: ServerProc, tmp_path: Path, files: dict[str, str], name: str = "demo") -> Path:
    """A git repository with `files` committed on main, added as project `name` (no polling)."""
    repo = make_repo(tmp_path / f"repo-{name}", files)
    make_project(server, name, str(repo))
    return repo


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def trigger(client: httpx.Client, project: str, ref: str = "main", **body: Any) -> dict[str, Any]:
    response = client.post(f"/projects/{project}/pipelines", json={"ref": ref, **body})
    assert response.status_code == 201, response.text
    return dict(json_of(response))


def wait_pipeline(
    client: httpx.Client, project: str, pipeline_id: int, timeout: float = 60, until: frozenset[str] = FINAL
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = dict(json_of(client.get(f"/projects/{project}/pipelines/{pipeline_id}")))
        if found["status"] in until:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"pipeline {pipeline_id} still {found['status']} after {timeout} s")
        time.sleep(0.1)


def jobs_of(client: httpx.Client, project: str, pipeline_id: int, **params: Any) -> dict[str, dict[str, Any]]:
    found = json_of(client.get(f"/projects/{project}/pipelines/{pipeline_id}/jobs", params=params))
    return {j["name"]: j for j in found}


def wait_job(
    client: httpx.Client, project: str, job_id: int, status: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = dict(json_of(client.get(f"/projects/{project}/jobs/{job_id}")))
        if found["status"] == status:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {found['status']}, not {status}, after {timeout} s")
        time.sleep(0.05)


def wait_log(client: httpx.Client, project: str, job_id: int, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = client.get(f"/projects/{project}/jobs/{job_id}/log").text
        if text in log:
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id}: {text!r} not in its log after {timeout} s:\n{log}")
        time.sleep(0.05)


def read_sse(
    server: ServerProc, path: str, token: str | None = None, timeout: float = 60
) -> list[tuple[str, str, float]]:
    """(event, data, seconds since the request) of every event until `end` (comments left out)."""
    token = server.admin_token if token is None else token
    events: list[tuple[str, str, float]] = []
    start = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{server.url}{API}{path}", headers=headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read().decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        kind, data = "message", []
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if line == "":
                if data:
                    events.append((kind, "\n".join(data), time.monotonic() - start))
                    if kind == "end":
                        break
                kind, data = "message", []
            elif line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
            elif line == "data:":
                data.append("")
    return events


def end_status(events: list[tuple[str, str, float]]) -> str:
    assert events and events[-1][0] == "end", events
    return str(json.loads(events[-1][1])["status"])
