"""HTTP/1.1 bytes the router writes itself: hop-by-hop header names, framing, its own answers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus

from aicd.errors import ConfigError

# Headers that describe one connection, not the message (RFC 9110 7.6.1): never forwarded.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)

# Limits on a request's head, as HAProxy (tune.bufsize 16 KiB, 101 headers) and nginx
# (large_client_header_buffers 4 x 8 KiB) have them, a little more generous. A request over a
# limit is answered by the router (431 or 414) and its connection closed: never forwarded.
MAX_HEAD_BYTES = 64 * 1024  # request line + headers
MAX_HEADERS = 100
MAX_URL_BYTES = 8 * 1024  # the request target
LIMITS = {  # environments.<env>.router_limits keys: default, lowest, highest
    "max_head_bytes": (MAX_HEAD_BYTES, 1024, 16 * 1024 * 1024),
    "max_headers": (MAX_HEADERS, 1, 10_000),
    "max_url_bytes": (MAX_URL_BYTES, 256, 16 * 1024 * 1024),
}


def check_limits(limits: Mapping[str, object], where: str = "router") -> dict[str, int]:
    """The head limits named in ``limits`` (keys of :data:`LIMITS`), checked; ConfigError otherwise."""
    checked: dict[str, int] = {}
    for key, value in limits.items():
        if key not in LIMITS:
            raise ConfigError(f"{where}: unknown limit {key!r}; known: {', '.join(LIMITS)}")
        _, low, high = LIMITS[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(f"{where}.{key} must be a whole number from {low} to {high} (is {value!r})")
        checked[key] = value
    return checked


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
IDEMPOTENT_RETRY = frozenset({b"GET", b"HEAD"})

# How a response body reaches the client.
NO_BODY = 0  # HEAD, 204, 304
LENGTH = 1  # Content-Length passed through
CHUNKED = 2  # re-chunked by the router (the backend sent chunked or close-delimited)
UNTIL_CLOSE = 3  # HTTP/1.0 client and no length: raw bytes, then the connection closes


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-cased tokens of a Connection header value."""
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


def without_named(headers: list[tuple[bytes, bytes]], tokens: set[bytes]) -> list[tuple[bytes, bytes]]:
    """``headers`` minus those a Connection header named (they are hop-by-hop too)."""
    names = tokens - {b"close", b"keep-alive"}
    if not names:
        return headers
    return [(n, v) for n, v in headers if n.lower() not in names]


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def reason_of(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("latin-1")
    except ValueError:
        return b"Unknown"


def local_answer(status: int, message: str, keep_alive: bool, request_id: bytes = b"") -> bytes:
    """A complete JSON answer made by the router itself (502, 503, 504, 400...)."""
    return json_answer(status, {"error": message, "source": "aicd-router"}, keep_alive, request_id)


PROMETHEUS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def json_answer(status: int, doc: object, keep_alive: bool, request_id: bytes = b"") -> bytes:
    """A complete answer of the router with ``doc`` as its JSON body."""
    return text_answer(status, json.dumps(doc).encode(), b"application/json", keep_alive, request_id)


def text_answer(status: int, body: bytes, ctype: bytes, keep_alive: bool, request_id: bytes = b"") -> bytes:
    """A complete answer of the router with ``body`` of type ``ctype``."""
    connection = b"keep-alive" if keep_alive else b"close"
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, reason_of(status)),
            b"Content-Type: %s\r\n" % ctype,
            b"Content-Length: %d\r\n" % len(body),
            b"X-Request-Id: %s\r\n" % request_id if request_id else b"",
            b"Connection: %s\r\n\r\n" % connection,
            body,
        ]
    )
