"""One look at one environment: ask its agent, then GET its address's health path.

The probe goes through the environment's router (`env.url` + the stable revision's
`health_path`): the address users hit, so a dead router is as down as a dead service.
Up means a 2xx answer within the timeout; anything else (refused, timed out, 5xx from the
router because no instance answers) is down.

When the agent does not answer its control socket:
- its process is alive (it is starting, or stopping after `aicd env stop`): ``busy``, no verdict;
- it is gone while the environment's status says it serves: the address is probed all the
  same (the router lived in the agent, so it normally does not answer: down).
Environments that are idle (nothing deployed yet) or stopped are not probed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from aicd.deploy import control
from aicd.deploy.health import probe
from aicd.errors import ConfigError
from aicd.reliability.slo import Slo, parse_slo

if TYPE_CHECKING:
    from aicd.store.deployments import DeployStore, EnvironmentRecord

NOT_SERVING = ("idle", "stopped")  # environment statuses the monitor leaves alone
STATUS_TIMEOUT = 3.0  # seconds for the agent's answer to {"op": "status"}
MAX_PROBE_TIMEOUT = 2.0
AGENT_MODULE = b"aicd.deploy.agent"

UP, DOWN, SKIPPED, BUSY = "up", "down", "skipped", "busy"


@dataclass(frozen=True)
class Observation:
    """What one probe of one environment found."""

    env: EnvironmentRecord
    at: float  # wall-clock time the probe was sent (an incident opens or closes at it)
    verdict: str  # up | down | skipped | busy
    reason: str  # in words: "HTTP 200 in 3 ms", "connection refused", "environment stopped"
    url: str | None = None  # what was probed
    status_code: int | None = None
    elapsed_s: float | None = None
    resting: str | None = None  # skipped because the environment is "idle" or "stopped"
    slo: Slo | None = None  # from the agent (None: it did not answer)
    stable: str | None = None
    traffic: tuple[int, int] | None = None  # the stable revision's (requests, errors) at the router
    warnings: tuple[str, ...] = field(default=())


def probe_timeout(interval: float) -> float:
    return min(MAX_PROBE_TIMEOUT, interval)


async def agent_status(socket: Path, timeout: float = STATUS_TIMEOUT) -> dict[str, Any] | None:
    """The agent's answer to {"op": "status"}; None when it does not answer."""
    if not socket.exists():
        return None
    try:
        async with asyncio.timeout(timeout):
            # an async generator: closed at once when left early (its connection with it)
            lines = cast(AsyncGenerator[dict[str, Any], None], control.arequest(socket, {"op": "status"}))
            async with contextlib.aclosing(lines):
                async for message in lines:
                    if "event" in message:
                        continue
                    result = message.get("result") if message.get("ok") else None
                    return result if isinstance(result, dict) else None
    except (OSError, TimeoutError, ValueError):
        return None
    return None


def agent_alive(pid: int | None) -> bool:
    """An environment agent runs with this pid (not another process that reused it)."""
    if not pid or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return AGENT_MODULE in cmdline


async def observe(
    env: EnvironmentRecord,
    socket: Path,
    store: DeployStore,
    *,
    timeout: float,
    clock: Callable[[], float] = time.time,
) -> Observation:
    """Probe `env` once (see the module's docstring for the rules)."""
    if env.status in NOT_SERVING:
        return Observation(env, clock(), SKIPPED, f"environment {env.status}", resting=env.status)
    status = await agent_status(socket)
    if status is None:
        return await _without_agent(env, store, timeout=timeout, clock=clock)
    live = str(status.get("status") or "")
    if live in NOT_SERVING:
        return Observation(env, clock(), SKIPPED, f"environment {live}", resting=live)
    slo, warnings = _slo_of(env, status.get("slo"))
    stable = (status.get("environment") or {}).get("stable_revision")
    health_path = status.get("health_path")
    url = status.get("url") or env.url
    if not stable or not isinstance(health_path, str) or not url:
        return Observation(env, clock(), SKIPPED, "no stable revision serves yet", slo=slo, warnings=warnings)
    traffic = None
    for revision in status.get("revisions") or []:
        if revision.get("revision") == stable:
            traffic = (int(revision.get("requests") or 0), int(revision.get("errors") or 0))
    found = await _probe(env, url, health_path, timeout, clock)
    return Observation(
        env,
        found.at,
        found.verdict,
        found.reason,
        url=found.url,
        status_code=found.status_code,
        elapsed_s=found.elapsed_s,
        slo=slo,
        stable=stable,
        traffic=traffic,
        warnings=warnings,
    )


async def _without_agent(
    env: EnvironmentRecord, store: DeployStore, *, timeout: float, clock: Callable[[], float]
) -> Observation:
    fresh = await asyncio.to_thread(store.find_environment, env.name, scope=env.scope)
    env = fresh or env
    if env.status in NOT_SERVING:
        return Observation(env, clock(), SKIPPED, f"environment {env.status}", resting=env.status)
    if agent_alive(env.agent_pid):
        return Observation(env, clock(), BUSY, "its agent is busy (starting or stopping)")
    if not env.url or not env.stable_revision:
        return Observation(env, clock(), SKIPPED, "no stable revision serves yet")
    stable = env.stable_revision
    health_path = "/healthz"
    with contextlib.suppress(Exception):
        spec = (await asyncio.to_thread(store.get_revision, env.id, stable)).spec
        health_path = str(spec.get("health_path") or health_path)
    found = await _probe(env, env.url, health_path, timeout, clock)
    if found.verdict == DOWN:
        reason = f"its agent is not running ({found.reason}); `aicd env start {env.name}` brings it back"
        return Observation(env, found.at, DOWN, reason, url=found.url, stable=stable)
    return Observation(
        env,
        found.at,
        found.verdict,
        found.reason,
        url=found.url,
        status_code=found.status_code,
        stable=stable,
    )


async def _probe(
    env: EnvironmentRecord, url: str, path: str, timeout: float, clock: Callable[[], float]
) -> Observation:
    parts = urlsplit(url)
    target = url.rstrip("/") + path
    at = clock()
    if not parts.hostname or not parts.port:
        return Observation(env, at, DOWN, f"the environment's address {url!r} is not host:port", url=target)
    result = await probe(parts.hostname, parts.port, path, timeout)
    if result.status is not None and 200 <= result.status < 300:
        shown = f"HTTP {result.status} in {result.elapsed * 1000:.0f} ms"
        return Observation(
            env, at, UP, shown, url=target, status_code=result.status, elapsed_s=result.elapsed
        )
    return Observation(
        env, at, DOWN, result.error, url=target, status_code=result.status, elapsed_s=result.elapsed
    )


def _slo_of(env: EnvironmentRecord, raw: Any) -> tuple[Slo, tuple[str, ...]]:
    try:
        return parse_slo(raw, f"environments.{env.name}.slo"), ()
    except ConfigError as exc:  # deployed before aicd.yml was checked this strictly
        return Slo(), (f"{exc}; only the health check applies",)


__all__ = [
    "BUSY",
    "DOWN",
    "SKIPPED",
    "UP",
    "Observation",
    "agent_alive",
    "agent_status",
    "observe",
    "probe_timeout",
]
