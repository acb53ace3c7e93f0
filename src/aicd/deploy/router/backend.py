"""One keep-alive connection from the router to a backend, and the per-backend idle pool.

The connection parses responses with httptools and hands each piece straight to the exchange it is
serving (no task, no queue): head, body chunks, end. Between exchanges it waits in its backend's
idle list; a connection the backend closes while idle leaves the list by itself.
"""

from __future__ import annotations

import asyncio
import logging
import select
from typing import TYPE_CHECKING, cast

import httptools

from aicd.deploy.router.http import (
    CHUNKED,
    HOP_BY_HOP,
    LENGTH,
    UNTIL_CLOSE,
    connection_tokens,
    without_named,
)

if TYPE_CHECKING:
    from aicd.deploy.router.proxy import Exchange
    from aicd.deploy.router.table import Backend

log = logging.getLogger("aicd.deploy.router")

_LENGTH = b"content-length"
_TRANSFER = b"transfer-encoding"
_CONNECTION = b"connection"
_REQUEST_ID = b"x-request-id"
# what a response header means to the router: 0 hop-by-hop, 1 the length, 2 the request id; others pass
_RESPONSE_HEADERS = {**dict.fromkeys(HOP_BY_HOP, 0), _LENGTH: 1, _REQUEST_ID: 2}


class BackendConnection(asyncio.Protocol):
    """A connection to one backend; ``exchange`` is the request it is serving, None when idle."""

    __slots__ = (
        "backend",
        "chunked",
        "closed",
        "exchange",
        "fd",
        "has_length",
        "headers",
        "idle_since",
        "interim",
        "parser",
        "reading_paused",
        "reason",
        "reused",
        "tokens",
        "transport",
    )

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.fd = -1  # the socket's descriptor, to see a close that arrived while it was idle
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.reused = False  # it served an exchange before: a failure may be a stale keep-alive
        self.closed = False
        self.reading_paused = False
        self.idle_since = 0  # ProxyCore.tick when it went back to the pool
        self.interim = False
        self._reset_head()

    def _reset_head(self) -> None:
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.has_length = False
        self.chunked = False
        self.tokens: set[bytes] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: same methods, no isinstance
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for: the connection is out of step
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc, httptools.HttpParserCallbackError):
                log.error("router: internal error while relaying a response", exc_info=exc)
            if self.exchange is exchange:
                exchange.client.backend_failed(exchange, self, "invalid HTTP response from the backend")
            self.close()
            return
        if exchange.out:
            exchange.client.flush(exchange)

    def eof_received(self) -> bool | None:
        return None  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        idle = self.backend.idle
        if self in idle:
            idle.remove(self)
        exchange = self.exchange
        if exchange is not None:
            exchange.client.backend_lost(exchange, self)

    def pause_writing(self) -> None:  # the backend reads the request body slower than it comes
        if self.exchange is not None:
            self.exchange.client.set_backend_blocked(True)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.set_backend_blocked(False)

    # -- httptools callbacks --------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        kind = _RESPONSE_HEADERS.get(lname)
        if kind is None:
            self.headers.append((name, value))
        elif kind == 0:  # hop-by-hop
            if lname == _TRANSFER:
                self.chunked = b"chunked" in value.lower()
            elif lname == _CONNECTION:
                self.tokens = connection_tokens(value)
        elif kind == 1:
            self.has_length = True
            self.headers.append((name, value))
        elif self.exchange is None or not self.exchange.request_id:  # else the router sends its own
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the router answers 100 itself
            self.interim = True
            self._reset_head()
            return
        headers = self.headers
        if self.tokens:
            headers = without_named(headers, self.tokens)
        if self.chunked:
            upstream = CHUNKED
            if self.has_length:
                headers = [(n, v) for n, v in headers if n.lower() != _LENGTH]
        else:
            upstream = LENGTH if self.has_length else UNTIL_CLOSE
        reason = self.reason
        self.reason = b""  # _reset_head(), inline
        self.headers = []
        self.has_length = False
        self.chunked = False
        self.tokens = None
        exchange = self.exchange
        if exchange is not None:
            exchange.client.response_head(exchange, self, status, reason, headers, upstream)

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.client.response_body(exchange, body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        exchange = self.exchange
        if exchange is not None:
            exchange.client.response_end(exchange, self, self.parser.should_keep_alive())

    # -- pool ---------------------------------------------------------------------------------

    def set_reading(self, on: bool) -> None:
        if self.transport is None or self.closed or self.reading_paused != on:
            return
        self.reading_paused = not on
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def close(self) -> None:
        self.exchange = None
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        idle = self.backend.idle
        if self in idle:
            idle.remove(self)


_GONE = select.POLLIN | select.POLLERR | select.POLLHUP | getattr(select, "POLLRDHUP", 0)


def _peer_gone(conn: BackendConnection) -> bool:
    """An idle connection has something to read (the backend's close, or bytes nobody asked for).

    The event loop may not have seen it yet when it is busy: a request sent now would meet the
    close and, past the stale window, fail (a POST is not sent again). One poll with no wait."""
    if conn.fd < 0:
        return False
    poller = select.poll()
    poller.register(conn.fd, _GONE)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


def take_idle(backend: Backend) -> BackendConnection | None:
    """The most recently used idle connection of ``backend`` still open, or None."""
    idle = backend.idle
    while idle:
        conn = idle.pop()
        if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
            if not _peer_gone(conn):
                return conn
            conn.close()
    return None


def release(conn: BackendConnection, tick: int, max_idle: int) -> None:
    """Back to the pool if it can serve another request, else closed."""
    conn.exchange = None
    backend = conn.backend
    if conn.closed or not backend.active or len(backend.idle) >= max_idle:
        conn.close()
        return
    if conn.reading_paused:
        conn.set_reading(True)
    conn.reused = True
    conn.idle_since = tick
    backend.idle.append(conn)
