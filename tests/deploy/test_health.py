"""Health probes against real sockets on 127.0.0.1 (asyncio servers that misbehave on purpose)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aicd.deploy.health import probe
from aicd.deploy.ports import allocate_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


def answering(status_line: bytes, *, close: bool = True, body: bytes = b"ok") -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        assert request.startswith(b"GET /healthz HTTP/1.1\r\n")
        writer.write(status_line + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        if close:
            writer.close()
        else:
            await asyncio.sleep(5)  # a keep-alive server that ignores `Connection: close`

    return handle


def test_probe_answers() -> None:
    async def main() -> None:
        ok, ok_port = await serve(answering(b"HTTP/1.1 200 OK"))
        sick, sick_port = await serve(answering(b"HTTP/1.0 503 Service Unavailable"))
        sticky, sticky_port = await serve(answering(b"HTTP/1.1 200 OK", close=False))
        garbage, garbage_port = await serve(answering(b"SSH-2.0-OpenSSH_9.2"))
        async with ok, sick, sticky, garbage:
            result = await probe("127.0.0.1", ok_port, "/healthz")
            assert (result.ok, result.status, result.error) == (True, 200, "")
            result = await probe("127.0.0.1", sick_port, "/healthz")
            assert (result.ok, result.status, result.error) == (False, 503, "HTTP 503")
            result = await probe("127.0.0.1", sticky_port, "/healthz", timeout=2)
            assert result.ok and result.elapsed < 0.6  # does not wait for the server to close
            result = await probe("127.0.0.1", garbage_port, "/healthz")
            assert not result.ok and result.status is None
            assert result.error.startswith("not an HTTP answer: b'SSH-2.0")

    asyncio.run(main())


def test_probe_failures_are_quick_and_say_why() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # accepts, never answers

    async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def main() -> None:
        refused = await probe("127.0.0.1", allocate_port(), "/healthz")
        assert (refused.ok, refused.status, refused.error) == (False, None, "connection refused")
        mute, mute_port = await serve(silent)
        closer, closer_port = await serve(hangs_up)
        async with mute, closer:
            result = await probe("127.0.0.1", mute_port, "/healthz", timeout=0.3)
            assert (result.ok, result.error) == (False, "no answer within 0.3s")
            assert 0.3 <= result.elapsed < 0.6
            result = await probe("127.0.0.1", closer_port, "/healthz")
            assert (result.ok, result.error) == (False, "connection closed, no answer")

    asyncio.run(main())
