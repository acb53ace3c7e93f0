"""One gate for text no database can hold: a NUL character (or a lone surrogate) anywhere in a
request's path, query, headers or JSON body is refused with 422 before any route sees it; and a
body read whole (not an upload) is refused with 413 beyond MAX_JSON_BODY_BYTES.

PostgreSQL refuses NUL in text (and SQLite ends C strings there), so without this gate such
input reached the store and came back as a 503 naming the database. Webhook bodies are not
read here: their route caps and signs them first, and checks what it takes from them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A cheap look for what may decode to NUL or a surrogate; the exact check parses the JSON.
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HOOKS = re.compile(r"^/api/v1/projects/[^/]+/hooks/[^/]+/?$")
# The largest request body read whole (the largest legitimate one, 200 pipeline variables of
# 100,000 characters, is 20 MB): FastAPI reads it before any route checks the caller, so it is
# bounded here. Uploads (application/octet-stream, multipart) are streamed by their routes.
MAX_JSON_BODY_BYTES = 32 * 1024 * 1024


def _bad_text(value: object) -> str | None:
    """Where a decoded JSON value holds a NUL or a lone surrogate in a key or a string
    ("body.variables.0.value"), or None."""
    stack: list[tuple[object, str]] = [(value, "body")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _bad(item):
                return where
        elif isinstance(item, dict):
            for key, inner in item.items():
                if _bad(key):
                    return f"{where} (a key)"
                stack.append((inner, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((inner, f"{where}.{index}") for index, inner in enumerate(item))
    return None


def _bad(text: str) -> bool:
    return "\x00" in text or _has_surrogate(text)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _content_type(scope: Scope) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return bytes(value).split(b";")[0].strip().lower()
    return b""  # FastAPI reads a body without a type as JSON


def _streamed(content_type: bytes) -> bool:
    """Bodies that routes stream themselves, after checking the caller (uploads of artifacts)."""
    return content_type == b"application/octet-stream" or content_type.startswith(b"multipart/")


class RejectBadText:
    """ASGI middleware: 422 {"error": ...} for a NUL (or lone surrogate) in the request's text."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = self._where_in_head(scope)
        if where is not None:
            await _refuse(send, where)
            return
        path = str(scope.get("path", ""))
        content_type = _content_type(scope)
        if scope.get("method") in _BODY_METHODS and not _streamed(content_type) and not _HOOKS.match(path):
            # FastAPI reads such a body whole before a route's dependencies check the caller.
            if _declared_size(scope) > MAX_JSON_BODY_BYTES:
                await _too_large(send)
                return
            try:
                body, more = await _read_all(receive)
            except _TooLarge:
                await _too_large(send)
                return
            is_json = content_type in (b"", b"application/json") or content_type.endswith(b"+json")
            where = _json_bad_text(body) if is_json and _SUSPECT.search(body) else None
            if where is not None:
                await _refuse(send, where)
                return
            receive = _replay(body, more, receive)
        await self.app(scope, receive, send)

    @staticmethod
    def _where_in_head(scope: Scope) -> str | None:
        path = str(scope.get("path", ""))
        if "\x00" in path or _has_surrogate(path):
            return "the URL's path"
        query = scope.get("query_string", b"")
        if b"\x00" in unquote_to_bytes(query):
            for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if "\x00" in name + value:
                    return f"query parameter {name.replace(chr(0), '')[:50]!r}"
            return "the URL's query"
        for _name, value in scope.get("headers", ()):
            if b"\x00" in value:
                return "a header"
        return None


def _json_bad_text(body: bytes) -> str | None:
    try:
        return _bad_text(json.loads(body))
    except (ValueError, RecursionError):
        return None  # not JSON: the route's own validation answers


class _TooLarge(Exception):
    pass


def _declared_size(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.strip().isdigit():
            return int(value)
    return 0


async def _read_all(receive: Receive) -> tuple[bytes, bool]:
    """The whole body (at most MAX_JSON_BODY_BYTES: _TooLarge); `more` False if the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_JSON_BODY_BYTES:
            raise _TooLarge
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, connected: bool, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if connected:
                return {"type": "http.request", "body": body, "more_body": False}
        if not connected:
            return {"type": "http.disconnect"}
        return await receive()

    return replay


async def _too_large(send: Send) -> None:
    await _answer(send, 413, f"request body larger than {MAX_JSON_BODY_BYTES} bytes")


async def _refuse(send: Send, where: str) -> None:
    message = f"{where}: a NUL character or an unpaired surrogate, which no text field accepts: remove it"
    await _answer(send, 422, message)


async def _answer(send: Send, status: int, message: str) -> None:
    payload = json.dumps({"error": message}, separators=(",", ":")).encode()  # as FastAPI writes it
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
