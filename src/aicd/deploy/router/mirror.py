"""Shadow traffic: a copy of a share of requests to a candidate revision whose answers no user sees.

When the router has finished a user's request (its answer fully handed to the client), it offers
a copy to the :class:`Mirror`: method, target, headers, body (when the router kept it whole:
at most 64 KiB) and the counted field of stable's answer. The offer never waits: the copy goes
into a bounded queue, or is dropped and counted when the queue is full (the candidate lags). A
few worker tasks send the copies to the candidate's instances over keep-alive connections, each
marked ``X-Aicd-Shadow: 1`` (protocol callbacks, no task per copy), and read the answers:

- the candidate's requests, status codes, latencies and counted field values are recorded under
  its revision in the router's metrics, so the canary analysis (thresholds, judge, drift) reads
  them as it reads a canary's;
- the counted field of its answer is compared with stable's for the same request: elements of a
  list one by one, equal, or for numbers within ``tolerance``: the agreement rate.

Only the methods in ``methods`` are mirrored (default GET, HEAD and OPTIONS: idempotent; mirroring
writes can corrupt data): a prediction service served by POST names POST explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import httptools

from aicd.deploy.router.metrics import RouterMetrics

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS"})
QUEUE_SIZE = 1000
WORKERS = 8
TIMEOUT = 30.0  # seconds for one mirrored exchange
_SKIP = frozenset({b"content-length", b"transfer-encoding", b"host", b"x-request-id", b"expect"})


Job = tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes, bytes, Any]


class _Conn(asyncio.Protocol):
    """One keep-alive connection to the candidate, carrying one copy at a time (no task per copy)."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.job: Job | None = None
        self.body: list[bytes] = []
        self.started = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: same methods, no isinstance
        transport = cast(asyncio.Transport, transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.job is None:  # bytes nobody asked for
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_headers_complete(self) -> None:
        if self.job is not None and self.job[0] == b"HEAD":  # no body follows: done, and not reused
            self._done(keep=False)

    def on_message_complete(self) -> None:
        if self.job is not None:
            self._done(keep=self.parser.should_keep_alive())

    def _done(self, keep: bool) -> None:
        job, self.job = self.job, None
        body, self.body = b"".join(self.body), []
        assert job is not None
        self.mirror.on_answer(self, job, self.parser.get_status_code(), body, keep)

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = not self.closed
        self.closed = True
        job, self.job = self.job, None
        self.mirror.lost(self, job, was_open)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


def agree(stable: Any, candidate: Any, tolerance: float) -> tuple[int, int]:
    """(agreeing elements, elements compared) of two answers' counted field values."""
    left = stable if isinstance(stable, list) else [stable]
    right = candidate if isinstance(candidate, list) else [candidate]
    if len(left) != len(right):
        return 0, max(len(left), len(right), 1)
    same = 0
    for a, b in zip(left, right, strict=True):
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
        if (abs(float(a) - float(b)) <= tolerance) if numbers else a == b:
            same += 1
    return same, len(left)


class Mirror:
    """Copies of requests to ``revision`` at ``backends``; see the module's documentation."""

    def __init__(
        self,
        revision: str,
        backends: Sequence[tuple[str, int]],
        metrics: RouterMetrics,
        *,
        percent: float = 100.0,
        methods: frozenset[bytes] = IDEMPOTENT,
        tolerance: float = 0.0,
        queue_size: int = QUEUE_SIZE,
        workers: int = WORKERS,
        timeout: float = TIMEOUT,
    ) -> None:
        if not backends:
            raise ValueError("a mirror needs at least one backend")
        self.revision = revision
        self.backends = list(backends)
        self.metrics = metrics
        self.percent = max(0.0, min(100.0, percent))
        self.methods = methods
        self.tolerance = tolerance
        self.timeout = timeout
        self.queue_size = queue_size
        self.workers = max(1, workers)
        self.pending: deque[Job] = deque()  # copies waiting for a connection
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.opening = 0
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[None]] = set()
        self._share = 0.0
        self._next = 0
        self.offered = 0  # requests of a mirrored method seen
        self.mirrored = 0  # queued for the candidate
        self.dropped = 0  # not queued: the queue was full
        self.skipped = 0  # body not kept whole (larger than the router keeps): not mirrored
        self.failed = 0  # the candidate could not be reached, broke the answer or timed out
        self.answered = 0
        self.compared = 0  # answers whose counted field was compared with stable's
        self.agreed = 0  # elements that agreed
        self.elements = 0  # elements compared
        self._watch = self.loop.create_task(self._timeouts())

    # -- the router's side (never waits) --------------------------------------------------------------

    def offer(
        self,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        request_id: bytes,
        stable_value: Any,
    ) -> None:
        self.offered += 1
        self._share += self.percent
        if self._share < 100.0:
            return
        self._share -= 100.0
        if body is None:
            self.skipped += 1
            return
        job: Job = (method, url, headers, body, request_id, stable_value)
        if self.idle:
            self._send(self.idle.pop(), job)
        elif len(self.conns) + self.opening < self.workers:
            self._open(job)
        elif len(self.pending) < self.queue_size:
            self.pending.append(job)
        else:
            self.dropped += 1
            return
        self.mirrored += 1

    # -- connections (callbacks of the event loop; a task only to open one) ---------------------------

    def _open(self, job: Job) -> None:
        self.opening += 1
        task = self.loop.create_task(self._connect(job))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, job: Job) -> None:
        host, port = self.backends[self._next % len(self.backends)]
        self._next += 1
        try:
            async with asyncio.timeout(self.timeout):
                _, conn = await self.loop.create_connection(lambda: _Conn(self), host, port)
        except (OSError, TimeoutError):
            self.opening -= 1
            self.failed += 1
            self._pump()
            return
        self.opening -= 1
        self.conns.add(conn)
        self._send(conn, job)

    def _send(self, conn: _Conn, job: Job) -> None:
        method, url, headers, body, request_id, _ = job
        assert conn.transport is not None
        peer = conn.transport.get_extra_info("peername") or ("", 0)
        lines = [method, b" ", url, b" HTTP/1.1\r\nHost: %s:%d\r\n" % (str(peer[0]).encode(), peer[1])]
        for name, value in headers:
            if name.lower() not in _SKIP:
                lines += (name, b": ", value, b"\r\n")
        if request_id:
            lines += (b"X-Request-Id: ", request_id, b"\r\n")
        lines.append(b"X-Aicd-Shadow: 1\r\nContent-Length: %d\r\n\r\n" % len(body))
        lines.append(body)
        conn.job = job
        conn.started = time.perf_counter()
        conn.transport.write(b"".join(lines))

    def on_answer(self, conn: _Conn, job: Job, status: int, answer: bytes, keep: bool) -> None:
        self.answered += 1
        self.metrics.record(self.revision, status, (time.perf_counter() - conn.started) * 1000.0)
        value = self.metrics.record_body(self.revision, answer) if 200 <= status < 300 else None
        stable_value = job[5]
        if value is not None and stable_value is not None:
            same, total = agree(stable_value, value, self.tolerance)
            self.compared += 1
            self.agreed += same
            self.elements += total
        if keep and not conn.closed:
            if self.pending:
                self._send(conn, self.pending.popleft())
            else:
                self.idle.append(conn)
        else:
            conn.close()

    def lost(self, conn: _Conn, job: Job | None, was_open: bool) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if job is not None:
            self.failed += 1
        self._pump()

    def _pump(self) -> None:
        while self.pending and len(self.conns) + self.opening < self.workers:
            self._open(self.pending.popleft())

    async def _timeouts(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.perf_counter()
            for conn in list(self.conns):
                if conn.job is not None and now - conn.started > self.timeout and conn.transport is not None:
                    conn.transport.abort()

    # -- results --------------------------------------------------------------------------------------

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.elements if self.elements else None

    def stats(self) -> dict[str, Any]:
        agreement = self.agreement
        return {
            "revision": self.revision,
            "percent": self.percent,
            "methods": sorted(m.decode() for m in self.methods),
            "offered": self.offered,
            "mirrored": self.mirrored,
            "dropped": self.dropped,
            "skipped": self.skipped,
            "failed": self.failed,
            "answered": self.answered,
            "compared": self.compared,
            "agreed": self.agreed,
            "elements": self.elements,
            "agreement": None if agreement is None else round(agreement, 6),
            "queued": len(self.pending),
        }

    async def close(self) -> None:
        self._watch.cancel()
        for task in list(self.tasks):
            task.cancel()
        for conn in list(self.conns):
            conn.close()
        self.pending.clear()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch


__all__ = ["IDEMPOTENT", "Mirror", "agree"]
