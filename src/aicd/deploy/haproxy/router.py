"""HAProxy as the environment's router: the aicd Router's surface over a haproxy process.

    router = HAProxyRouter("127.0.0.1", 8000, state_dir=Path("state/router"))
    await router.start()                     # runs haproxy; ConfigError if it cannot listen
    router.set_backends({"r1": [("127.0.0.1", 9001)], "r2": [("127.0.0.1", 9002)]},
                        weights={"r1": 90, "r2": 10})
    router.snapshot()                        # the aicd router's format (router_metrics)
    router.set_backends({"r2": [("127.0.0.1", 9002)]}, weights={"r2": 100})
    await router.wait_drained("r1", timeout=30)
    await router.stop()                      # soft stop: requests in progress finish

Each revision gets a backend of its own (a *slot*, see :mod:`aicd.deploy.haproxy.config`), its
instances are dynamic servers of that backend, and the weights are one map that the frontend reads
per request. ``set_backends`` adds the new servers (ready before any request can reach them),
swaps the map in one ``commit map``, then puts removed instances into maintenance: no reload ever,
so established connections and requests in flight are never cut. A revision left out *drains*:
it gets no new request, its requests in flight finish, and once its backend serves none its servers
are deleted and the slot is free again. If haproxy dies, the router starts it again on the same
port with the current table (checked every 0.2 s).

Latency and counted values come from HAProxy's per-request log lines, counts from its counters:
see :mod:`aicd.deploy.haproxy.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.deploy.haproxy.config import (
    NO_ROUTE,
    HAProxyFiles,
    HAProxySettings,
    address,
    alerts,
    check_count_path,
    find_haproxy,
    haproxy_version,
    read_tail,
    render_config,
    slot_name,
)
from aicd.deploy.haproxy.metrics import HAProxyMetrics, LogReceiver, LogRecord
from aicd.deploy.haproxy.process import RUN_FILE, end, kill_now, prepare_files, resolve, run_haproxy
from aicd.deploy.haproxy.runtime import STAT_FIELDS, HAProxyError, RuntimeAPI
from aicd.deploy.router.metrics import FieldCount
from aicd.deploy.router.table import build_table
from aicd.errors import ConfigError, DeployError

__all__ = ["HAProxyError", "HAProxyRouter"]

log = logging.getLogger("aicd.deploy.haproxy.router")

TICK = 0.2  # seconds between housekeeping rounds (counters, drained revisions, a dead haproxy)
SETTLE = 0.05  # a revision that left less than this ago may still be picked by a request being routed
MAX_THREADS = 4  # haproxy's default is one per CPU: plenty for one environment's traffic


@dataclass
class _Slot:
    """One of haproxy's revision backends, and who owns it."""

    name: str
    revision: str | None = None
    servers: dict[tuple[str, int], str] = field(default_factory=dict)  # (host, port) -> server name
    retiring: set[str] = field(default_factory=set)  # servers in maintenance, deleted once idle
    left_at: float | None = None  # monotonic time the revision left the table (draining)
    freed_at: float = 0.0
    last_owner: str | None = None  # for log lines arriving after the slot was freed
    last: dict[str, int] = field(default_factory=dict)  # counters at the last reading
    scur: int = 0


class HAProxyRouter:
    """The aicd router's surface, with a haproxy process doing the proxying."""

    def __init__(
        self,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        *,
        state_dir: Path | None = None,
        binary: str | None = None,
        connect_timeout: float = 3.0,
        response_timeout: float = 30.0,
        client_idle_timeout: float = 75.0,
        max_attempts: int = 3,
        field_count: FieldCount | None = None,
        reservoir_size: int = 5000,
        slots: int = 32,
    ) -> None:
        if not 0 <= listen_port < 65536:
            raise ConfigError(f"router: listen port {listen_port} is not in 0-65535")
        if max_attempts < 1:
            raise ConfigError("router: max_attempts must be at least 1")
        if not 1 <= slots <= 100:
            raise ConfigError("router: slots must be 1..100")
        found = find_haproxy(binary)
        if found is None:
            raise ConfigError(f"router: haproxy is not installed ({binary or 'haproxy'} is not on PATH)")
        self.binary = found
        self.version = haproxy_version(found)
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.state_dir = state_dir
        self.field_count = field_count
        if field_count is not None:
            check_count_path(field_count.path)
        self._timeouts = (connect_timeout, response_timeout, client_idle_timeout)
        self.max_attempts = max_attempts
        self._metrics = HAProxyMetrics(reservoir_size, field_count)
        self._slots = [_Slot(slot_name(i)) for i in range(slots)]
        self._slot_named = {slot.name: slot for slot in self._slots}
        self._of: dict[str, _Slot] = {}  # revision -> its slot (in the table or draining)
        self._backends: dict[str, list[tuple[str, int]]] = {}
        self._weights: dict[str, int] = {}
        self._files: HAProxyFiles | None = None
        self._temps: list[Path] = []  # temp dirs to remove at the stop
        self._api: RuntimeAPI | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._logs: LogReceiver | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._server_ids = 0
        self._unrouted_seen = 0
        self.restarts = 0  # times haproxy died and was started again

    # -- life -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Run haproxy on ``listen_host:listen_port`` (0: a free port) with the table set so far."""
        if self._proc is not None:
            raise ConfigError("router: already started")
        self._files, self._temps = prepare_files(self.state_dir)
        self._logs = LogReceiver(self._files.log_socket, self._on_log)
        await self._logs.start()
        try:
            await self._launch()
        except BaseException:
            await self._cleanup()
            raise
        self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening, let requests in progress finish (up to ``grace`` s), end haproxy."""
        proc = self._proc
        if proc is None:
            return
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        with contextlib.suppress(HAProxyError):
            self._refresh()
        self._proc = None
        await end(proc, grace)
        await asyncio.sleep(0.05)  # the last log lines
        await self._cleanup()

    async def __aenter__(self) -> HAProxyRouter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self.listen_port

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.listen_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def files(self) -> HAProxyFiles | None:
        return self._files

    # -- routing --------------------------------------------------------------------------------

    def set_backends(
        self, backends: Mapping[str, Sequence[tuple[str, int]]], weights: Mapping[str, int] | None = None
    ) -> None:
        """Route by this table from the next request on (one ``commit map``); same rules as Router's.

        Revisions left out drain. Raises ConfigError (and changes nothing) on a bad table,
        HAProxyError if haproxy refuses a command.
        """
        table = build_table(backends, weights, {})
        resolved = {rev: [resolve(h, p) for h, p in addrs] for rev, addrs in table.backends.items()}
        if self._proc is not None and self._proc.poll() is None:
            self._apply(table.backends, resolved, table.weights)
        # (a haproxy that died gets this table when the housekeeping starts it again)
        self._backends = {rev: list(addrs) for rev, addrs in table.backends.items()}
        self._weights = dict(table.weights)

    def set_weights(self, weights: Mapping[str, int]) -> None:
        self.set_backends(self._backends, weights)

    @property
    def backends(self) -> dict[str, list[tuple[str, int]]]:
        return {rev: list(addrs) for rev, addrs in self._backends.items()}

    @property
    def weights(self) -> dict[str, int]:
        return dict(self._weights)

    def in_flight(self, revision: str | None = None) -> int:
        """Requests being served now (by ``revision``, or by all), draining revisions included."""
        if self._proc is not None:
            with contextlib.suppress(HAProxyError):
                self._refresh()
        return sum(s.scur for s in self._slots if s.revision and revision in (None, s.revision))

    async def wait_drained(self, revision: str, timeout: float = 30.0) -> bool:
        """Wait until ``revision`` serves no request; False if some still run after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        slot = self._of.get(revision)
        if slot is not None and slot.left_at is not None:
            await asyncio.sleep(max(0.0, slot.left_at + SETTLE - time.monotonic()))
        while self.in_flight(revision) > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # -- metrics --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Per-revision metrics (the aicd router's format) plus the routing state, as plain data."""
        self.in_flight()  # reads the counters
        snap = self._metrics.snapshot()
        snap["weights"] = self.weights
        snap["backends"] = {rev: [f"{h}:{p}" for h, p in addrs] for rev, addrs in self._backends.items()}
        snap["in_flight"] = {s.revision: s.scur for s in self._slots if s.revision}
        snap["listen"] = f"{self.listen_host}:{self.listen_port}"
        snap["router"] = "haproxy"
        return snap

    def reset(self) -> None:
        """Start the metrics afresh."""
        if self._proc is not None:
            with contextlib.suppress(HAProxyError):
                self._refresh()
        self._metrics.reset()

    # -- the process ----------------------------------------------------------------------------

    async def _launch(self) -> None:
        """Run haproxy (a fresh configuration, an empty map), then put the current table in."""
        files = self._files
        assert files is not None
        proc, api, port = await run_haproxy(
            self.binary,
            files,
            lambda port: render_config(files, self._config_settings(port)),
            self.listen_host,
            self.listen_port,
            experimental=self.version < (2, 5),
        )
        self._api = api
        for slot in self._slots:
            slot.revision, slot.servers, slot.retiring, slot.left_at = None, {}, set(), None
            slot.last, slot.scur = {}, 0
        self._of = {}
        self._unrouted_seen = 0
        try:
            self._refresh()
            if self._backends:
                resolved = {rev: [resolve(h, p) for h, p in addrs] for rev, addrs in self._backends.items()}
                self._apply(self._backends, resolved, self._weights)
        except BaseException:
            kill_now(proc)
            raise
        self._proc = proc
        self.listen_port = port

    def _config_settings(self, port: int) -> HAProxySettings:
        connect, response, idle = self._timeouts
        return HAProxySettings(
            bind=address(self.listen_host, port),
            threads=min(MAX_THREADS, os.cpu_count() or 1),
            slots=len(self._slots),
            connect_timeout=connect,
            response_timeout=response,
            client_idle_timeout=idle,
            max_attempts=self.max_attempts,
            count_path=self.field_count.path if self.field_count else None,
        )

    async def _cleanup(self) -> None:
        if self._logs is not None:
            await self._logs.close()
            self._logs = None
        if self._files is not None:
            for path in (self._files.stats_socket, self._files.pidfile, self._files.home / RUN_FILE):
                with contextlib.suppress(OSError):
                    path.unlink()
        for temp in self._temps:
            shutil.rmtree(temp, ignore_errors=True)
        self._temps = []
        self._api = None
        for slot in self._slots:
            slot.scur = 0

    async def _keep(self) -> None:
        """Housekeeping: counters, drained revisions and retired servers, a dead haproxy."""
        backoff = 0.0
        while True:
            await asyncio.sleep(TICK + backoff)
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is not None:
                backoff = (
                    0.0 if await self._revive(proc, quiet=backoff > 0) else min(30.0, 2 * backoff or 1.0)
                )
                continue
            try:
                self._refresh()
                self._collect()
            except HAProxyError as exc:
                log.warning("%s", exc)
            except Exception:  # the housekeeping must go on
                log.exception("haproxy router: housekeeping failed")

    async def _revive(self, dead: subprocess.Popen[bytes], quiet: bool) -> bool:
        """haproxy exited on its own: start it again on the same port with the current table."""
        if not quiet:
            err = read_tail(self._files.stderr) if self._files else ""
            log.error(
                "haproxy (pid %s) exited with status %s; starting it again. %s",
                dead.pid,
                dead.returncode,
                "; ".join(alerts(err)),
            )
        try:
            await self._launch()
        except (ConfigError, DeployError, OSError) as exc:  # tried again later, less often
            if not quiet:
                log.error("haproxy router: cannot start haproxy again (will retry): %s", exc)
            return False
        self.restarts += 1
        log.info("haproxy router: haproxy runs again (pid %s) on port %s", self.pid, self.listen_port)
        return True

    # -- runtime changes ------------------------------------------------------------------------

    def _apply(
        self,
        backends: Mapping[str, Sequence[tuple[str, int]]],
        resolved: Mapping[str, list[str]],
        weights: Mapping[str, int],
    ) -> None:
        api = self._api
        assert api is not None
        self._refresh()  # counters so far belong to the present owners
        needed = [rev for rev in backends if rev not in self._of]
        free = sorted((s for s in self._slots if s.revision is None), key=lambda s: s.freed_at)
        if len(needed) > len(free):
            busy = len(self._slots) - len(free)
            raise ConfigError(
                f"router: haproxy has {len(self._slots)} revision backends and {busy} are in use "
                "(revisions in the table or still draining); wait for drained revisions to finish"
            )
        for rev, slot in zip(needed, free, strict=False):
            slot.revision = slot.last_owner = rev
            slot.left_at = None
            self._of[rev] = slot
        retire: list[tuple[_Slot, str]] = []
        for rev, addrs in backends.items():
            slot = self._of[rev]
            slot.left_at = None
            wanted = dict(zip(addrs, resolved[rev], strict=True))
            for key, addr in wanted.items():
                if key not in slot.servers:
                    self._server_ids += 1
                    name = f"i{self._server_ids}"
                    api.add_server(slot.name, name, addr)
                    api.set_state(slot.name, name, "ready")
                    slot.servers[key] = name
            for key in [k for k in slot.servers if k not in wanted]:
                retire.append((slot, slot.servers.pop(key)))
        entries: list[tuple[str, str]] = []
        low = 0
        for rev, weight in weights.items():
            if weight > 0:
                entries.append((f"{low}:{low + weight - 1}", self._of[rev].name))
                low += weight
        files = self._files
        assert files is not None
        api.replace_map(files.map, entries)
        now = time.monotonic()
        for rev, slot in self._of.items():
            if rev not in backends and slot.left_at is None:
                slot.left_at = now
        for slot, name in retire:
            api.set_state(slot.name, name, "maint")
            slot.retiring.add(name)

    def _refresh(self) -> None:
        """Read haproxy's counters; credit what moved since the last reading to the slots' owners."""
        api = self._api
        if api is None:
            return
        stats = api.backend_stats()
        none = stats.get(NO_ROUTE)
        if none is not None:
            self._metrics.unrouted += max(0, none["hrsp_5xx"] - self._unrouted_seen)
            self._unrouted_seen = none["hrsp_5xx"]
        for slot in self._slots:
            now = stats.get(slot.name)
            if now is None:
                continue
            slot.scur = now["scur"]
            delta = {f: now[f] - slot.last.get(f, 0) for f in STAT_FIELDS if f != "scur"}
            slot.last = now
            owner = slot.revision or slot.last_owner
            if owner is not None and any(delta.values()):
                self._metrics.add_counters(owner, delta)

    def _collect(self) -> None:
        """Delete retired servers that are idle; free the slots of revisions that have drained."""
        api = self._api
        assert api is not None
        now = time.monotonic()
        for slot in self._slots:
            if slot.revision is None:
                continue
            if slot.left_at is not None and now - slot.left_at >= SETTLE and slot.scur == 0:
                for name in slot.servers.values():
                    api.set_state(slot.name, name, "maint")
                    slot.retiring.add(name)
                slot.servers = {}
            for name in sorted(slot.retiring):
                if api.del_server(slot.name, name):
                    slot.retiring.discard(name)
            if slot.left_at is not None and not slot.servers and not slot.retiring:
                del self._of[slot.revision]
                slot.revision, slot.left_at, slot.freed_at = None, None, now

    def _on_log(self, record: LogRecord) -> None:
        slot = self._slot_named.get(record.backend)
        owner = slot.revision or slot.last_owner if slot is not None else None
        if owner is not None:
            self._metrics.record(owner, record)
