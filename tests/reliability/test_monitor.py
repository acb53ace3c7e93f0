"""The monitor's rules, probe by probe: real HTTP probes against a real tiny server, a real SQLite
store, and an agent's control socket answering `status` as the environment agent does.

The clock the monitor stamps incidents with is the test's (so opened_at and resolved_at are
exact); the probes themselves are real requests on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.deploy import control
from aicd.reliability.monitor import Change, Monitor
from aicd.store.deployments import DeployStore, EnvironmentRecord, open_deploy_store

Json = dict[str, Any]


class Clock:
    """Wall-clock time that moves only when the test says."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class Health:
    """A tiny HTTP server: GET answers `status`; `hang` never answers."""

    status: int = 200
    hang: bool = False
    hits: int = 0
    server: asyncio.Server | None = None
    port: int = 0

    async def start(self) -> Health:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            self.hits += 1
            if self.hang:
                await asyncio.sleep(30)
            writer.write(
                f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        writer.close()


@dataclass
class Agent:
    """Answers {"op": "status"} on the environment's control socket the way the agent does."""

    url: str
    stable: str = "r1"
    status: str = "healthy"
    slo: Json | None = None
    requests: int = 0
    errors: int = 0
    server: asyncio.AbstractServer | None = None

    async def handle(self, request: Json, _emit: Any) -> Json:
        assert request["op"] == "status"
        return {
            "status": self.status,
            "url": self.url,
            "health_path": "/healthz",
            "slo": self.slo,
            "environment": {"stable_revision": self.stable},
            "revisions": [{"revision": self.stable, "requests": self.requests, "errors": self.errors}],
        }


@dataclass
class World:
    store: DeployStore
    env: EnvironmentRecord
    health: Health
    agent: Agent
    clock: Clock
    home: Path
    changes: list[Change] = field(default_factory=list)

    def monitor(self, **kwargs: Any) -> Monitor:
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("interval", 1.0)
        return Monitor(
            self.store, home=self.home, database_url="unused", on_change=self.changes.append, **kwargs
        )

    def incidents(self, kind: str | None = None) -> list[Any]:
        return [i for i in self.store.list_incidents(environment="prod") if kind is None or i.kind == kind]

    def events(self) -> list[tuple[str, str]]:
        return [
            (e.kind, e.message)
            for e in self.store.list_events(environment="prod")
            if e.kind.startswith("incident")
        ]


def run(tmp_path: Path, test: Callable[[World], Awaitable[None]], *, agent: bool = True) -> None:
    async def main() -> None:
        async with world(tmp_path, agent=agent) as w:
            await test(w)

    asyncio.run(main())


@contextlib.asynccontextmanager
async def world(tmp_path: Path, *, agent: bool) -> AsyncIterator[World]:
    store = open_deploy_store(f"sqlite:///{tmp_path / 'aicd.db'}")
    health = await Health().start()
    state_dir = tmp_path / "env"
    state_dir.mkdir()
    url = f"http://127.0.0.1:{health.port}"
    env = store.ensure_environment("prod")
    env = store.update_environment(
        env.id, status="healthy", url=url, stable_revision="r1", state_dir=str(state_dir)
    )
    fake = Agent(url)
    if agent:
        fake.server = await control.serve(control.socket_path(state_dir), fake.handle)
    try:
        yield World(store, env, health, fake, Clock(), tmp_path)
    finally:
        if fake.server is not None:
            fake.server.close()
        await health.stop()
        store.close()


def test_down_opens_one_incident_at_the_failed_probe_and_up_resolves_it(tmp_path: Path) -> None:
    async def test(w: World) -> None:
        monitor = w.monitor()
        (first,) = await monitor.check(w.env)
        assert first.state == "up" and "HTTP 200" in first.message and w.health.hits == 1

        w.health.status = 503
        failed_at = w.clock.tick(5)
        (down,) = await monitor.check(w.env)
        assert down.state == "down" and down.action == "opened" and "HTTP 503" in down.message
        (incident,) = w.incidents()
        assert (incident.kind, incident.opened_at, incident.resolved_at) == ("down", failed_at, None)
        assert incident.opened_by == "monitor" and incident.cause == "HTTP 503"

        w.clock.tick(1)
        assert await monitor.check(w.env) == []  # still down: no new line, no second incident
        assert len(w.incidents()) == 1

        w.health.status = 204  # any 2xx is up
        back_at = w.clock.tick(2)
        (up,) = await monitor.check(w.env)
        assert up.state == "up" and up.action == "resolved" and "resolved after 3.0s: recovered" in up.message
        (incident,) = w.incidents()
        assert (incident.resolved_at, incident.resolution, incident.resolved_by) == (
            back_at,
            "recovered",
            "monitor",
        )
        kinds = [kind for kind, _ in w.events()]
        assert kinds == ["incident.opened", "incident.resolved"]
        assert w.health.hits == 4

    run(tmp_path, test)


def test_refused_and_timed_out_probes_are_down(tmp_path: Path) -> None:
    async def test(w: World) -> None:
        monitor = w.monitor(interval=0.3)
        w.health.hang = True
        started = time.monotonic()
        (down,) = await monitor.check(w.env)
        took = time.monotonic() - started
        assert down.state == "down" and "no answer within 0.3s" in down.message
        # the timeout is min(2 s, interval): the message names it; a wall-clock upper bound would
        # race a loaded machine, so only the lower one is asserted
        assert took >= 0.3
        w.health.hang = False
        await w.health.stop()
        w.clock.tick(1)
        assert await monitor.check(w.env) == []  # refused now: still the same incident
        assert len(w.incidents("down")) == 1
        w.health.port = int(w.agent.url.rsplit(":", 1)[1])
        await w.health.start()
        (up,) = await monitor.check(w.env)
        assert up.action == "resolved"

    run(tmp_path, test)


def test_two_monitors_open_one_incident_and_both_see_it_resolved(tmp_path: Path) -> None:
    async def test(w: World) -> None:
        server_side, standalone = w.monitor(), w.monitor()
        w.health.status = 500
        await asyncio.gather(server_side.check(w.env), standalone.check(w.env))
        w.clock.tick(1)
        await asyncio.gather(server_side.check(w.env), standalone.check(w.env))
        assert len(w.incidents("down")) == 1
        w.health.status = 200
        w.clock.tick(1)
        await server_side.check(w.env)
        resolved_first = w.incidents("down")[0].resolved_at
        (later,) = await standalone.check(w.env)  # nothing left to resolve: just "up"
        assert later.state == "up" and later.action is None
        assert w.incidents("down")[0].resolved_at == resolved_first

    run(tmp_path, test)


def test_a_rollback_in_between_is_the_resolution(tmp_path: Path) -> None:
    async def test(w: World) -> None:
        monitor = w.monitor()
        w.health.status = 502
        w.clock.now = time.time() - 1
        await monitor.check(w.env)
        deployment = w.store.begin_deployment(w.env.id, revision="r2", strategy="canary", actor="t")
        w.store.set_deployment(deployment.id, status="rolled_back", finished=True)
        w.health.status = 200
        w.clock.now = time.time()
        (up,) = await monitor.check(w.env)
        assert "rolled back (deployment #1)" in up.message
        assert w.incidents("down")[0].resolution == "rolled back (deployment #1)"

    run(tmp_path, test)


def test_error_rate_above_the_objective_opens_an_slo_incident_and_closes_when_back(tmp_path: Path) -> None:
    async def test(w: World) -> None:
        w.agent.slo = {"error_rate": "5%", "window": "10s", "probe_interval": "1s"}
        monitor = w.monitor(interval=None)
        w.agent.requests, w.agent.errors = 100, 0
        await monitor.check(w.env)  # the window's first sample
        w.clock.tick(1)
        w.agent.requests, w.agent.errors = 110, 5  # 5 of 10: 50 %, but only 10 requests
        assert [c.state for c in await monitor.check(w.env)] == []
        assert w.incidents() == []
        w.clock.tick(1)
        w.agent.requests, w.agent.errors = 150, 10  # since the first sample: 10 of 50 = 20 % > 5 %
        (breach,) = await monitor.check(w.env)
        assert breach.state == "slo" and breach.action == "opened"
        assert "error rate 20.00% (10/50) above 5.00%" in breach.message
        (incident,) = w.incidents()
        assert incident.kind == "slo" and incident.data == {"requests": 50, "errors": 10, "objective": 0.05}
        w.clock.tick(1)
        w.agent.requests = 170  # 10 of 70 = 14 %: still out, no second incident
        assert await monitor.check(w.env) == []
        w.clock.tick(10)
        w.agent.requests = 1000  # the window (10 s) now starts at the sample of 150/10: 0 errors
        (back,) = await monitor.check(w.env)
        assert back.state == "up" and "error rate back within its objective" in back.message
        assert w.incidents()[0].resolved_at == w.clock.now

    run(tmp_path, test)


def test_errors_while_down_belong_to_the_down_incident_not_the_slo(tmp_path: Path) -> None:
    async def test(w: World) -> None:
        w.agent.slo = {"availability": "99%"}  # error objective 1 %
        monitor = w.monitor()
        w.agent.requests = 1000
        await monitor.check(w.env)
        w.health.status = 503
        w.clock.tick(1)
        w.agent.requests, w.agent.errors = 1100, 100  # the outage's failed requests
        await monitor.check(w.env)
        w.health.status = 200
        w.clock.tick(1)
        await monitor.check(w.env)
        w.clock.tick(1)
        w.agent.requests = 1200  # after recovery: 100 requests, no error
        await monitor.check(w.env)
        assert [i.kind for i in w.incidents()] == ["down"]

    run(tmp_path, test)


def test_a_stopped_environment_is_not_probed_and_its_incidents_close(tmp_path: Path) -> None:
    async def test(w: World) -> None:
        monitor = w.monitor()
        w.health.status = 503
        await monitor.check(w.env)
        hits = w.health.hits
        w.agent.status = "stopped"
        w.clock.tick(2)
        (stopped,) = await monitor.check(w.env)
        assert stopped.state == "stopped" and "resolved after 2.0s: environment stopped" in stopped.message
        assert w.health.hits == hits  # not probed
        idle = w.store.update_environment(w.env.id, status="idle")
        (rested,) = await monitor.check(idle)  # idle: still nothing to probe, nothing to resolve
        assert (rested.state, rested.action) == ("idle", None)
        assert await monitor.check(idle) == []  # no change: no line

    run(tmp_path, test)


def test_without_its_agent_the_address_is_probed_and_a_live_agent_is_waited_for(tmp_path: Path) -> None:
    async def test(w: World) -> None:
        monitor = w.monitor()
        await w.health.stop()  # the router lived in the agent: nothing answers
        (down,) = await monitor.check(w.env)
        assert down.state == "down" and "its agent is not running (connection refused)" in down.message
        # An agent process that is still there (starting, or stopping) but not answering: wait.
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "aicd.deploy.agent"])
        try:
            # Popen returns once exec has begun; the kernel fills /proc/PID/cmdline a moment later
            # (an empty command line was read once on a loaded CI machine).
            cmdline = Path(f"/proc/{sleeper.pid}/cmdline")
            for _ in range(500):
                if b"aicd.deploy.agent" in cmdline.read_bytes():
                    break
                await asyncio.sleep(0.01)
            busy = w.store.update_environment(w.env.id, agent_pid=sleeper.pid)
            (waiting,) = await monitor.check(busy)
            assert waiting.state == "waiting" and "busy" in waiting.message
        finally:
            sleeper.kill()
            sleeper.wait()
        assert len(w.incidents("down")) == 1 and w.incidents("down")[0].resolved_at is None

    run(tmp_path, test, agent=False)


def test_the_loop_opens_within_two_intervals_and_closes_on_recovery(tmp_path: Path) -> None:
    interval = 0.2

    async def test(w: World) -> None:
        monitor = w.monitor(interval=interval, clock=time.time)
        task = asyncio.create_task(monitor.run())
        try:
            await until(lambda: bool(w.changes))
            w.health.status = 503
            broke_at = time.time()
            await until(lambda: bool(w.incidents("down")))
            opened = w.incidents("down")[0].opened_at
            assert 0 <= opened - broke_at <= 2 * interval, opened - broke_at
            w.health.status = 200
            await until(lambda: len(w.changes) == 3)
        finally:
            await monitor.stop()
            await task
        assert [c.state for c in w.changes] == ["up", "down", "up"]
        assert w.incidents("down")[0].resolved_at == w.changes[2].at
        assert w.health.hits >= 3

    run(tmp_path, test)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_without_interval_each_environment_is_probed_at_its_own_slo_interval(tmp_path: Path) -> None:
    async def test(w: World) -> None:
        w.agent.slo = {"probe_interval": "100ms"}
        monitor = w.monitor(interval=None, clock=time.time)
        task = asyncio.create_task(monitor.run())
        try:
            await until(lambda: w.health.hits >= 1)
            first = time.monotonic()
            await until(lambda: w.health.hits >= 8)
            took = time.monotonic() - first
        finally:
            await monitor.stop()
            await task
        assert took < 15.0  # 7 more probes at 0.1 s (0.7 s), not at the default 5 s (35 s): a margin for load

    run(tmp_path, test)
