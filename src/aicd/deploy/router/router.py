"""The environment's stable address: a weighted HTTP/1.1 reverse proxy, controlled from Python.

    router = Router("127.0.0.1", 8000, field_count=FieldCount("/predict", "predictions"))
    await router.start()                              # in the caller's event loop
    router.set_backends({"r1": [("127.0.0.1", 9001)]}, weights={"r1": 100})
    router.set_backends({"r1": [...], "r2": [("127.0.0.1", 9002)]}, weights={"r1": 90, "r2": 10})
    router.snapshot()                                 # plain dict of per-revision metrics
    router.set_backends({"r2": [("127.0.0.1", 9002)]}, weights={"r2": 100})
    await router.wait_drained("r1", timeout=30)       # r1's in-flight requests are done
    await router.stop()

A change of backends or weights is one assignment of a new table: every request is routed by
either the old table or the new one. A request keeps the backend it started on until its answer is
complete, so a removed revision drains: its in-flight requests finish there, new ones go elsewhere,
and its connections close as they come free. The common request is served by the native data
plane where it was built (``native``: a C thread; Python stays the control plane), everything else
by the Python path. See ``router_proxy`` for the Python data path and retries,
``router_table`` for the weighted choice, ``router_metrics`` for what is recorded.

Run by hand: ``python -m aicd.deploy.router --listen 127.0.0.1:8000 --backend r1=127.0.0.1:9001``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aicd.deploy.router.backend import BackendConnection
from aicd.deploy.router.experiment import Experiment
from aicd.deploy.router.http import MAX_HEAD_BYTES, MAX_HEADERS, MAX_URL_BYTES, check_limits
from aicd.deploy.router.metrics import FieldCount, RouterMetrics
from aicd.deploy.router.mirror import IDEMPOTENT, QUEUE_SIZE, Mirror
from aicd.deploy.router.native import NativePlane, listens_natively
from aicd.deploy.router.native import wanted as native_wanted
from aicd.deploy.router.proxy import TICK, ClientConnection, ProxyCore, Settings
from aicd.deploy.router.table import Backend, RouteTable, build_table, check_weights
from aicd.errors import ConfigError

__all__ = ["FieldCount", "Router"]

SWEEP_INTERVAL = 0.5  # seconds between closing idle client and backend connections


class Router:
    """A weighted reverse proxy listening on ``listen_host:listen_port`` (port 0: any free port)."""

    def __init__(
        self,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        *,
        connect_timeout: float = 3.0,
        response_timeout: float = 30.0,
        client_idle_timeout: float = 75.0,
        pool_idle_timeout: float = 1.0,
        max_attempts: int = 3,
        sticky_header: str | None = None,
        field_count: FieldCount | None = None,
        reservoir_size: int = 5000,
        max_head_bytes: int = MAX_HEAD_BYTES,
        max_headers: int = MAX_HEADERS,
        max_url_bytes: int = MAX_URL_BYTES,
        request_ids: bool = True,
        feedback_window: float | None = None,
        feedback_max_requests: int | None = None,
    ) -> None:
        if not 0 <= listen_port < 65536:
            raise ConfigError(f"router: listen port {listen_port} is not in 0-65535")
        if max_attempts < 1:
            raise ConfigError("router: max_attempts must be at least 1")
        check_limits(
            {"max_head_bytes": max_head_bytes, "max_headers": max_headers, "max_url_bytes": max_url_bytes}
        )
        self.listen_host = listen_host
        self.listen_port = listen_port
        settings = Settings(
            connect_timeout=connect_timeout,
            response_timeout=response_timeout,
            client_idle_timeout=client_idle_timeout,
            pool_idle_timeout=pool_idle_timeout,
            max_attempts=max_attempts,
            sticky_header=sticky_header.lower().encode("latin-1") if sticky_header else None,
            max_head_bytes=max_head_bytes,
            max_headers=max_headers,
            max_url_bytes=max_url_bytes,
            request_ids=request_ids,
        )
        metrics = RouterMetrics(
            reservoir_size,
            field_count,
            feedback_window=feedback_window,
            feedback_max_requests=feedback_max_requests,
        )
        self._core = ProxyCore(settings, metrics)
        self._server: asyncio.Server | None = None
        self._plane: NativePlane | None = None  # the native data plane (see .native), when used
        self._sweeper: asyncio.Task[None] | None = None
        self._draining: set[Backend] = set()

    # -- life -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; requests are served by the running event loop from now on."""
        if self._server is not None or self._plane is not None:
            raise ConfigError("router: already started")
        loop = asyncio.get_running_loop()
        core = self._core
        core.loop = loop
        core.stopping = False
        try:
            if native_wanted() and listens_natively(self.listen_host):
                plane = NativePlane(core, self.listen_host, self.listen_port)
                self.listen_port = plane.port
                self._plane = plane
                plane.set_table(core.table)
                plane.start()
            else:
                self._server = await loop.create_server(
                    lambda: ClientConnection(core), self.listen_host, self.listen_port, backlog=1024
                )
                self.listen_port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            raise ConfigError(
                f"router: cannot listen on {self.listen_host}:{self.listen_port}: {exc.strerror or exc}"
            ) from None
        self._sweeper = loop.create_task(self._sweep())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening, let requests in progress finish (up to ``grace`` s), close everything."""
        server, self._server = self._server, None
        plane, self._plane = self._plane, None
        if server is None and plane is None:
            return
        core = self._core
        core.stopping = True
        await self.stop_mirror()
        if server is not None:
            server.close()
        plane_stopped = None if plane is None else asyncio.ensure_future(plane.stop(grace))
        for client in list(core.clients):
            if client.active is None and not client.queue:
                client.close()
        deadline = time.monotonic() + grace
        while any(c.active is not None for c in core.clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if plane_stopped is not None:
            await plane_stopped
        for client in list(core.clients):
            if client.transport is not None:
                client.transport.abort()
        for task in list(core.tasks):
            task.cancel()
        for backend in [*core.table.all_backends(), *self._draining]:
            for conn in list(backend.idle):
                conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port listened on (the real one once started with port 0)."""
        return self.listen_port

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.listen_port}"

    # -- routing --------------------------------------------------------------------------------

    def set_backends(
        self, backends: Mapping[str, Sequence[tuple[str, int]]], weights: Mapping[str, int] | None = None
    ) -> None:
        """Route by this table from the next request on (atomically).

        ``backends``: revision -> its instances' (host, port). ``weights``: revision -> integer
        0..100, summing to 100 (default: equal shares). A revision left out is drained: requests it
        is serving finish there; its idle connections are closed now, busy ones when they finish.
        Raises ConfigError (and changes nothing) on a bad table.
        """
        old = self._core.table
        existing = {b.key(): b for b in old.all_backends()}
        table = build_table(backends, weights, existing)
        kept = {id(b) for b in table.all_backends()}
        for backend in old.all_backends():
            if id(backend) not in kept:
                backend.active = False
                for conn in list(backend.idle):
                    conn.close()
                if backend.in_flight > 0:
                    self._draining.add(backend)
        self._core.table = table
        if self._plane is not None:
            self._plane.set_table(table)

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """New weights for the current revisions (same rules as in :meth:`set_backends`)."""
        table = self._core.table
        check_weights(table.backends, weights)
        self.set_backends(table.backends, weights)

    @property
    def backends(self) -> dict[str, list[tuple[str, int]]]:
        return {rev: list(addrs) for rev, addrs in self._core.table.backends.items()}

    @property
    def weights(self) -> dict[str, int]:
        return dict(self._core.table.weights)

    @property
    def table(self) -> RouteTable:
        return self._core.table

    def in_flight(self, revision: str | None = None) -> int:
        """Requests being served now (by ``revision``, or by all), drained revisions included."""
        self._draining = {b for b in self._draining if b.in_flight > 0}
        backends = [*self._core.table.all_backends(), *self._draining]
        count = sum(b.in_flight for b in backends if revision is None or b.revision == revision)
        if self._plane is not None:
            native = self._plane.in_flight()
            count += sum(native.values()) if revision is None else native.get(revision, 0)
        return count

    async def wait_drained(self, revision: str, timeout: float = 30.0) -> bool:
        """Wait until ``revision`` serves no request; False if some still run after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self.in_flight(revision) > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    # -- shadow traffic -------------------------------------------------------------------------

    def start_mirror(
        self,
        revision: str,
        backends: Sequence[tuple[str, int]],
        *,
        percent: float = 100.0,
        methods: Sequence[str] | None = None,
        tolerance: float = 0.0,
        queue_size: int = QUEUE_SIZE,
    ) -> Mirror:
        """Copy ``percent`` % of finished requests (of ``methods``) to ``revision``; see :mod:`.mirror`."""
        if self._core.mirror is not None:
            raise ConfigError("router: a mirror runs already; stop it first")
        chosen = IDEMPOTENT if methods is None else frozenset(m.upper().encode("latin-1") for m in methods)
        mirror = Mirror(
            revision,
            backends,
            self._core.metrics,
            percent=percent,
            methods=chosen,
            tolerance=tolerance,
            queue_size=queue_size,
        )
        self._core.mirror = mirror
        self._update_native()
        return mirror

    async def stop_mirror(self) -> dict[str, Any] | None:
        """Stop copying; the mirror's final counts (None when none ran)."""
        mirror, self._core.mirror = self._core.mirror, None
        if mirror is None:
            return None
        self._update_native()
        await mirror.close()
        return mirror.stats()

    @property
    def mirror(self) -> Mirror | None:
        return self._core.mirror

    # -- experiments ----------------------------------------------------------------------------

    def start_experiment(self, experiment: Experiment) -> None:
        """Assign requests to ``experiment``'s variants from now on (see :mod:`.experiment`); the
        table's weights should be the variants' (they serve the requests without a key)."""
        if self._core.experiment is not None:
            raise ConfigError("router: an experiment runs already; stop it first")
        self._core.key_header = experiment.key_header
        self._core.metrics.feedback.value_sink = experiment.value
        self._core.experiment = experiment
        self._update_native()

    def stop_experiment(self) -> dict[str, Any] | None:
        """Stop assigning variants; the experiment's final counts (None when none ran)."""
        experiment, self._core.experiment = self._core.experiment, None
        self._core.key_header = None
        self._core.metrics.feedback.value_sink = None
        self._update_native()
        return None if experiment is None else experiment.stats()

    def _update_native(self) -> None:
        if self._plane is not None:
            self._plane.update_mode()

    @property
    def native(self) -> bool:
        """Whether the native data plane serves (the common) requests; see :mod:`.native`."""
        return self._plane is not None

    @property
    def experiment(self) -> Experiment | None:
        return self._core.experiment

    # -- metrics --------------------------------------------------------------------------------

    @property
    def metrics(self) -> RouterMetrics:
        return self._core.metrics

    def snapshot(self) -> dict[str, Any]:
        """Per-revision metrics since the last :meth:`reset`, plus the routing state, as plain data."""
        snap = self._core.metrics.snapshot()
        snap["weights"] = self.weights
        snap["backends"] = {rev: [f"{h}:{p}" for h, p in addrs] for rev, addrs in self.backends.items()}
        revisions = {b.revision for b in self._core.table.all_backends()} | {
            b.revision for b in self._draining
        }
        snap["in_flight"] = {rev: self.in_flight(rev) for rev in sorted(revisions)}
        snap["listen"] = f"{self.listen_host}:{self.listen_port}"
        if self._core.mirror is not None:
            snap["mirror"] = self._core.mirror.stats()
        if self._core.experiment is not None:
            snap["experiment"] = self._core.experiment.stats()
        return snap

    def reset(self) -> None:
        """Start the metrics afresh (all counters and reservoirs)."""
        self._core.metrics.reset()

    # -- housekeeping ---------------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Advance the tick; time out silent backends, idle clients and idle pooled connections."""
        core = self._core
        loop = core.loop
        origin = loop.time() - core.tick * TICK
        every = max(1, round(SWEEP_INTERVAL / TICK))
        while True:
            await asyncio.sleep(TICK)
            core.tick = int((loop.time() - origin) / TICK)
            if core.metrics.sync is not None:
                core.metrics.sync()  # the native plane's counts and kept answers, 10 times a second
            for client in list(core.clients):
                ex = client.active
                if ex is not None and ex.conn is not None:
                    client.check_timeout(ex)
            if core.tick % every:
                continue
            settings = core.settings
            idle_sweeps = max(1, round(settings.client_idle_timeout / SWEEP_INTERVAL))
            for client in list(core.clients):
                if client.touched or client.active is not None or client.queue:
                    client.touched = False
                    client.idle_ticks = 0
                else:
                    client.idle_ticks += 1
                    if client.idle_ticks >= idle_sweeps:
                        client.close()
            for backend in core.table.all_backends():
                stale: list[BackendConnection] = [
                    c for c in backend.idle if (core.tick - c.idle_since) * TICK > settings.pool_idle_timeout
                ]
                for conn in stale:
                    conn.close()
