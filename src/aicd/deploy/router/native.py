"""The router's native data plane, from Python: when it is used, and the glue around it.

The extension (``_native.c``, compiled at ``pip install`` where a C compiler is) serves the common
request on its own thread without the GIL: it owns the listening socket, parses each request head
strictly, picks the backend as :class:`~aicd.deploy.router.table.RouteTable` does, sets or keeps
``X-Request-Id``, rebuilds the head as :mod:`.proxy` does, keeps pools of keep-alive connections to
the backends, relays the answer (Content-Length, chunked and close-delimited bodies) and counts
per-revision metrics. Python stays the control plane: :meth:`Router.set_backends` hands it each new
table, and the metrics it counted are merged into :class:`~aicd.deploy.router.metrics.RouterMetrics`
whenever they are read (``sync``: at every read-out, before labels are joined, and every 0.1 s),
so ``snapshot()``, ``/_aicd/metrics``, the analysis and ``aicd metrics`` see one set of numbers.
The answers of the counted-field path (``FieldCount``) are served natively too: their bodies (2xx,
at most 64 KiB) go to Python, which counts the field and keeps it for a label as before.

Everything else goes to the Python path (:mod:`.proxy`) at a request boundary: the plane hands the
client's socket and the bytes it read so far to the event loop, and a :class:`HandedConnection`
serves that connection from then on. That is every head the native parser does not accept (it
never refuses: malformed or ambiguous heads get Python's verdict, 400 and the like), chunked or
larger than 64 KiB request bodies, HTTP/1.0, ``Expect``, ``Upgrade`` and other hop-by-hop headers,
HEAD and unusual methods, and ``/_aicd/``; and every connection while a
mirror or an experiment runs, with a sticky header, or when a backend's host is not an IPv4
address (or ``localhost``).

``AICD_ROUTER_NATIVE``: ``0`` keeps the Python path for everything; ``1`` insists on the native
plane (an error where it was not built); unset or ``auto``: native where built (Linux).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from types import ModuleType
from typing import TYPE_CHECKING

from aicd.deploy.router.proxy import ClientConnection, ProxyCore
from aicd.errors import ConfigError

if TYPE_CHECKING:
    from aicd.deploy.router._native import Plane
    from aicd.deploy.router.table import RouteTable

ENV = "AICD_ROUTER_NATIVE"


def available() -> ModuleType | None:
    """The compiled extension, or None where it was not built."""
    try:
        from aicd.deploy.router import _native
    except ImportError:
        return None
    return _native


def wanted(choice: str | None = None) -> bool:
    """Whether routers started now use the native plane (``choice`` defaults to ``$AICD_ROUTER_NATIVE``).

    ConfigError on an unknown choice, or on ``1`` when the extension was not built."""
    value = (choice if choice is not None else os.environ.get(ENV, "")).strip().lower() or "auto"
    if value in ("0", "off", "no", "false"):
        return False
    if value not in ("1", "on", "yes", "true", "auto"):
        raise ConfigError(f"{ENV}={value!r}: expected 0, 1 or auto")
    if available() is None:
        if value != "auto":
            raise ConfigError(
                f"{ENV}={value}: the router's native plane was not built (it needs gcc and the Python "
                "headers at pip install, on Linux); unset it to use the Python path"
            )
        return False
    return True


def ipv4_of(host: str) -> str | None:
    """``host`` as the IPv4 address the plane connects to; None when the Python path must resolve it."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        return None


def listens_natively(host: str) -> bool:
    """The plane takes a listening socket it can make alone: an IP address, not a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HandedConnection(ClientConnection):
    """A client connection the native plane handed over, with the bytes it had read already."""

    __slots__ = ("initial",)

    def __init__(self, core: ProxyCore, initial: bytes) -> None:
        super().__init__(core)
        self.initial = initial

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        initial, self.initial = self.initial, b""
        if initial:
            self.data_received(initial)


class NativePlane:
    """One router's plane: its thread, its listening socket, and what Python does for it."""

    def __init__(self, core: ProxyCore, host: str, port: int) -> None:
        module = available()
        assert module is not None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, backlog=1024)
        self.sock.setblocking(False)
        settings = core.settings
        capture = core.capture_path
        self.core = core
        self.plane: Plane = module.Plane(
            self.sock.fileno(),
            os.urandom(4).hex().encode() + b"-",
            settings.request_ids,
            settings.max_head_bytes,
            settings.max_headers,
            settings.max_url_bytes,
            settings.connect_timeout,
            settings.response_timeout,
            settings.client_idle_timeout,
            settings.pool_idle_timeout,
            settings.max_attempts,
            settings.max_idle_per_backend,
            core.metrics.reservoir_size,
            capture,
        )
        self.unresolved = False  # a backend the plane cannot reach by itself: all to Python
        self.closed = False
        core.metrics.sync = self.sync

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self.core.loop.add_reader(self.plane.fileno(), self.take)
        self.plane.start()

    def take(self) -> None:
        """Connections the plane handed over: served by the Python path from now on."""
        for fd, data in self.plane.take():
            sock = socket.socket(fileno=fd)
            if self.closed:
                sock.close()
                continue
            self.core.spawn(self.adopt(sock, data))

    async def adopt(self, sock: socket.socket, data: bytes) -> None:
        core = self.core
        try:
            await core.loop.connect_accepted_socket(lambda: HandedConnection(core, data), sock)
        except OSError:
            sock.close()

    def set_table(self, table: RouteTable) -> None:
        entries: list[tuple[str, int, list[tuple[str, str, int]]]] = []
        unresolved = False
        for revision, addresses in table.backends.items():
            members: list[tuple[str, str, int]] = []
            for host, port in addresses:
                ip = ipv4_of(host)
                if ip is None:
                    unresolved = True
                else:
                    members.append((f"{host}:{port}", ip, port))
            entries.append((revision, table.weights.get(revision, 0), members))
        self.unresolved = unresolved
        if not unresolved:
            self.plane.set_table(entries)
        self.update_mode()

    def update_mode(self) -> None:
        core = self.core
        python_only = (
            self.unresolved
            or core.mirror is not None
            or core.experiment is not None
            or core.settings.sticky_header is not None
        )
        self.plane.set_python_only(python_only)

    def sync(self) -> None:
        """Merge what the plane counted since the last call into the router's metrics."""
        metrics = self.core.metrics
        for drained in self.plane.drain():
            name, requests, errors, proxy_errors, retries, closed, status, hist, total, latest = drained
            m = metrics.of(name)
            m.requests += requests
            m.errors += errors
            m.proxy_errors += proxy_errors
            m.retries += retries
            m.client_closed += closed
            for code, n in status.items():
                m.status[code] = m.status.get(code, 0) + n
            for i, n in enumerate(hist):
                m.histogram[i] += n
            m.latency_sum_ms += total
            m.reservoir.extend(latest)
        for revision, body, request_id in self.plane.captures():
            metrics.record_body(revision, body, request_id)

    def in_flight(self) -> dict[str, int]:
        return self.plane.in_flight()

    async def stop(self, grace: float) -> None:
        """Stop accepting; requests in progress finish (up to ``grace`` s); then everything closes."""
        loop = self.core.loop
        loop.remove_reader(self.plane.fileno())
        await loop.run_in_executor(None, self.plane.stop, grace)
        self.closed = True
        for fd, _ in self.plane.take():
            os.close(fd)
        self.sync()
        self.core.metrics.sync = None
        self.sock.close()
