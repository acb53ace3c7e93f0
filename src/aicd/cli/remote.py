"""Remote mode of the CLI: --server/--token and an HTTP client that turns errors into AicdErrors."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import IO, Any, TypeVar

import click
import httpx

from aicd.errors import (
    AicdError,
    AuthError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
)

F = TypeVar("F", bound=Callable[..., Any])
API_PREFIX = "/api/v1"
TIMEOUT_S = 30.0

_ERRORS: dict[int, type[AicdError]] = {
    401: AuthError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ConfigError,
    503: StoreError,
}


def remote_options(func: F) -> F:
    """Adds --server URL (env AICD_SERVER) and --token (env AICD_TOKEN) to a click command."""
    func = click.option(
        "--token",
        envvar="AICD_TOKEN",
        default=None,
        help="API token (env AICD_TOKEN).",
    )(func)
    func = click.option(
        "--server",
        envvar="AICD_SERVER",
        default=None,
        metavar="URL",
        help="aicd server URL, e.g. http://127.0.0.1:8080 (env AICD_SERVER).",
    )(func)
    return func


def job_token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """Inside a job of an aicd server: the job's own token (valid while the job runs). Another CI's
    CI_JOB_TOKEN (GitLab's) is never sent to an aicd server."""
    from aicd.core.access import JOB_TOKEN_PREFIX

    token = (os.environ if environ is None else environ).get("CI_JOB_TOKEN", "").strip()
    return token if token.startswith(JOB_TOKEN_PREFIX) else None


def server_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The server a verb inside a server's job talks to: AICD_SERVER, when a token comes with it
    (CI_JOB_TOKEN or AICD_TOKEN) and no local store is asked for (AICD_HOME, AICD_DATABASE_URL)."""
    env = os.environ if environ is None else environ
    server = env.get("AICD_SERVER", "").strip()
    if not server or env.get("AICD_HOME") or env.get("AICD_DATABASE_URL"):
        return None
    if not (job_token_from_env(env) or env.get("AICD_TOKEN", "").strip()):
        return None
    return server


class Client:
    """Calls the aicd server's API (paths relative to /api/v1); returns the decoded JSON."""

    def __init__(self, server: str | None, token: str | None, *, timeout: float = TIMEOUT_S) -> None:
        if not server:
            raise ConfigError("no aicd server given: pass --server URL or set AICD_SERVER")
        server = server.rstrip("/")
        if not server.startswith(("http://", "https://")):
            server = "http://" + server
        self.server = server
        if not (token and token.strip()):
            token = job_token_from_env()
        headers = {"Authorization": f"Bearer {token.strip()}"} if token and token.strip() else {}
        self._http = httpx.Client(base_url=server + API_PREFIX, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=json, params=params)

    def put(self, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("PUT", path, json=json, params=params)

    def patch(self, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("PATCH", path, json=json, params=params)

    def delete(self, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("DELETE", path, json=json, params=params)

    def request(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        response = self.raw(method, path, json=json, params=params)
        if not response.content:
            return None
        if "json" not in response.headers.get("content-type", ""):
            return response.text
        return response.json()

    def raw(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """The response itself (for text and file downloads), after the error check."""
        clean = {k: v for k, v in (params or {}).items() if v is not None} or None
        try:
            response = self._http.request(method, path, json=json, params=clean)
        except httpx.HTTPError as exc:
            raise AicdError(
                f"cannot reach the aicd server at {self.server}: {exc or type(exc).__name__}; "
                "is `aicd server` running?"
            ) from None
        check(response)
        return response

    def download(self, path: str, target: IO[bytes]) -> int:
        """Stream the body of GET `path` into `target` (after the error check); the bytes written."""
        written = 0
        try:
            with self._http.stream("GET", path, timeout=httpx.Timeout(TIMEOUT_S, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    check(response)
                for chunk in response.iter_bytes():
                    target.write(chunk)
                    written += len(chunk)
        except httpx.HTTPError as exc:
            raise AicdError(
                f"cannot reach the aicd server at {self.server}: {exc or type(exc).__name__}; "
                "is `aicd server` running?"
            ) from None
        return written


def segment(value: str | int) -> str:
    """A value as one URL path segment (a project name with a slash stays one segment)."""
    from urllib.parse import quote

    return quote(str(value), safe="")


def check(response: httpx.Response) -> None:
    """Raise the AicdError the response's status means, with the server's message."""
    if response.status_code < 400:
        return
    message = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            message = str(body.get("error") or body.get("detail") or "")
    except ValueError:
        message = response.text.strip()[:500]
    message = message or response.reason_phrase or f"HTTP {response.status_code}"
    cls = _ERRORS.get(response.status_code, AicdError)
    raise cls(f"server: {message}")
