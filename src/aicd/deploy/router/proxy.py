"""The router's Python data path: client connections, and one exchange per request.

Where the native data plane runs (:mod:`.native`), it serves the common request itself and hands
this path the connections it does not handle (:class:`~aicd.deploy.router.native.HandedConnection`),
with the bytes already read; without it, this path serves every request.

Everything runs in protocol callbacks of the event loop that owns the router: no task per request
and no thread. A client connection parses requests with httptools; each request becomes an
:class:`Exchange` that takes an idle keep-alive connection to the chosen backend (or opens one: the
only place a task is created), writes the request head and streams the body (re-chunked when the
client sent it chunked), then streams the backend's answer back as it arrives. Requests pipelined on
one connection are answered in order, one at a time.

Flow control both ways: when a socket's send buffer fills, the other side stops reading, so a large
body never piles up in memory. A body waiting for a backend connection is held up to
:data:`PENDING_LIMIT` bytes before the client is paused.

Retries. A request is tried again, on another backend of its revision or else of the stable one
(see :meth:`RouteTable.alternative`), when nothing of the answer has been sent to the client yet and

- the connection could not be made (refused, unreachable, connect timeout): nothing was sent; or
- the connection broke before any byte of the answer and the method is GET or HEAD; or
- it broke before any byte of the answer on a reused keep-alive connection within
  :data:`STALE_WINDOW` of the request's last byte going out: the backend closed the connection
  while it was idle, before reading the request (the race every HTTP client retries). This
  retries the same backend on a fresh connection, whatever the method. A backend that held a
  request longer before closing may have acted on it: a POST is then not sent again (502).

Idle pooled connections are closed after ``pool_idle_timeout`` (1 s by default, below the
keep-alive timeout of common servers: gunicorn 2 s, uvicorn and Node 5 s), which makes the race rare.

A body larger than :data:`REPLAY_LIMIT` is not kept, so such a request is not retried once some of
it was sent. After ``max_attempts`` tries the client gets 502 (504 if the last one timed out).

Request ids. Every request gets one (unless ``request_ids`` is off): an incoming ``X-Request-Id``
that is sane (1 to 128 characters of letters, digits and ``._:-@/+=``) is kept, anything else is
replaced by the router's own (a random prefix per router, then a counter). The backend receives it
and the client gets it back in the answer's ``X-Request-Id`` (the router's own answers too).

Experiments (:mod:`aicd.deploy.router.experiment`): while one runs, each request's variant comes
from ``X-Aicd-Variant`` (dropped before the backend), the experiment's key header or cookie, or the
table; the answer carries ``X-Aicd-Variant`` back.

``/_aicd/`` is the router's own: ``POST /_aicd/feedback`` takes labels for earlier requests
(:mod:`aicd.deploy.router.feedback`); these requests never reach a revision.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

import httptools

from aicd.deploy.router.backend import BackendConnection, release, take_idle
from aicd.deploy.router.experiment import VARIANT_HEADER, Experiment, Variant
from aicd.deploy.router.feedback import MAX_BODY as FEEDBACK_BODY
from aicd.deploy.router.feedback import FeedbackError
from aicd.deploy.router.http import (
    CHUNKED,
    CONTINUE,
    HOP_BY_HOP,
    IDEMPOTENT_RETRY,
    LAST_CHUNK,
    LENGTH,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    MAX_URL_BYTES,
    NO_BODY,
    PROMETHEUS_TYPE,
    UNTIL_CLOSE,
    chunk,
    connection_tokens,
    json_answer,
    local_answer,
    text_answer,
    without_named,
)
from aicd.deploy.router.metrics import CLIENT_CLOSED, MAX_CAPTURE, RouterMetrics
from aicd.deploy.router.mirror import Mirror
from aicd.deploy.router.table import Backend, RouteTable

log = logging.getLogger("aicd.deploy.router")

PENDING_LIMIT = 256 * 1024  # request body bytes held for a backend before the client is paused
REPLAY_LIMIT = 64 * 1024  # request body bytes kept to send again on a retry
STALE_WINDOW = 0.05  # seconds: a reused connection closing this soon after the request was idle-closed
PIPELINE_LIMIT = 16  # parsed requests waiting on one connection before it is paused
TICK = 0.1  # seconds between two checks of timeouts (response, idle client, idle pool connection)

LINGER_SECONDS = 2.0  # after refusing a request, read and drop what the client still sends, then close
LINGER_BYTES = 1024 * 1024  # ... or once this much was dropped
_HEAD_END = b"\r\n\r\n"

_perf = time.perf_counter
_monotonic = time.monotonic

# What a client request header means to the router (anything else passes through as is).
_H_CONNECTION, _H_TRANSFER, _H_EXPECT, _H_XFF, _H_XFP, _H_HOST, _H_HOP, _H_RID, _H_VARIANT = range(9)
_H_STICKY, _H_KEY = 9, 10  # the sticky header and the experiment's key header (per router)
_REQUEST_HEADERS = {
    b"x-request-id": _H_RID,
    VARIANT_HEADER: _H_VARIANT,
    b"connection": _H_CONNECTION,
    b"transfer-encoding": _H_TRANSFER,
    b"expect": _H_EXPECT,
    b"x-forwarded-for": _H_XFF,
    b"x-forwarded-proto": _H_XFP,
    b"host": _H_HOST,
}
for _name in HOP_BY_HOP:
    _REQUEST_HEADERS.setdefault(_name, _H_HOP)
_STATUS_LINES: dict[int, bytes] = {}
_CRLF = b"\r\n"
_SANE_ID = re.compile(rb"[0-9A-Za-z._:@/+=-]{1,128}").fullmatch
OWN_PREFIX = b"/_aicd/"  # the router's own routes
FEEDBACK_PATH = b"/_aicd/feedback"
METRICS_PATH = b"/_aicd/metrics"


@dataclass
class Settings:
    """Tunables of one router; the defaults suit a local environment."""

    connect_timeout: float = 3.0
    response_timeout: float = 30.0  # no byte either way on a backend exchange for this long: 504
    client_idle_timeout: float = 75.0  # an idle keep-alive client connection is closed after this
    pool_idle_timeout: float = 1.0  # idle backend connections are closed after this (below most servers')
    max_attempts: int = 3
    max_idle_per_backend: int = 512
    sticky_header: bytes | None = None  # lower-cased header name
    max_head_bytes: int = MAX_HEAD_BYTES  # request line + headers; more: 431
    max_headers: int = MAX_HEADERS  # header lines of one request; more: 431
    max_url_bytes: int = MAX_URL_BYTES  # the request target; longer: 414
    request_ids: bool = True  # give every request an X-Request-Id (kept when the client sent a sane one)


class ProxyCore:
    """What the connections share: the current table, the metrics, the settings, the live sockets.

    ``tick`` counts :data:`TICK` periods (the router's sweeper advances it): exchanges and idle
    connections note the tick of their last activity instead of reading the clock each time.
    """

    def __init__(self, settings: Settings, metrics: RouterMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.table = RouteTable([])
        self.loop: asyncio.AbstractEventLoop  # set by Router.start()
        self.clients: set[ClientConnection] = set()
        self.capture_path: bytes | None = metrics.field_count.path_bytes if metrics.field_count else None
        self.stopping = False
        self.tick = 0
        self.tasks: set[asyncio.Task[None]] = set()  # connections being opened (held: no early GC)
        self.mirror: Mirror | None = None  # shadow traffic to a candidate revision
        self.experiment: Experiment | None = None  # an A/B experiment: variants by user key
        self.max_headers = settings.max_headers
        self.header_kinds: dict[bytes, int] = {}  # lower-cased name -> what it means (_H_...)
        self.key_header = None  # the experiment's key header (b"cookie" for a cookie)
        self.request_ids = settings.request_ids
        self.id_prefix = os.urandom(4).hex().encode() + b"-"
        self.id_next = 0

    @property
    def key_header(self) -> bytes | None:
        return self._key_header

    @key_header.setter
    def key_header(self, name: bytes | None) -> None:
        self._key_header = name
        kinds = dict(_REQUEST_HEADERS)
        if self.settings.sticky_header is not None:
            kinds.setdefault(self.settings.sticky_header, _H_STICKY)
        if name is not None:
            kinds.setdefault(name, _H_KEY)
        self.header_kinds = kinds

    def new_request_id(self) -> bytes:
        self.id_next += 1
        return b"%s%x" % (self.id_prefix, self.id_next)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def give_back(self, conn: BackendConnection) -> None:
        """A connection no request needs now: to its backend's pool, or closed when stopping."""
        if self.stopping:
            conn.close()
        else:
            release(conn, self.tick, self.settings.max_idle_per_backend)


class Exchange:
    """One request: what the client sent, where it went, and how its answer is going back.

    Slots, not a dict: the data path reads and writes these fields dozens of times per request.
    """

    __slots__ = (
        "backend",
        "body_done",
        "body_sent",
        "capture",
        "capture_size",
        "chunked",
        "client",
        "client_keep_alive",
        "conn",
        "end_sent",
        "expect_continue",
        "finished",
        "forced",
        "framing",
        "has_host",
        "header_count",
        "headers",
        "key",
        "last_io",
        "method",
        "out",
        "own",
        "pending",
        "pending_size",
        "refusal",
        "replay",
        "replay_size",
        "request_id",
        "response_started",
        "revision",
        "sent_at",
        "started",
        "status",
        "sticky",
        "tokens",
        "tried",
        "upstream",
        "url",
        "variant",
        "version11",
        "xff",
    )

    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.headers: list[tuple[bytes, bytes]] = []
        self.out: list[bytes] = []  # answer bytes gathered during one read, written at once
        self.url = b""
        self.method = b""
        self.version11 = True
        self.client_keep_alive = True  # may the client connection serve another request after this one
        self.chunked = False  # the client sent the body chunked (it is re-chunked to the backend)
        self.has_host = False
        self.expect_continue = False
        self.xff: bytes | None = None
        self.sticky: bytes | None = None
        self.key: bytes | None = None  # the experiment's key header's value
        self.forced: bytes | None = None  # X-Aicd-Variant
        self.variant: Variant | None = None
        self.tokens: set[bytes] | None = None
        self.pending: list[bytes] | None = None  # body bytes not yet written to the backend
        self.pending_size = 0
        self.replay: list[bytes] | None = None  # the body so far, for a retry (None: none yet, or too big)
        self.replay_size = 0
        self.body_done = False
        self.body_sent = False
        self.end_sent = False
        self.started = 0.0
        self.sent_at = 0.0
        self.backend: Backend | None = None
        self.revision = ""
        self.conn: BackendConnection | None = None
        self.tried: tuple[Backend, ...] = ()
        self.response_started = False
        self.status = 0
        self.upstream = NO_BODY  # how the backend frames its answer: LENGTH, CHUNKED or UNTIL_CLOSE
        self.framing = NO_BODY  # how the router frames it to the client
        self.finished = False
        self.last_io = 0  # ProxyCore.tick of the last byte either way
        self.capture: list[bytes] | None = None
        self.capture_size = 0
        self.header_count = 0
        self.refusal: tuple[int, str] | None = None  # over a limit: answered by the router, never forwarded
        self.request_id = b""
        self.own = False  # for the router itself (/_aicd/...): answered here once its body is in

    def leave_backend(self) -> None:
        if self.backend is not None:
            self.backend.in_flight -= 1
            self.backend = None


class ClientConnection(asyncio.Protocol):
    """One client's connection: parses its requests and answers them in order."""

    __slots__ = (
        "active",
        "backend_blocked",
        "closed",
        "core",
        "dropped",
        "head_tail",
        "head_used",
        "idle_ticks",
        "in_head",
        "lingering",
        "parser",
        "parsing",
        "queue",
        "reading_paused",
        "touched",
        "transport",
        "write_blocked",
        "xff_line",
        "xff_peer",
    )

    def __init__(self, core: ProxyCore) -> None:
        self.core = core
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.parsing: Exchange | None = None
        self.active: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.closed = False
        self.reading_paused = False
        self.write_blocked = False
        self.backend_blocked = False
        self.touched = True
        self.idle_ticks = 0
        self.xff_peer = b""
        self.xff_line = b""
        self.in_head = True  # the next bytes belong to a request's head (not to a body)
        self.head_used = 0  # bytes of the current head seen so far
        self.head_tail = b""  # its last 3 bytes, when it ended mid-read (a CRLFCRLF may straddle reads)
        self.lingering = False  # a request was refused: what the client sends now is dropped
        self.dropped = 0

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: same methods, no isinstance
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.xff_peer = str(peer[0]).encode() if isinstance(peer, tuple) else b"unix"
        self.xff_line = b"X-Forwarded-For: " + self.xff_peer + b"\r\nX-Forwarded-Proto: http\r\n"
        self.core.clients.add(self)

    def data_received(self, data: bytes) -> None:
        self.touched = True
        if self.lingering:
            self.dropped += len(data)
            if self.dropped > LINGER_BYTES and self.transport is not None:
                self.transport.close()
            return
        if not self.in_head:
            if not self.feed(data):
                return
            if self.in_head:  # a pipelined head began in this read (so bounded by one read: 256 KiB)
                self.head_used = 0
        elif (
            not self.head_used
            and data.endswith(_HEAD_END)
            and len(data) <= self.core.settings.max_head_bytes
            and not self.head_tail
        ):
            # the common read: whole heads (and bodies), ending at a head's end or a body's; every
            # head in it is within the limit, as the read is; nothing of a head is left over
            if not self.feed(data):
                return
        elif not self.read_heads(data):
            return
        self.pump()

    def read_heads(self, data: bytes) -> bool:
        """Feed ``data`` head by head, refusing one that grows past ``max_head_bytes`` before the parser
        holds it (httptools would gather an endless header in memory). False: the connection is refused."""
        limit = self.core.settings.max_head_bytes
        total = len(data)
        view: memoryview | None = None
        start = 0
        while start < total:
            if not self.in_head:
                if view is None:
                    view = memoryview(data)
                if not self.feed(view[start:]):
                    return False
                if self.in_head:
                    self.head_used = 0
                return True
            end = -1
            tail = self.head_tail
            if tail:
                self.head_tail = b""
                found = (tail + data[:3]).find(_HEAD_END)
                if found >= 0:
                    end = found + 4 - len(tail)
            if end < 0:
                found = data.find(_HEAD_END, start)
                if found >= 0:
                    end = found + 4
            stop = end if end >= 0 else total
            if self.head_used + stop - start > limit:
                self.head_too_large(data, start)
                return False
            if start == 0 and stop == total:
                piece: bytes | memoryview = data
            else:
                if view is None:
                    view = memoryview(data)
                piece = view[start:stop]
            if end < 0:  # the head goes on in the next read
                self.head_used += stop - start
                self.head_tail = (tail + data)[-3:]
                return self.feed(piece)
            self.head_used = 0
            if not self.feed(piece):
                return False
            start = stop
        return True

    def feed(self, data: bytes | memoryview) -> bool:
        """Give bytes to the parser; False when the connection was refused (answered and closing)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.refuse(501, "protocol upgrades (WebSocket, CONNECT) are not supported by the router")
            return False
        except httptools.HttpParserError as exc:
            if isinstance(exc, httptools.HttpParserCallbackError):
                log.error("router: internal error while parsing a request", exc_info=exc)
            self.refuse(400, "malformed HTTP request")
            return False
        return True

    def head_too_large(self, data: bytes, start: int) -> None:
        """The head being read passes ``max_head_bytes``: refuse it (414 when its URL is the cause)."""
        limit = self.core.settings.max_head_bytes
        room = limit - self.head_used
        # the parser reads up to the limit, so that a URL or a header count over its own limit is named
        if room > 0 and not self.feed(memoryview(data)[start : start + room]):
            return
        ex = self.parsing
        if ex is None or ex in self.queue:
            ex = Exchange(self)
        self.parsing = None
        if ex.refusal is None:
            ex.refusal = (431, f"request head larger than {limit} bytes (request line and headers)")
        self.refused(ex)
        self.pump()

    def refused(self, ex: Exchange) -> None:
        """``ex`` is over a limit: queue it for its answer; nothing more is read from this client."""
        ex.client_keep_alive = False
        ex.body_done = True
        self.queue.append(ex)
        self.lingering = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.core.clients.discard(self)
        self.queue.clear()
        ex = self.active
        self.active = None
        if ex is not None and not ex.finished:
            ex.finished = True
            conn = ex.conn
            if conn is not None:
                ex.conn = None
                conn.close()  # its answer would be half read: never reuse it
            if ex.revision:
                self.core.metrics.record(ex.revision, CLIENT_CLOSED, 0.0)
            ex.leave_backend()

    def pause_writing(self) -> None:
        self.write_blocked = True
        ex = self.active
        if ex is not None and ex.conn is not None:
            ex.conn.set_reading(False)

    def resume_writing(self) -> None:
        self.write_blocked = False
        ex = self.active
        if ex is not None and ex.conn is not None:
            ex.conn.set_reading(True)

    # -- httptools callbacks (requests) ---------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        # a request's first callback (the URL comes first, and may come in pieces): no
        # on_message_begin, one Python call less per request
        ex = self.parsing
        if ex is None:
            ex = self.parsing = Exchange(self)
            ex.url = url
        elif ex.refusal is not None:
            return
        else:
            ex.url += url
        if len(ex.url) > self.core.settings.max_url_bytes:
            ex.url = b""
            ex.refusal = (414, f"request URL longer than {self.core.settings.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        count = ex.header_count = ex.header_count + 1
        core = self.core
        if count > core.max_headers or ex.refusal is not None:
            if ex.refusal is None:
                ex.refusal = (431, f"more than {core.max_headers} request headers")
                ex.headers = []
            return
        kind = core.header_kinds.get(name.lower())
        if kind is None:
            ex.headers.append((name, value))
        elif kind == _H_STICKY:
            ex.sticky = value
            ex.headers.append((name, value))
        elif kind == _H_KEY:
            ex.key = value if ex.key is None else ex.key + b"; " + value
            ex.headers.append((name, value))
        elif kind == _H_HOST:
            ex.has_host = True
            ex.headers.append((name, value))
        elif kind == _H_RID:
            if _SANE_ID(value) is not None:
                ex.request_id = value
        elif kind == _H_XFF:
            ex.xff = value if ex.xff is None else ex.xff + b", " + value
        elif kind == _H_CONNECTION:
            ex.tokens = connection_tokens(value)
        elif kind == _H_TRANSFER:
            ex.chunked = b"chunked" in value.lower()
        elif kind == _H_EXPECT:
            ex.expect_continue = value.strip().lower() == b"100-continue"
        elif kind == _H_VARIANT:
            ex.forced = value
        # X-Forwarded-Proto (the router sets its own) and hop-by-hop headers are dropped

    def on_headers_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        self.in_head = False
        if ex.refusal is not None:
            self.refused(ex)
            return
        parser = self.parser
        ex.started = _perf()
        ex.method = parser.get_method()
        # a keep-alive request without a Connection header is HTTP/1.1 (llhttp: 1.0 needs
        # "Connection: keep-alive"); only others pay for get_http_version (it formats a str)
        if not parser.should_keep_alive():
            ex.client_keep_alive = False
            if parser.get_http_version() != "1.1":
                ex.version11 = False
        elif ex.tokens is not None and parser.get_http_version() != "1.1":
            ex.version11 = False
        if ex.tokens:
            ex.headers = without_named(ex.headers, ex.tokens)
        if ex.chunked:
            ex.headers = [(n, v) for n, v in ex.headers if n.lower() != b"content-length"]
        if not ex.request_id and self.core.request_ids:
            core = self.core  # new_request_id(), inline
            core.id_next += 1
            ex.request_id = b"%s%x" % (core.id_prefix, core.id_next)
        if ex.url.startswith(OWN_PREFIX):
            ex.own = True
        self.queue.append(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        if ex.own:  # kept whole for the router's own answer; past the limit, dropped (413)
            if ex.pending_size <= FEEDBACK_BODY:
                ex.pending = [*(ex.pending or ()), body]
            ex.pending_size += len(body)
            if ex.pending_size > FEEDBACK_BODY:
                ex.pending = None
            return
        if ex.pending is None:
            ex.pending = [body]
        else:
            ex.pending.append(body)
        ex.pending_size += len(body)
        size = ex.replay_size = ex.replay_size + len(body)
        if size <= REPLAY_LIMIT:
            if ex.replay is None:
                ex.replay = [body]
            else:
                ex.replay.append(body)
        else:
            ex.replay = None

    def on_message_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        ex.body_done = True
        self.parsing = None
        self.in_head = True

    # -- request side -------------------------------------------------------------------------

    def pump(self) -> None:
        """Start the next request if none is in progress; send what body has arrived."""
        while self.active is None and self.queue and not self.closed:
            upcoming = self.queue.popleft()
            self.active = upcoming
            self.start(upcoming)
        ex = self.active
        if ex is not None and ex.conn is not None and (ex.pending or (ex.body_done and not ex.end_sent)):
            self.send_body(ex)
        elif ex is not None and ex.own and ex.body_done:
            self.answer_own(ex)
        if self.reading_paused or self.queue or self.parsing is not None:
            self.update_reading()

    def start(self, ex: Exchange) -> None:
        if ex.refusal is not None:  # over a limit: not routed, not counted for any revision
            self.core.metrics.refused += 1
            self.answer_locally(ex, *ex.refusal, proxy_error=False)
            return
        if ex.expect_continue and not ex.body_done and ex.version11 and self.transport is not None:
            self.transport.write(CONTINUE)
        if ex.own:
            if ex.body_done:
                self.answer_own(ex)
            return
        experiment = self.core.experiment
        if experiment is None:
            backend = self.core.table.pick(ex.sticky)
        else:
            key = None if ex.key is None else experiment.key_in(ex.key)
            backend, ex.variant = experiment.pick(self.core.table, key, ex.forced)
            if ex.variant is not None and ex.request_id:
                experiment.remember(ex.request_id, ex.variant)
        if backend is None:
            self.core.metrics.unrouted += 1
            self.answer_locally(ex, 503, "no revision of this environment takes traffic", proxy_error=False)
            return
        self.use_backend(ex, backend)

    def use_backend(self, ex: Exchange, backend: Backend) -> None:
        ex.backend = backend
        ex.revision = backend.revision
        ex.tried += (backend,)
        backend.in_flight += 1
        idle = backend.idle
        if idle:  # the most recent idle connection, if still open (take_idle's common case, inline)
            conn = idle[-1]
            transport = conn.transport
            if not conn.closed and transport is not None and not transport.is_closing():
                idle.pop()
                self.attach(ex, conn)
                return
        found = take_idle(backend)
        if found is not None:
            self.attach(ex, found)
        else:
            self.core.spawn(self.connect(ex, backend))

    async def connect(self, ex: Exchange, backend: Backend) -> None:
        core = self.core
        try:
            async with asyncio.timeout(core.settings.connect_timeout):
                _, conn = await core.loop.create_connection(
                    lambda: BackendConnection(backend), backend.host, backend.port
                )
        except TimeoutError:
            self.connect_failed(ex, backend, timed_out=True)
            return
        except OSError:
            self.connect_failed(ex, backend, timed_out=False)
            return
        if ex.finished or ex.backend is not backend:
            core.give_back(conn)
            return
        self.attach(ex, conn)
        self.update_reading()

    def attach(self, ex: Exchange, conn: BackendConnection) -> None:
        ex.conn = conn
        conn.exchange = ex
        if self.write_blocked:
            conn.set_reading(False)
        lines = [ex.method, b" ", ex.url, b" HTTP/1.1\r\n"]
        for name, value in ex.headers:
            lines += (name, b": ", value, b"\r\n")
        if ex.xff is None:
            lines.append(self.xff_line)
        else:
            lines += (b"X-Forwarded-For: ", ex.xff, b", ", self.xff_peer, b"\r\nX-Forwarded-Proto: http\r\n")
        if not ex.has_host:
            lines += (b"Host: ", conn.backend.address.encode(), b"\r\n")
        if ex.request_id:
            lines += (b"X-Request-Id: ", ex.request_id, b"\r\n")
        if ex.chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        lines.append(b"\r\n")
        if ex.pending is not None or ex.body_done:
            self.body_into(ex, lines)
        assert conn.transport is not None
        conn.transport.write(b"".join(lines))
        ex.last_io = self.core.tick
        ex.sent_at = _monotonic()

    def body_into(self, ex: Exchange, out: list[bytes]) -> None:
        pending = ex.pending
        if pending:
            ex.body_sent = True
            if ex.chunked:
                out += [chunk(part) for part in pending]
            else:
                out += pending
            ex.pending = None
            ex.pending_size = 0
        if ex.body_done and not ex.end_sent:
            ex.end_sent = True
            if ex.chunked:
                out.append(LAST_CHUNK)

    def send_body(self, ex: Exchange) -> None:
        out: list[bytes] = []
        self.body_into(ex, out)
        conn = ex.conn
        if out and conn is not None and conn.transport is not None and not conn.closed:
            conn.transport.write(b"".join(out))
            ex.last_io = self.core.tick
            ex.sent_at = _monotonic()

    def update_reading(self) -> None:
        if self.transport is None or self.closed:
            return
        parsing = self.parsing
        pause = (
            self.backend_blocked
            or len(self.queue) >= PIPELINE_LIMIT
            or (parsing is not None and parsing.pending_size > PENDING_LIMIT and not parsing.own)
        )
        if pause != self.reading_paused:
            self.reading_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def set_backend_blocked(self, blocked: bool) -> None:
        self.backend_blocked = blocked
        self.update_reading()

    # -- response side (called by BackendConnection) ------------------------------------------

    def response_head(
        self,
        ex: Exchange,
        conn: BackendConnection,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        upstream: int,
    ) -> None:
        ex.response_started = True
        ex.status = status
        ex.upstream = upstream
        if ex.method == b"HEAD" or status == 204 or status == 304:
            framing = NO_BODY
        elif upstream == LENGTH:
            framing = LENGTH
        else:
            framing = CHUNKED if ex.version11 else UNTIL_CLOSE
        ex.framing = framing
        keep = ex.client_keep_alive and framing != UNTIL_CLOSE and ex.body_done and not self.core.stopping
        ex.client_keep_alive = keep
        first = _STATUS_LINES.get(status)
        if first is None:
            first = _STATUS_LINES[status] = b"HTTP/1.1 %d " % status
        lines = [first, reason, _CRLF]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        if ex.request_id:
            lines += (b"X-Request-Id: ", ex.request_id, b"\r\n")
        variant = ex.variant
        if variant is not None:
            experiment = self.core.experiment
            if experiment is not None:
                if variant.revision != ex.revision:  # retried on another revision
                    variant = ex.variant = experiment.by_revision.get(ex.revision)
                if experiment.metric_header is not None:
                    experiment.record_metric(ex.revision, headers)
            if variant is not None:
                lines += (b"X-Aicd-Variant: ", variant.name.encode(), b"\r\n")
        if framing == CHUNKED:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        if not keep:
            lines.append(b"Connection: close\r\n")
        elif not ex.version11:
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        ex.out.append(b"".join(lines))
        capture_path = self.core.capture_path
        if capture_path is not None and 200 <= status < 300 and ex.url.split(b"?", 1)[0] == capture_path:
            ex.capture = []
        ex.last_io = self.core.tick
        if ex.method == b"HEAD":  # httptools would wait for a body that never comes: end here
            self.response_end(ex, conn, False)

    def response_body(self, ex: Exchange, body: bytes) -> None:
        out = ex.out
        if ex.framing == CHUNKED:
            out.append(b"%x\r\n" % len(body))
            out.append(body)
            out.append(b"\r\n")
        else:
            out.append(body)
        capture = ex.capture
        if capture is not None:
            ex.capture_size += len(body)
            if ex.capture_size <= MAX_CAPTURE:
                capture.append(body)
            else:
                ex.capture = None
        ex.last_io = self.core.tick

    def response_end(self, ex: Exchange, conn: BackendConnection, backend_keep_alive: bool) -> None:
        if ex.finished:
            return
        out = ex.out
        if ex.framing == CHUNKED:
            out.append(LAST_CHUNK)
        if out:
            ex.out = []
            if self.transport is not None and not self.closed:
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        ex.conn = None
        core = self.core
        if backend_keep_alive and ex.end_sent and ex.method != b"HEAD" and not core.stopping:
            release(conn, core.tick, core.settings.max_idle_per_backend)
        else:
            conn.close()
        self.finish(ex, ex.status, False)

    def backend_lost(self, ex: Exchange, conn: BackendConnection) -> None:
        """The backend connection closed while serving ``ex``."""
        if ex.finished:
            return
        ex.conn = None
        conn.exchange = None
        if ex.response_started:
            if ex.upstream == UNTIL_CLOSE:  # a close-delimited answer: the close is its end
                self.response_end(ex, conn, False)
                return
            self.flush(ex)
            self.abort_client(ex, 502)
            return
        message = f"backend {conn.backend.address} closed the connection without answering"
        self.retry_or_fail(ex, conn, message)

    def backend_failed(self, ex: Exchange, conn: BackendConnection, message: str) -> None:
        """The backend sent something that is not HTTP."""
        if ex.finished:
            return
        ex.conn = None
        conn.exchange = None
        if ex.response_started:
            self.flush(ex)
            self.abort_client(ex, 502)
        else:
            self.fail(ex, 502, message)

    def retry_or_fail(self, ex: Exchange, conn: BackendConnection, message: str) -> None:
        failed = conn.backend
        stale = conn.reused and _monotonic() - ex.sent_at <= STALE_WINDOW
        replayable = ex.replay is not None or not ex.body_sent
        if replayable and len(ex.tried) < self.core.settings.max_attempts:
            if stale and failed.active:
                self.retry(ex, failed)
                return
            if ex.method in IDEMPOTENT_RETRY or stale:
                target = self.core.table.alternative(failed, ex.tried)
                if target is not None or failed.active:
                    self.retry(ex, target or failed)
                    return
        self.fail(ex, 502, message)

    def connect_failed(self, ex: Exchange, backend: Backend, timed_out: bool) -> None:
        if ex.finished or ex.backend is not backend:
            return
        if len(ex.tried) < self.core.settings.max_attempts:
            target = self.core.table.alternative(backend, ex.tried)
            if target is not None:
                self.retry(ex, target)
                return
        status = 504 if timed_out else 502
        what = "timed out" if timed_out else "was refused"
        self.fail(ex, status, f"connecting to backend {backend.address} {what}")

    def retry(self, ex: Exchange, target: Backend) -> None:
        self.core.metrics.record_retry(ex.revision)
        ex.leave_backend()
        if ex.body_sent:
            ex.pending = list(ex.replay or ())
            ex.pending_size = ex.replay_size
            ex.body_sent = False
        ex.end_sent = False
        self.use_backend(ex, target)

    def check_timeout(self, ex: Exchange) -> None:
        """Called by the router's sweeper for the exchange in progress on this connection."""
        core = self.core
        limit = core.settings.response_timeout
        if ex.finished or ex.conn is None or (core.tick - ex.last_io) * TICK < limit:
            return
        conn = ex.conn
        ex.conn = None
        conn.close()
        if ex.response_started:
            self.flush(ex)
            self.abort_client(ex, 504)
        else:
            self.fail(ex, 504, f"backend {conn.backend.address} did not answer within {limit:g}s")

    # -- endings ------------------------------------------------------------------------------

    def flush(self, ex: Exchange) -> None:
        out = ex.out
        if out:
            ex.out = []
            if self.transport is not None and not self.closed:
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def fail(self, ex: Exchange, status: int, message: str) -> None:
        self.answer_locally(ex, status, message, proxy_error=True)

    def answer_locally(self, ex: Exchange, status: int, message: str, proxy_error: bool) -> None:
        keep = ex.client_keep_alive and ex.body_done and not self.core.stopping
        ex.client_keep_alive = keep
        if self.transport is not None and not self.closed:
            self.transport.write(local_answer(status, message, keep, ex.request_id))
        self.finish(ex, status, proxy_error)

    def answer_own(self, ex: Exchange) -> None:
        """A request for the router itself (``/_aicd/...``), its body read: answer it here."""
        path = ex.url.split(b"?", 1)[0]
        metrics = self.core.metrics
        doc: dict[str, object]
        if path == METRICS_PATH and ex.method == b"GET":
            keep = ex.client_keep_alive and not self.core.stopping
            ex.client_keep_alive = keep
            if self.transport is not None and not self.closed:
                self.transport.write(
                    text_answer(200, metrics.prometheus(), PROMETHEUS_TYPE, keep, ex.request_id)
                )
            self.finish(ex, 200, proxy_error=False)
            return
        if path != FEEDBACK_PATH:
            status, doc = 404, {"error": f"no such route of the router: {path.decode('latin-1')}"}
        elif ex.method != b"POST":
            status, doc = 405, {"error": "POST labels to /_aicd/feedback"}
        elif ex.pending_size > FEEDBACK_BODY:
            status, doc = (
                413,
                {"error": f"the body is larger than {FEEDBACK_BODY} bytes; send smaller batches"},
            )
        else:
            if metrics.sync is not None:
                metrics.sync()  # answers the native plane served are joinable before their labels
            try:
                outcome = metrics.feedback.receive(b"".join(ex.pending or ()))
            except FeedbackError as exc:
                status, doc = 400, {"error": str(exc)}
            else:
                status, doc = 200, {**outcome}
        ex.pending = None
        if status != 200:
            doc["source"] = "aicd-router"
        metrics.feedback_requests += 1
        keep = ex.client_keep_alive and not self.core.stopping
        ex.client_keep_alive = keep
        if self.transport is not None and not self.closed:
            self.transport.write(json_answer(status, doc, keep, ex.request_id))
        self.finish(ex, status, proxy_error=False)

    def abort_client(self, ex: Exchange, status: int) -> None:
        """The answer broke after its head was sent: the client must see the connection drop."""
        ex.client_keep_alive = False
        self.finish(ex, status, proxy_error=True)
        if self.transport is not None:
            self.transport.abort()

    def finish(self, ex: Exchange, status: int, proxy_error: bool) -> None:
        ex.finished = True
        backend = ex.backend
        if backend is not None:
            backend.in_flight -= 1
            ex.backend = None
        if ex.revision:
            metrics = self.core.metrics
            metrics.record(ex.revision, status, (_perf() - ex.started) * 1000.0, proxy_error)
            value = None
            if ex.capture is not None:
                value = metrics.record_body(ex.revision, b"".join(ex.capture), ex.request_id)
            mirror = self.core.mirror
            if mirror is not None and not proxy_error and ex.method in mirror.methods:
                self.mirror(mirror, ex, value)
        if self.active is ex:
            self.active = None
        if self.backend_blocked:
            self.backend_blocked = False
        if not ex.client_keep_alive:
            self.close()
        elif self.queue:
            self.core.loop.call_soon(self.pump)
        elif self.reading_paused:
            self.update_reading()

    def mirror(self, mirror: Mirror, ex: Exchange, value: object) -> None:
        """A copy of the finished request for the shadow revision (queued; never waits)."""
        if ex.revision == mirror.revision:
            return
        if ex.replay is not None:
            body: bytes | None = b"".join(ex.replay)
        else:
            body = b"" if ex.replay_size == 0 else None  # None: too large to have been kept
        mirror.offer(ex.method, ex.url, ex.headers, body, ex.request_id, value)

    def refuse(self, status: int, message: str) -> None:
        """A request the router cannot parse or serve: answer and close."""
        self.core.metrics.refused += 1
        if self.transport is not None and not self.closed and self.active is None:
            self.transport.write(local_answer(status, message, False))
        self.lingering = True
        self.close()

    def close(self) -> None:
        transport = self.transport
        if transport is not None and not self.closed:
            self.closed = True
            if self.lingering and transport.can_write_eof():
                # after a refusal, as nginx's lingering close: the answer goes out, then an EOF, and
                # what the client still sends is read and dropped for a while (closing with unread
                # bytes would reset the connection, and the client might lose the answer)
                transport.write_eof()
                if self.reading_paused:
                    self.reading_paused = False
                    transport.resume_reading()
                self.core.loop.call_later(LINGER_SECONDS, transport.close)
            else:
                transport.close()
