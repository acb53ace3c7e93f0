"""Fixtures of the web UI tests: the server's real app in-process (TestClient: its lifespan, the
dispatcher and real job processes run), on a fresh SQLite home, with real git repositories."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from http.cookiejar import Cookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from aicd.server.app import create_app
from aicd.server.settings import ServerSettings
from aicd_testing import make_repo

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FINAL = frozenset({"success", "failed", "canceled", "skipped", "manual"})


class UI:
    """The app with its admin token; `browser(token)` is a client that signs in through the form."""

    def __init__(self, client: TestClient, home: Path) -> None:
        self.client = client
        self.home = home
        self.admin_token = (home / "admin-token").read_text().strip()

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        response = self.client.request(method, f"/api/v1{path}", headers=headers, **kwargs)
        assert response.status_code < 400, response.text
        return response.json() if response.content else None

    def user(self, name: str, project: str, role: str) -> str:
        user = self.api("POST", "/users", json={"name": name})
        token = self.api("POST", f"/users/{user['id']}/tokens", json={"name": "t"})["token"]
        self.api("PUT", f"/projects/{project}/members/{user['id']}", json={"role": role})
        return str(token)

    def project(self, tmp_path: Path, name: str, ci: str) -> Path:
        repo = make_repo(tmp_path / f"repo-{name}", {".gitlab-ci.yml": ci})
        self.api("POST", "/projects", json={"name": name, "repo_url": str(repo)})
        return repo

    def run(self, project: str, ref: str = "main") -> int:
        return int(self.api("POST", f"/projects/{project}/pipelines", json={"ref": ref})["id"])

    def wait(self, project: str, pipeline_id: int, until: frozenset[str] = FINAL, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while True:
            status = str(self.api("GET", f"/projects/{project}/pipelines/{pipeline_id}")["status"])
            if status in until:
                return status
            assert time.monotonic() < deadline, f"pipeline {pipeline_id} still {status} after {timeout} s"
            time.sleep(0.1)

    def jobs(self, project: str, pipeline_id: int) -> dict[str, dict[str, Any]]:
        return {j["name"]: j for j in self.api("GET", f"/projects/{project}/pipelines/{pipeline_id}/jobs")}

    def browser(self, token: str | None = None) -> Browser:
        """A person with their own cookies, signed in with `token` (default: the admin's)."""
        person = Browser(self.client)
        csrf = csrf_of(person.get("/signin").text)
        response = person.post(
            "/signin", data={"token": token or self.admin_token, "csrf": csrf, "next": "/"}
        )
        assert response.status_code == 303, response.text
        return person


class Browser:
    """One client of the app (one event loop: the dispatcher's), with this person's own cookies."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.jar: list[Cookie] = []

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.client.cookies.clear()
        for cookie in self.jar:
            self.client.cookies.jar.set_cookie(cookie)
        kwargs.setdefault("follow_redirects", False)
        try:
            return self.client.request(method, url, **kwargs)
        finally:
            self.jar = list(self.client.cookies.jar)
            self.client.cookies.clear()

    @property
    def cookies(self) -> dict[str, str]:
        return {c.name: c.value or "" for c in self.jar}

    def replace_cookie(self, name: str, value: str) -> None:
        """Put back a cookie (as an attacker replaying an old one would)."""
        self.jar = [c for c in self.jar if c.name != name]
        self.client.cookies.clear()
        self.client.cookies.set(name, value, domain="testserver.local", path="/")
        self.jar += list(self.client.cookies.jar)
        self.client.cookies.clear()

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html
    return match.group(1)


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[UI]:
    home = tmp_path / "home"
    settings = ServerSettings.load(
        {},
        home=home,
        database_url=f"sqlite:///{home / 'aicd.db'}",
        poll=False,
        environments=False,
        concurrency=4,
        allowed_repo_roots=[tmp_path],  # the test's repositories are local folders
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield UI(client, home)
