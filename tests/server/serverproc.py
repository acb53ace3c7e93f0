"""The real `aicd server` as a subprocess, for HTTP tests.

ServerProc starts `python -m aicd.cli.main server --host 127.0.0.1 --port 0 --home HOME`
with AICD_DATABASE_URL set, reads the port the server prints once it is ready, and
waits for /api/v1/health. restart() reuses the same port, home and database.
"""

from __future__ import annotations

import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from aicd_testing import AICD, clean_env

API = "/api/v1"
START_TIMEOUT_S = 60.0
_READY = re.compile(r"aicd server listening on (http://\S+)")


class ServerProc:
    def __init__(
        self,
        home: Path,
        database_url: str,
        *,
        poll: bool = True,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home
        self.database_url = database_url
        self.poll = poll
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.log_path = home.parent / f"{home.name}-server.log"
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> ServerProc:
        env = clean_env()
        env["AICD_DATABASE_URL"] = self.database_url
        # The tests' repositories live in temporary folders (the home, inside one, stays refused).
        env["AICD_ALLOWED_REPO_ROOTS"] = tempfile.gettempdir()
        env.update(self.extra_env)
        command = [*AICD, "server", "--host", "127.0.0.1", "--port", str(self.port), "--home", str(self.home)]
        if not self.poll:
            command.append("--no-poll")
        command += self.args
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self._wait_ready(offset)
        return self

    def _wait_ready(self, offset: int) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aicd server exited with {self.proc.returncode}:\n{self.log()}")
            match = _READY.search(self.log(offset))
            if match:
                self.url = match.group(1)
                self.port = int(self.url.rsplit(":", 1)[1])
                try:
                    if httpx.get(f"{self.url}{API}/health", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"aicd server not ready after {START_TIMEOUT_S} s:\n{self.log()}")

    def stop(self, timeout: float = 20, *, check: bool = True) -> int:
        """SIGTERM (uvicorn's graceful shutdown); SIGKILL if it does not exit in time (an error if check)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            if not check:
                return -signal.SIGKILL
            raise RuntimeError(f"aicd server did not stop within {timeout} s:\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL, as a crash would (children it started keep running: they are its jobs)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, *, kill: bool = False) -> ServerProc:
        self.kill() if kill else self.stop()
        return self.start()

    # -- access -------------------------------------------------------------------------------------

    @property
    def admin_token(self) -> str:
        return (self.home / "admin-token").read_text().strip()

    def client(self, token: str | None = None, *, timeout: float = 30) -> httpx.Client:
        """An httpx client on /api/v1 (paths relative to it); token None: the admin's; "": none."""
        token = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=f"{self.url}{API}", headers=headers, timeout=timeout)

    def log(self, offset: int = 0) -> str:
        try:
            return self.log_path.read_bytes()[offset:].decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def cli_env(self, token: str | None = None) -> dict[str, str]:
        """Environment for `aicd` commands in remote mode against this server."""
        env = clean_env()
        env["AICD_SERVER"] = self.url
        env["AICD_TOKEN"] = self.admin_token if token is None else token
        return env


def make_user(
    server: ServerProc,
    name: str,
    role_on: Mapping[str, str] | tuple[str, str] | None = None,
    *,
    is_admin: bool = False,
) -> tuple[int, str]:
    """Create a user (as the admin) with a token; role_on: {project: role} or (project, role)."""
    with server.client() as admin:
        response = admin.post("/users", json={"name": name, "is_admin": is_admin})
        assert response.status_code == 201, response.text
        user_id = int(response.json()["id"])
        response = admin.post(f"/users/{user_id}/tokens", json={"name": "test"})
        assert response.status_code == 201, response.text
        token = str(response.json()["token"])
        roles = dict([role_on]) if isinstance(role_on, tuple) else dict(role_on or {})
        for project, role in roles.items():
            response = admin.put(f"/projects/{project}/members/{user_id}", json={"role": role})
            assert response.status_code == 200, response.text
    return user_id, token


def json_of(response: httpx.Response) -> Any:
    assert response.headers.get("content-type", "").startswith("application/json"), response.text
    return response.json()


def has_route(server: ServerProc, method: str, path: str) -> bool:
    """Whether the server's OpenAPI document has this route (path under /api/v1)."""
    document = httpx.get(f"{server.url}{API}/openapi.json", timeout=10).json()
    return method.lower() in document["paths"].get(f"{API}{path}", {})


def make_project(
    server: ServerProc,
    name: str,
    repo_url: str,
    *,
    webhook_secret: str | None = None,
    poll_interval_s: float | None = None,
) -> dict[str, Any]:
    """Create a project as the admin through POST /projects; while that route does not exist yet,
    straight in the server's database (the same store the route would use)."""
    body: dict[str, Any] = {"name": name, "repo_url": repo_url, "poll_interval_s": poll_interval_s}
    if webhook_secret is not None:
        body["webhook_secret"] = webhook_secret
    if has_route(server, "post", "/projects"):
        with server.client() as admin:
            response = admin.post("/projects", json=body)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())
    from aicd.core.secrets import SecretBox
    from aicd.store.db import connect
    from aicd.store.projects_repo import ProjectStore

    database = connect(server.database_url)
    try:
        secret = SecretBox.load(server.home, None).encrypt(webhook_secret) if webhook_secret else None
        record = ProjectStore(database).create(
            name, repo_url, "main", ".gitlab-ci.yml", poll_interval_s, secret
        )
    finally:
        database.dispose()
    return {"id": record.id, "name": record.name}
