"""Shadow traffic: a copy of a share of requests to a candidate revision whose answers no user sees.

When the router has finished a user's request (its answer fully handed to the client), it offers
a copy to the :class:`Mirror`: method, target, headers, body (when the router kept it whole:
at most 64 KiB) and the counted field of stable's answer. The offer never waits: the copy goes
into a bounded queue, or is dropped and counted when the queue is full (the candidate lags). A
few worker tasks send the copies to the candidate's instances over keep-alive connections, each
marked ``X-Aicd-Shadow: 1``, and read the answers:

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
from collections.abc import Sequence
from typing import Any

import httptools

from aicd.deploy.router.metrics import RouterMetrics

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS"})
QUEUE_SIZE = 1000
WORKERS = 8
TIMEOUT = 30.0  # seconds for one mirrored exchange
_SKIP = frozenset({b"content-length", b"transfer-encoding", b"host", b"x-request-id", b"expect"})


class _Reply:
    __slots__ = ("body", "done")

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.done = False

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


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
        self.queue: asyncio.Queue[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes, bytes, Any]] = (
            asyncio.Queue(queue_size)
        )
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
        self._tasks = [asyncio.get_running_loop().create_task(self._work()) for _ in range(max(1, workers))]

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
        try:
            self.queue.put_nowait((method, url, headers, body, request_id, stable_value))
        except asyncio.QueueFull:
            self.dropped += 1
            return
        self.mirrored += 1

    # -- the workers ----------------------------------------------------------------------------------

    async def _work(self) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        backend = self.backends[0]
        while True:
            method, url, headers, body, request_id, stable_value = await self.queue.get()
            if conn is None:
                backend = self.backends[self._next % len(self.backends)]
                self._next += 1
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout):
                    if conn is None:
                        conn = await asyncio.open_connection(*backend)
                    status, answer, keep = await self._exchange(
                        conn, backend, method, url, headers, body, request_id
                    )
            except (OSError, TimeoutError, httptools.HttpParserError, ConnectionError):
                self.failed += 1
                if conn is not None:
                    conn[1].close()
                    conn = None
                continue
            latency_ms = (time.perf_counter() - started) * 1000.0
            if not keep:
                conn[1].close()
                conn = None
            self.answered += 1
            self.metrics.record(self.revision, status, latency_ms)
            value = self.metrics.record_body(self.revision, answer) if 200 <= status < 300 else None
            if value is not None and stable_value is not None:
                same, total = agree(stable_value, value, self.tolerance)
                self.compared += 1
                self.agreed += same
                self.elements += total

    async def _exchange(
        self,
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        backend: tuple[str, int],
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        request_id: bytes,
    ) -> tuple[int, bytes, bool]:
        reader, writer = conn
        lines = [method, b" ", url, b" HTTP/1.1\r\nHost: %s:%d\r\n" % (backend[0].encode(), backend[1])]
        for name, value in headers:
            if name.lower() not in _SKIP:
                lines += (name, b": ", value, b"\r\n")
        if request_id:
            lines += (b"X-Request-Id: ", request_id, b"\r\n")
        lines.append(b"X-Aicd-Shadow: 1\r\nContent-Length: %d\r\n\r\n" % len(body))
        lines.append(body)
        writer.write(b"".join(lines))
        reply = _Reply()
        parser = httptools.HttpResponseParser(reply)
        while not reply.done:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the candidate closed the connection")
            parser.feed_data(data)
            if method == b"HEAD" and parser.get_status_code():
                break
        return parser.get_status_code(), b"".join(reply.body), parser.should_keep_alive()

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
            "queued": self.queue.qsize(),
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


__all__ = ["IDEMPOTENT", "Mirror", "agree"]
