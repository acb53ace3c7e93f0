"""The router's native data plane: its parser's verdicts, what it hands to Python, and that both
paths send the same bytes both ways (a real router, a raw recording backend on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import random
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httptools
import pytest
from router_servers import read_response, serve_in_thread

from aicd.deploy.router import loop as event_loop
from aicd.deploy.router import native
from aicd.deploy.router.router import Router

_native = native.available()
pytestmark = pytest.mark.skipif(_native is None, reason="the router's native plane was not built")

SMUGGLING = [
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: x\r\n Folded: header\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n",
    b"GET /echo HTTP/1.1\nHost: x\n\n",
    b"GET /echo HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
    b"GET /echo HTTP/1.0\r\nHost: x\r\n\r\n",
    b"GET /_aicd/metrics HTTP/1.1\r\n\r\n",
]


@pytest.mark.parametrize("head", SMUGGLING)
def test_the_native_parser_hands_ambiguous_or_unusual_heads_to_python(head: bytes) -> None:
    assert _native is not None
    verdict, _ = _native.parse_head(head + b"0\r\n\r\n")
    assert verdict == 2  # Python's parser gives the verdict (400 for the malformed ones)


def test_the_native_parser_rebuilds_the_head_as_the_python_path() -> None:
    assert _native is not None
    head = (
        b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc-1\r\nX-Forwarded-For: 10.0.0.1\r\n"
        b"X-Forwarded-Proto: https\r\nConnection: keep-alive\r\nContent-Length: 3\r\nX:   v  \r\n\r\nabcGET"
    )
    verdict, parsed = _native.parse_head(head)
    assert verdict == 1 and parsed is not None
    method, kept, body, keep, rid, xff_seen, xff, used = parsed
    assert method == "POST" and body == b"abc" and keep and rid == b"abc-1"
    assert xff_seen and xff == b"10.0.0.1"
    # the router's own headers are dropped here and added when sent; values as llhttp gives them
    assert kept == b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX: v  \r\n"
    assert used == len(head) - 3
    assert _native.parse_head(head[:20])[0] == 0  # more bytes needed
    assert _native.parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")[1][3] is False


class _Seen:
    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.done = False
        self.keep = False
        self.parser: httptools.HttpRequestParser | None = None

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.keep = self.parser.should_keep_alive()  # as proxy.py reads it (llhttp resets it later)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        at = rng.randrange(len(out) + 1)
        if op < 0.3 and out:
            del out[min(at, len(out) - 1)]
        elif op < 0.6:
            out.insert(at, rng.choice(b"\r\n :\t,;\x00\x7f\x80abcXY0123456789-/"))
        elif op < 0.8 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        else:
            out[at:at] = rng.choice(PIECES)
    return bytes(out)


PIECES = [b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n", b"\r\n", b" ", b"Connection: x\r\n"]
SEEDS = [
    b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello",
    b"PUT /x HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\nX-Request-Id: a-1\r\n\r\n",
]


DROPPED = {b"connection", b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto", b"x-aicd-variant"}


def fuzz(iterations: int, seed: int) -> dict[str, int]:
    """Mutated heads: whatever the native parser accepts, llhttp must accept the same way."""
    assert _native is not None
    rng = random.Random(seed)
    counts = {"native": 0, "python": 0, "more": 0}
    for _ in range(iterations):
        data = _mutate(rng, rng.choice(SEEDS))
        verdict, parsed = _native.parse_head(data)
        counts[("more", "native", "python")[verdict]] += 1
        if verdict != 1:
            continue
        assert parsed is not None
        method, kept, body, keep, _, _, _, used = parsed
        seen = _Seen()
        parser = seen.parser = httptools.HttpRequestParser(seen)
        try:
            parser.feed_data(data[:used])
        except httptools.HttpParserError as exc:
            raise AssertionError(f"native accepted what llhttp refuses ({exc}): {data!r}") from None
        assert seen.done, data
        assert parser.get_method().decode() == method, data
        assert seen.body == body, data
        assert seen.keep == keep, data
        first = kept.split(b"\r\n", 1)[0]
        assert first == method.encode() + b" " + seen.url + b" HTTP/1.1", data
        expected = b"".join(n + b": " + v + b"\r\n" for n, v in seen.headers if n.lower() not in DROPPED)
        assert kept.split(b"\r\n", 1)[1] == expected, data
    return counts


def test_fuzzed_heads_the_native_parser_accepts_are_read_alike_by_llhttp() -> None:
    counts = fuzz(20_000, seed=16)
    assert counts["native"] > 1000 and counts["python"] > 1000  # both verdicts were exercised


# -- both paths, same bytes ----------------------------------------------------------------------


class Recorder(asyncio.Protocol):
    """A raw backend: records each request head, answers a fixed JSON with a length."""

    heads: list[bytes]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: not a subclass
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            size = int(length.group(1)) if length else 0
            body, self.buffer = self.buffer[:size], self.buffer[size:]
            self.heads.append(head + b"|" + body)
            answer = b'{"ok":true}'
            self.transport.write(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Request-Id: theirs\r\n"
                b"Keep-Alive: timeout=5\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
            )


REQUESTS = [
    b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\nX-Request-Id: fixed-1\r\n\r\n",
    b"POST /p HTTP/1.1\r\nContent-Length: 5\r\nX-Forwarded-For: 10.1.1.1\r\n"
    b"X-Request-Id: fixed-2\r\n\r\nhello",
    b"DELETE /d HTTP/1.1\r\nHost: y\r\nX-Forwarded-Proto: https\r\nX-Request-Id: bad id\r\n\r\n",
]


@asynccontextmanager
async def routing_to(port: int, **options: Any) -> AsyncIterator[Router]:
    """A started router whose one revision, r1, is the backend on ``port``; stopped after."""
    router = Router("127.0.0.1", 0, **options)
    router.set_backends({"r1": [("127.0.0.1", port)]}, {"r1": 100})
    await router.start()
    try:
        yield router
    finally:
        await router.stop()


async def _through(native_on: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list[bytes], list[bytes], bool]:
    monkeypatch.setenv(native.ENV, native_on)
    heads: list[bytes] = []
    loop = asyncio.get_running_loop()

    def factory() -> Recorder:
        recorder = Recorder()
        recorder.heads = heads
        return recorder

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    answers: list[bytes] = []
    try:
        async with routing_to(port) as router:
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            for request in REQUESTS:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(int(re.search(rb"Content-Length: (\d+)", head).group(1)))  # type: ignore[union-attr]
                answers.append(head + body)
            writer.close()
            served_by_python = bool(router._core.clients)
            snap = router.snapshot()
            assert snap["revisions"]["r1"]["requests"] == 3
            assert snap["revisions"]["r1"]["status"] == {"201": 3}
    finally:
        server.close()
    return heads, answers, served_by_python


def _same_ids(data: list[bytes]) -> list[bytes]:
    """The router's own request ids and the backend's port (each run has its own) made alike."""
    data = [re.sub(rb"X-Request-Id: [0-9a-f]{8}-[0-9a-f]+", b"X-Request-Id: <own>", d) for d in data]
    return [re.sub(rb"Host: 127\.0\.0\.1:\d+", b"Host: <backend>", d) for d in data]


def test_both_paths_send_the_same_bytes_to_the_backend_and_to_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def main() -> tuple[Any, Any]:
        return await _through("1", monkeypatch), await _through("0", monkeypatch)

    (n_heads, n_answers, n_python), (p_heads, p_answers, p_python) = event_loop.run(main())
    assert not n_python and p_python  # the native plane served these itself; "0": Python did
    assert _same_ids(n_heads) == _same_ids(p_heads)
    assert _same_ids(n_answers) == _same_ids(p_answers)
    assert b"X-Request-Id: fixed-1" in n_answers[0] and b"theirs" not in n_answers[0]
    assert b"Keep-Alive" not in n_answers[0]  # hop-by-hop: dropped


def test_unusual_requests_are_handed_to_python_on_the_same_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(native.ENV, "1")

    async def main() -> None:
        with serve_in_thread("b1") as backend:
            async with routing_to(backend.port) as router:
                assert router.native
                reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
                writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                first = await read_response(reader)
                assert first.status == 200 and not router._core.clients
                # chunked: the native plane hands the connection over with what it read
                chunked = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                writer.write(chunked + b"3\r\nabc\r\n0\r\n\r\n")
                second = await read_response(reader)
                assert second.status == 200 and second.json()["body_len"] == 3
                assert len(router._core.clients) == 1
                writer.close()
                assert router.snapshot()["revisions"]["r1"]["requests"] == 2

    event_loop.run(main())


def test_the_counted_field_path_is_served_natively_and_its_labels_join(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The answers of ``FieldCount``'s path are relayed by the plane and counted by Python; a label
    posted right after its answer joins it (the feedback route merges the plane's answers first)."""
    from aicd.deploy.router.metrics import FieldCount

    monkeypatch.setenv(native.ENV, "1")

    async def main() -> None:
        with serve_in_thread("b1") as backend:
            async with routing_to(backend.port, field_count=FieldCount("/predict", "predictions")) as router:
                reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
                writer.write(b"POST /predict?classes=2,1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                answer = await read_response(reader)
                assert answer.status == 200 and not router._core.clients  # served natively
                rid = answer.header("X-Request-Id")
                assert rid
                label = b'{"request_id": "%s", "label": [2, 0]}' % rid.encode()
                writer.write(
                    b"POST /_aicd/feedback HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(label)
                )
                writer.write(label)
                joined = await read_response(reader)
                assert joined.status == 200 and joined.json()["joined"] == 1, joined.json()
                writer.close()
                m = router.snapshot()["revisions"]["r1"]
                assert m["field_values"] == {"1": 1, "2": 1}
                assert m["quality"]["labels"] == 2 and m["quality"]["correct"] == 1

    event_loop.run(main())


def test_thousands_of_pipelined_requests_to_a_dead_backend_get_502_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each is answered at once by the router: the plane must not nest a call per request."""
    monkeypatch.setenv(native.ENV, "1")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]

    async def main() -> None:
        async with routing_to(dead) as router:
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            count = 4000
            writer.write(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n" * count)
            for _ in range(count):
                answer = await read_response(reader)
                assert answer.status == 502 and answer.json()["source"] == "aicd-router"
            writer.close()
            m = router.snapshot()["revisions"]["r1"]
            assert m["requests"] == count and m["proxy_errors"] == count
            assert not router._core.clients  # all answered natively

    event_loop.run(main())
