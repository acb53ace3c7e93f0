"""Per-revision metrics of the HAProxy router, in the aicd router's snapshot format.

Two sources, each for what it is exact at:

- HAProxy's counters (``show stat``, per slot backend, read as differences and credited to the
  revision owning the slot): ``requests`` (answers: the 1xx..5xx counts), ``errors`` (5xx, HAProxy's
  own 502/503/504 included), ``status_class``, ``retries`` (connection retries on the same
  instance plus redispatches to another), ``client_closed`` (transfers the client aborted). These
  are what the threshold checks and the error-rate comparison read.
- One log line per request (:mod:`aicd.deploy.haproxy.config` sets the format), received over a
  Unix stream socket from HAProxy's log ring: exact ``status`` codes, ``proxy_errors`` (5xx that
  HAProxy made or that broke: a termination state other than ``--``), the latency histogram and
  reservoir (microsecond resolution: from the end of the request's headers to the end of the
  answer), and the counted JSON field's values. A line lands a few milliseconds after the counters
  moved; HAProxy drops lines only if its 16 MiB ring overflows.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.deploy.haproxy.config import LOG_TAG
from aicd.deploy.router.metrics import FieldCount, RevisionMetrics, RouterMetrics

log = logging.getLogger("aicd.deploy.haproxy.router")

_TAG = LOG_TAG.encode() + b" "
MAX_LINE = 256 * 1024


@dataclass(frozen=True, slots=True)
class LogRecord:
    backend: str
    server: str
    status: int  # -1: no answer (the client went away first)
    termination: str  # HAProxy's two-letter termination state, "--" for a normal end
    latency_ms: float
    body: bytes | None


def parse_line(line: bytes) -> LogRecord | None:
    """One request's log line; None for anything else (HAProxy's own notices)."""
    if not line.startswith(_TAG):
        return None
    parts = line[len(_TAG) :].split(b" ")
    if len(parts) < 6:
        return None
    try:
        status = int(parts[2])
        latency_us = int(parts[5])
    except ValueError:
        return None
    body = None
    if len(parts) > 6 and parts[6] not in (b"", b"-"):
        with contextlib.suppress(binascii.Error, ValueError):
            body = base64.b64decode(parts[6], validate=True)
    return LogRecord(
        backend=parts[0].decode("latin-1"),
        server=parts[1].decode("latin-1"),
        status=status,
        termination=parts[3].decode("latin-1"),
        latency_ms=max(latency_us, 0) / 1000.0,
        body=body,
    )


class _LogProtocol(asyncio.Protocol):
    def __init__(self, on_record: Callable[[LogRecord], None]) -> None:
        self.on_record = on_record
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        *lines, self.buffer = buffer.split(b"\n")
        if len(self.buffer) > MAX_LINE:
            self.buffer = b""
        for line in lines:
            record = parse_line(line)
            if record is not None:
                try:
                    self.on_record(record)
                except Exception:  # a bad line must not stop the log
                    log.exception("haproxy router: cannot record a log line")


class LogReceiver:
    """Listens on a Unix stream socket for HAProxy's log ring; each request line -> ``on_record``."""

    def __init__(self, path: Path, on_record: Callable[[LogRecord], None]) -> None:
        self.path = path
        self.on_record = on_record
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _LogProtocol(self.on_record), str(self.path))
        self.path.chmod(0o600)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass
class Counters:
    """One revision's totals from HAProxy's counters."""

    requests: int = 0
    errors: int = 0
    retries: int = 0
    client_closed: int = 0
    status_class: dict[str, int] = field(default_factory=dict)

    def add(self, delta: Mapping[str, int]) -> None:
        for cls in ("1xx", "2xx", "3xx", "4xx", "5xx"):
            n = delta.get(f"hrsp_{cls}", 0)
            if n:
                self.requests += n
                self.status_class[cls] = self.status_class.get(cls, 0) + n
        self.errors += delta.get("hrsp_5xx", 0)
        self.retries += delta.get("wretr", 0) + delta.get("wredis", 0)
        self.client_closed += delta.get("cli_abrt", 0)


class HAProxyMetrics:
    """Everything :meth:`snapshot` reports, fed by counter differences and log lines."""

    def __init__(self, reservoir_size: int = 5000, field_count: FieldCount | None = None) -> None:
        self.logs = RouterMetrics(reservoir_size, field_count)
        self.counters: dict[str, Counters] = {}
        self.unrouted = 0

    @property
    def since(self) -> float:
        return self.logs.since

    def add_counters(self, revision: str, delta: Mapping[str, int]) -> None:
        counters = self.counters.get(revision)
        if counters is None:
            counters = self.counters[revision] = Counters()
        counters.add(delta)

    def record(self, revision: str, record: LogRecord) -> None:
        if record.status < 100:
            return  # no answer: counted by HAProxy as a client abort
        proxy_error = record.status >= 500 and not record.termination.startswith("-")
        self.logs.record(revision, record.status, record.latency_ms, proxy_error)
        if record.body is not None:
            self.logs.record_body(revision, record.body)

    def reset(self) -> None:
        self.logs.reset()
        self.counters = {}
        self.unrouted = 0

    def snapshot(self) -> dict[str, Any]:
        from_logs = self.logs.revisions
        revisions: dict[str, Any] = {}
        for name in [*self.counters, *(r for r in from_logs if r not in self.counters)]:
            rev = (from_logs.get(name) or RevisionMetrics(1)).snapshot()
            counters = self.counters.get(name) or Counters()
            rev["requests"] = counters.requests
            rev["errors"] = counters.errors
            rev["retries"] = counters.retries
            rev["client_closed"] = counters.client_closed
            rev["status_class"] = dict(sorted(counters.status_class.items()))
            rev["latency_ms"]["count"] = sum(rev["latency_ms"]["counts"])
            revisions[name] = rev
        return {"since": self.since, "unrouted": self.unrouted, "revisions": revisions}
