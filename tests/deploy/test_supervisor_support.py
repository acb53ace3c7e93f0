"""Helpers for the supervisor tests (no tests here): a small real HTTP service, event recording.

The service (stdlib http.server, starts in ~50 ms) is driven by environment variables:
    PORT                 the port (set by the supervisor)
    HEALTH_DELAY=s       /healthz answers 503 until s seconds after start
    NEVER_HEALTHY=1      /healthz always answers 503
    SICK_FILE=path       /healthz answers 503 while this file exists
    COUNT_FILE=path      counts the starts (one line per start: the pid)
    CRASH_FIRST=n        the first n starts exit with code 3, CRASH_DELAY s after their first 200 on /healthz
    IGNORE_TERM=1        ignore SIGTERM
    CHILD_PID_FILE=path  start a `sleep 300` child (same process group) and write its pid there
GET / answers "pid=<pid> start=<n> cwd=<cwd> greeting=<$GREETING>".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aicd.deploy.spec import ServiceSpec
from aicd.deploy.supervisor.proc import start_time_of
from aicd.deploy.supervisor.supervisor import InstanceEvent, InstanceState, Supervisor

T = TypeVar("T")

SERVICE = r"""
import http.server, os, signal, socketserver, subprocess, sys, threading, time

started = time.monotonic()
port = int(os.environ["PORT"])
start_no = 0
count_file = os.environ.get("COUNT_FILE")
if count_file:
    with open(count_file, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    with open(count_file) as fh:
        start_no = len(fh.read().split())
crash_first = int(os.environ.get("CRASH_FIRST", "0"))
crash_delay = float(os.environ.get("CRASH_DELAY", "0.05"))
health_delay = float(os.environ.get("HEALTH_DELAY", "0"))
sick_file = os.environ.get("SICK_FILE", "")
crashing = []
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.environ.get("CHILD_PID_FILE"):
    child = subprocess.Popen(["sleep", "300"])
    with open(os.environ["CHILD_PID_FILE"], "w") as fh:
        fh.write(str(child.pid))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200
        if self.path == "/healthz":
            healthy = (
                not os.environ.get("NEVER_HEALTHY")
                and time.monotonic() - started >= health_delay
                and not (sick_file and os.path.exists(sick_file))
            )
            code = 200 if healthy else 503
        body = (
            f"pid={os.getpid()} start={start_no} cwd={os.getcwd()} "
            f"greeting={os.environ.get('GREETING', '')}\n"
        ).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if code == 200 and self.path == "/healthz" and start_no <= crash_first and not crashing:
            crashing.append(1)
            threading.Timer(crash_delay, lambda: os._exit(3)).start()

    def log_message(self, fmt, *args):
        sys.stderr.write("request " + (fmt % args) + "\n")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", port), Handler)
print(f"listening on 127.0.0.1:{port} pid {os.getpid()}", flush=True)
server.serve_forever()
"""


def write_service(release: Path) -> Path:
    release.mkdir(parents=True, exist_ok=True)
    (release / "service.py").write_text(SERVICE)
    return release


def service_spec(**overrides: Any) -> ServiceSpec:
    values: dict[str, Any] = {
        "command": (sys.executable, "service.py"),
        "readiness_timeout": 10.0,
        "stop_grace": 2.0,
        "liveness_interval": 0.2,
    }
    values.update(overrides)
    return ServiceSpec(**values)


@contextlib.asynccontextmanager
async def supervising(state_dir: Path, **kwargs: Any) -> AsyncIterator[Supervisor]:
    """A Supervisor that is shut down (its processes stopped) even when the test fails."""
    kwargs.setdefault("base_env", base_env())
    sup = Supervisor(state_dir, **kwargs)
    try:
        yield sup
    finally:
        if not sup.closed:
            await sup.shutdown()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def alive(pid: int) -> bool:
    """Running (a zombie does not count)."""
    return start_time_of(pid) is not None


def wait_gone(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


class Events:
    """Records the supervisor's events with the monotonic time they came."""

    def __init__(self) -> None:
        self.items: list[tuple[float, InstanceEvent]] = []

    def __call__(self, event: InstanceEvent) -> None:
        self.items.append((time.monotonic(), event))

    def states(self, index: int | None = None) -> list[InstanceState]:
        return [e.state for _, e in self.items if index is None or e.index == index]

    def of(self, state: InstanceState) -> list[tuple[float, InstanceEvent]]:
        return [(t, e) for t, e in self.items if e.state is state]

    async def wait(self, state: InstanceState, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.of(state)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} x {state} within {timeout}s; events: {self.describe()}")
            await asyncio.sleep(0.01)

    def describe(self) -> str:
        return "; ".join(f"{e.revision}.{e.index} {e.state}: {e.reason}" for _, e in self.items)


def service_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {"COUNT_FILE": str(tmp / "starts")}
    env.update(extra)
    return env


def starts(tmp: Path) -> list[int]:
    path = tmp / "starts"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def kill_leftovers(tmp: Path) -> None:
    """After a failed test: end the process groups of the service instances it started."""
    for pid in starts(tmp):
        if alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AICD_", "CI_"))}
