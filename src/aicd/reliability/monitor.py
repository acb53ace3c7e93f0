"""Health monitoring: probe every environment's live service, open and close incidents.

Each environment is probed every `interval` (its `slo.probe_interval`, 5 s by default, or the
`--interval` given) by :func:`aicd.reliability.monitor_probe.observe`. Then:

- **down** (the probe failed): a `down` incident opens at that probe's time, unless one is open
  already (whoever opened it: a server's monitor and `aicd monitor` do not double it);
- **up** (2xx): every open `down` incident is resolved at that probe's time, with the resolution
  "recovered", or "rolled back (deployment #N)" when a deployment rolled back since it opened;
- **error rate**: the stable revision's request and error counters at the router, sampled at
  each good probe, give the error rate over the SLO's window. Above the objective with at least
  20 requests in the window opens an `slo` incident; at or under it (or no error at all in the
  window) resolves it. While the service is down the window starts over: the outage is the
  `down` incident's, it does not also count against the error rate afterwards;
- **idle** or **stopped** environments are not probed; open `down` and `slo` incidents are
  resolved ("environment stopped").
- **waiting**: nothing serves yet (a first deployment in progress), or the agent is busy
  (starting, stopping): no verdict.

Every incident opened or resolved is also an event (``incident.opened`` / ``incident.resolved``).
Each state change (up, down, slo, idle, stopped, waiting) is reported once to `on_change`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicd.deploy import control
from aicd.reliability.monitor_incidents import MONITOR_ACTOR, open_incident, resolve_incident
from aicd.reliability.monitor_probe import BUSY, DOWN, SKIPPED, Observation, observe, probe_timeout
from aicd.reliability.slo import ErrorRate, ErrorWindow, Slo

if TYPE_CHECKING:
    from aicd.store.db import Database
    from aicd.store.deployments import DeployStore, EnvironmentRecord, IncidentRecord

log = logging.getLogger("aicd.monitor")
LIST_EVERY = 1.0  # seconds between looks for new, changed and removed environments
ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class Change:
    """A state change of one environment (and the incident it opened or resolved, if any)."""

    at: float
    environment: str
    scope: str
    state: str  # up | down | slo | idle | stopped | waiting
    message: str
    action: str | None = None  # opened | resolved
    incidents: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "environment": self.environment,
            "scope": self.scope,
            "state": self.state,
            "message": self.message,
            "action": self.action,
            "incidents": list(self.incidents),
        }


@dataclass
class _Watch:
    """What the monitor remembers of one environment between probes."""

    state: str | None = None
    slo: Slo = field(default_factory=Slo)
    window: ErrorWindow = field(default_factory=lambda: ErrorWindow(Slo().window))
    next_due: float = 0.0  # time.monotonic()
    task: asyncio.Task[None] | None = None
    warned: set[str] = field(default_factory=set)


class Monitor:
    """Probes the environments of `scope` (None: of every scope), or only `environment`."""

    def __init__(
        self,
        store: DeployStore,
        *,
        home: Path,
        database_url: str,
        scope: str | None = "",
        environment: str | None = None,
        interval: float | None = None,
        on_change: Callable[[Change], None] | None = None,
        clock: Callable[[], float] = time.time,
        actor: str = MONITOR_ACTOR,
    ) -> None:
        self.store = store
        self.home = home
        self.database_url = database_url
        self.scope = scope
        self.environment = environment
        self.interval = interval
        self.on_change = on_change
        self.clock = clock
        self.actor = actor
        self._watches: dict[int, _Watch] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # a probe brought an earlier due time
        self._task: asyncio.Task[None] | None = None

    # -- which environments, and where their agents listen ---------------------------------------

    def targets(self) -> list[EnvironmentRecord]:
        envs = self.store.list_environments(scope=self.scope)
        if self.environment is not None:
            envs = [e for e in envs if e.name == self.environment]
        return envs

    def socket_of(self, env: EnvironmentRecord) -> Path:
        if env.state_dir:
            return control.socket_path(Path(env.state_dir))
        from aicd.deploy.client import Location, agent_socket

        return agent_socket(Location(self.home, self.database_url, env.scope), env.name)

    def interval_of(self, watch: _Watch) -> float:
        return self.interval if self.interval is not None else watch.slo.probe_interval

    # -- one probe -------------------------------------------------------------------------------

    async def check(self, env: EnvironmentRecord) -> list[Change]:
        """Probe `env` once, act on what was found; the changes (reported to on_change too)."""
        watch = self._watches.setdefault(env.id, _Watch())
        timeout = probe_timeout(self.interval_of(watch))
        found = await observe(env, self.socket_of(env), self.store, timeout=timeout, clock=self.clock)
        if found.slo is not None and found.slo != watch.slo:
            watch.slo = found.slo
            watch.window = ErrorWindow(found.slo.window)
        for warning in found.warnings:
            if warning not in watch.warned:
                watch.warned.add(warning)
                log.warning("%s", warning)
        changes = await asyncio.to_thread(self._act, found, watch)
        for change in changes:
            if self.on_change is not None:
                self.on_change(change)
        return changes

    async def check_all(self) -> list[Change]:
        """Probe every target once, at the same time (`aicd monitor --once`)."""
        envs = await asyncio.to_thread(self.targets)
        results = await asyncio.gather(*(self.check(env) for env in envs))
        return [change for changes in results for change in changes]

    def _act(self, found: Observation, watch: _Watch) -> list[Change]:
        """Open and resolve incidents for one observation (store calls: run in a thread)."""
        env = found.env
        if found.verdict == BUSY:
            return self._state(found, watch, "waiting", found.reason)
        open_now = self.store.open_incidents(env.id)
        down = [i for i in open_now if i.kind == "down"]
        slo = [i for i in open_now if i.kind == "slo"]
        if found.verdict == SKIPPED:
            watch.window.reset()
            resolved = self._resolve(found, down + slo, found.reason) if found.resting else []
            state = found.resting or "waiting"
            return self._state(found, watch, state, found.reason, resolved=resolved)
        if found.verdict == DOWN:
            watch.window.reset()
            opened = None
            if not down:
                opened = open_incident(
                    self.store,
                    env,
                    "down",
                    f"{env.name} is down: {found.reason}",
                    at=found.at,
                    cause=found.reason,
                    data={"url": found.url, "status": found.status_code},
                    actor=self.actor,
                )
            return self._state(found, watch, "down", f"down ({found.reason})", opened=opened)
        resolved = self._resolve(found, down, self._why_recovered(env, down)) if down else []
        rate = self._error_rate(found, watch)
        objective = (found.slo or watch.slo).error_objective
        if rate is not None and objective is not None and rate.rate is not None and rate.rate > objective:
            opened = None
            if not slo:
                opened = open_incident(
                    self.store,
                    env,
                    "slo",
                    f"{env.name}: error rate {rate.rate:.2%} over the last {found.at - rate.since:.0f}s "
                    f"is above its objective {objective:.2%}",
                    at=found.at,
                    cause=f"{rate.errors} errors in {rate.requests} requests of {found.stable}",
                    data={"requests": rate.requests, "errors": rate.errors, "objective": objective},
                    actor=self.actor,
                )
            text = f"error rate {rate.rate:.2%} ({rate.errors}/{rate.requests}) above {objective:.2%}"
            return self._state(found, watch, "slo", text, opened=opened, resolved=resolved)
        if slo and objective is None:
            resolved += self._resolve(found, slo, "no error-rate objective any more")
        elif slo and rate is not None and (rate.rate is not None or rate.errors == 0):
            resolved += self._resolve(found, slo, "error rate back within its objective")
        return self._state(found, watch, "up", f"up ({found.reason})", resolved=resolved)

    def _error_rate(self, found: Observation, watch: _Watch) -> ErrorRate | None:
        if found.traffic is None or found.stable is None:
            return None
        requests, errors = found.traffic
        return watch.window.add(found.at, found.stable, requests, errors)

    def _why_recovered(self, env: EnvironmentRecord, incidents: list[IncidentRecord]) -> str:
        since = min(i.opened_at for i in incidents)
        for dep in self.store.list_deployments(environment=env.name, scope=env.scope, limit=10):
            if dep.finished_at is None or dep.finished_at < since:
                continue
            if dep.status == ROLLED_BACK or (dep.strategy == "rollback" and dep.status == "succeeded"):
                return f"rolled back (deployment #{dep.number})"
        return "recovered"

    def _resolve(self, found: Observation, incidents: list[IncidentRecord], why: str) -> list[IncidentRecord]:
        from aicd.errors import ConflictError, NotFoundError

        done = []
        for incident in incidents:
            try:
                done.append(
                    resolve_incident(
                        self.store,
                        incident.id,
                        actor=self.actor,
                        scope=found.env.scope,
                        resolution=why,
                        at=found.at,
                    )
                )
            except (ConflictError, NotFoundError):  # another monitor (or a person) was first
                continue
        return done

    def _state(
        self,
        found: Observation,
        watch: _Watch,
        state: str,
        text: str,
        *,
        opened: IncidentRecord | None = None,
        resolved: list[IncidentRecord] | None = None,
    ) -> list[Change]:
        resolved = resolved or []
        if state == watch.state and opened is None and not resolved:
            return []
        watch.state = state
        message = text
        action = None
        incidents: list[IncidentRecord] = []
        if opened is not None:
            message += f"; incident #{opened.id} opened"
            action, incidents = "opened", [opened]
        for record in resolved:
            took = (record.resolved_at or found.at) - record.opened_at
            message += (
                f"; incident #{record.id} ({record.kind}) resolved after {took:.1f}s: {record.resolution}"
            )
        if resolved and opened is None:
            action, incidents = "resolved", resolved
        elif resolved:
            incidents += resolved
        env = found.env
        return [
            Change(
                at=found.at,
                environment=env.name,
                scope=env.scope,
                state=state,
                message=message,
                action=action,
                incidents=tuple(i.to_json() for i in incidents),
            )
        ]

    # -- the loop --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Probe every target at its interval until `stop` (or :meth:`stop`) is set."""
        stop = stop or self._stop
        next_list = 0.0
        envs: list[EnvironmentRecord] = []
        try:
            while not stop.is_set() and not self._stop.is_set():
                now = time.monotonic()
                if now >= next_list:
                    try:
                        envs = await asyncio.to_thread(self.targets)
                    except Exception:
                        log.exception("cannot list the environments to monitor")
                    next_list = now + min(LIST_EVERY, self.interval or LIST_EVERY)
                    self._forget({e.id for e in envs})
                for env in envs:
                    watch = self._watches.setdefault(env.id, _Watch())
                    if watch.next_due <= now and (watch.task is None or watch.task.done()):
                        watch.next_due = now + self.interval_of(watch)
                        watch.task = asyncio.create_task(
                            self._guarded(env, watch, now), name=f"aicd-monitor-{env.id}"
                        )
                # a probe still running (slower than its interval) wakes the loop when it ends
                dues = [w.next_due for w in self._watches.values() if w.task is None or w.task.done()]
                wake = min([next_list, *dues]) - time.monotonic()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_any(stop, self._stop, self._wake), max(0.005, wake))
        finally:
            tasks = [w.task for w in self._watches.values() if w.task is not None and not w.task.done()]
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _guarded(self, env: EnvironmentRecord, watch: _Watch, started: float) -> None:
        try:
            await self.check(env)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("monitoring environment %s (scope %r) failed", env.name, env.scope)
        # The first answer may bring the environment's own probe_interval: keep to it from now.
        watch.next_due = min(watch.next_due, started + self.interval_of(watch))
        self._wake.set()

    def _forget(self, alive: set[int]) -> None:
        for env_id in set(self._watches) - alive:
            watch = self._watches.pop(env_id)
            if watch.task is not None:
                watch.task.cancel()

    # -- as a background service (aicd server) ---------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self.run(), name="aicd-monitor")

    async def stop(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)


async def _any(*events: asyncio.Event) -> None:
    """Return when one of the events is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in set(events)]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()


def log_change(change: Change) -> None:
    """The server's `on_change`: failures as warnings, the rest as information."""
    where = f"{change.scope}/{change.environment}" if change.scope else change.environment
    level = logging.WARNING if change.state in ("down", "slo") else logging.INFO
    log.log(level, "%s: %s", where, change.message)


def server_monitor(database: Database, *, home: Path, database_url: str) -> Monitor:
    """The monitor `aicd server` runs: every environment of every scope, logging its changes."""
    from aicd.store.deployments import DeployStore

    return Monitor(
        DeployStore(database), home=home, database_url=database_url, scope=None, on_change=log_change
    )


__all__ = ["Change", "Monitor", "log_change", "server_monitor"]
