"""A worker's client of the server's API: the runner's claim, then the attempt's own routes.

Every call names the server without credentials in its errors. `Drop`: the server
will never want this message run (the attempt was taken, ended or given up);
`Requeue`: not now (the runner is paused, the server cannot be reached); `Gone`:
the attempt was given up while it ran (its lease expired, the server restarted),
so the worker stops it and sends nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from aicd.errors import AicdError, AuthError
from aicd.triggers.mirror import redact

TIMEOUT_S = 30.0


class Drop(AicdError):
    """The message's attempt is not to be run (taken, ended or given up): acknowledge and forget it."""


class Requeue(AicdError):
    """Not now: put the message back."""


class Gone(AicdError):
    """The attempt was given up on the server: stop it, report nothing."""


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return f"HTTP {response.status_code}"


class WorkerApi:
    """The server's API with the runner's token (claims) and with one attempt's job token.

    One HTTP client for the worker process (kept-alive connections, made once: an httpx
    client costs tens of ms to make), used from the worker's one event loop; each request
    names its own token.
    """

    def __init__(self, server: str, runner_token: str) -> None:
        self.server = server.rstrip("/")
        self.shown = redact(self.server)
        self.runner_token = runner_token
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=f"{self.server}/api/v1",
                timeout=TIMEOUT_S,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def claim(self, job_id: int) -> dict[str, Any]:
        try:
            response = await self.http.post(
                f"/runners/jobs/{job_id}/claim", headers={"RUNNER-TOKEN": self.runner_token}
            )
        except httpx.HTTPError as exc:
            raise Requeue(f"cannot reach the aicd server at {self.shown}: {type(exc).__name__}") from None
        if response.status_code in (404, 409):
            raise Drop(_message(response))
        if response.status_code == 401:
            raise AuthError(_message(response))
        if response.status_code != 200:
            raise Requeue(_message(response))
        answer: dict[str, Any] = response.json()
        return answer


class JobApi:
    """One attempt's routes, with its CI_JOB_TOKEN."""

    def __init__(self, api: WorkerApi, token: str) -> None:
        self.shown = api.shown
        self.http = api.http
        self.headers = {"JOB-TOKEN": token}

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code in (401, 409):
            raise Gone(f"{what}: {_message(response)}")
        if response.status_code >= 400:
            raise AicdError(f"{what}: {_message(response)}")

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            headers = {**self.headers, **kwargs.pop("headers", {})}
            response = await self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise AicdError(
                f"{what}: cannot reach the aicd server at {self.shown} ({type(exc).__name__})"
            ) from None
        self._check(response, what)
        return response

    async def download(self, path: str, dest: Path, what: str) -> None:
        """GET `path` into the file `dest`."""
        try:
            async with self.http.stream("GET", path, headers=self.headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._check(response, what)
                with open(dest, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise AicdError(
                f"{what}: cannot reach the aicd server at {self.shown} ({type(exc).__name__})"
            ) from None

    async def heartbeat(self, wait_s: float) -> str:
        response = await self._call(
            "POST", "/job/heartbeat", "heartbeat", json={"wait_s": wait_s}, timeout=wait_s + TIMEOUT_S
        )
        return str(response.json().get("status", "running"))

    async def log(self, offset: int, data: bytes) -> int:
        response = await self._call("POST", "/job/log", "log", params={"offset": offset}, content=data)
        return int(response.json()["size"])

    async def upload(self, archive: Path) -> None:
        with open(archive, "rb") as data:
            await self._call(
                "PUT",
                "/job/artifacts",
                "artifacts upload",
                content=data.read(),
                headers={"Content-Type": "application/gzip"},
                timeout=600.0,
            )

    async def result(self, body: dict[str, Any]) -> None:
        await self._call("POST", "/job/result", "result", json=body)
