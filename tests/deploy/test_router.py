"""The router's HTTP relay, over real sockets on 127.0.0.1 to real HTTP servers (stdlib, threads).

Clients: httpx (an independent HTTP/1.1 client) and a raw socket client for the exact bytes
(pipelining, HTTP/1.0, Expect: 100-continue, malformed requests).

Every test runs twice: on asyncio's own event loop (what a router embedded in an asyncio program
uses) and on uvloop (what the router's processes use where it is installed).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from router_servers import BackendServer, pattern, read_response, request_bytes, serve_in_thread

from aicd.deploy.router import loop as event_loop
from aicd.deploy.router.router import Router

Test = Callable[[Router, BackendServer], Awaitable[None]]


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The event loop ``through_router`` runs on (uvloop is a dependency on Linux: never skipped)."""
    monkeypatch.setenv(event_loop.ENV, request.param)
    assert event_loop.loop_factory()[0] == request.param
    return str(request.param)


def through_router(test: Test, **router_options: Any) -> None:
    """Run ``test`` with a router in front of one backend revision "r1"."""

    async def main() -> None:
        with serve_in_thread("b1") as backend:
            router = Router("127.0.0.1", 0, **router_options)
            router.set_backends({"r1": [("127.0.0.1", backend.port)]}, {"r1": 100})
            await router.start()
            try:
                await test(router, backend)
            finally:
                await router.stop()

    event_loop.run(main())


async def raw_exchange(router: Router, data: bytes, answers: int = 1, head_only: bool = False) -> list[Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(data)
    out = [await read_response(reader, head_only) for _ in range(answers)]
    writer.close()
    return out


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_targets_and_bodies_are_relayed(method: str) -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        body = b"" if method in ("GET", "DELETE", "OPTIONS") else b'{"x": 1}'
        async with httpx.AsyncClient(base_url=router.url) as client:
            r = await client.request(method, "/echo/a%20b?q=1&q=2", content=body)
        assert r.status_code == 200
        doc = r.json()
        assert doc["method"] == method
        assert doc["target"] == "/echo/a%20b?q=1&q=2"
        assert doc["body_len"] == len(body)
        assert r.headers["x-backend"] == "b1"

    through_router(test)


def test_head_has_headers_and_no_body_and_the_connection_goes_on() -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(request_bytes("HEAD", "/echo"))
        head = await read_response(reader, head_only=True)
        writer.write(request_bytes("GET", "/echo"))
        after = await read_response(reader)
        writer.close()
        assert head.status == 200 and head.body == b"" and int(head.header("content-length") or 0) > 0
        assert after.status == 200 and after.json()["method"] == "GET"

    through_router(test)


def test_headers_host_forwarded_for_and_hop_by_hop() -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        async with httpx.AsyncClient(base_url=router.url) as client:
            r = await client.get(
                "/echo",
                headers={
                    "Host": "service.example:8443",
                    "X-Forwarded-For": "203.0.113.7",
                    "X-Custom": "kept",
                    "Connection": "keep-alive, X-Private",
                    "X-Private": "dropped: named in Connection",
                    "Keep-Alive": "timeout=5",
                    "X-Forwarded-Proto": "https-spoofed",
                },
            )
            cookies = await client.get("/cookies")
        headers = {k.lower(): v for k, v in r.json()["headers"]}
        assert headers["host"] == "service.example:8443"
        assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
        assert headers["x-forwarded-proto"] == "http"
        assert headers["x-custom"] == "kept"
        assert "x-private" not in headers and "keep-alive" not in headers and "connection" not in headers
        assert cookies.headers.get_list("set-cookie") == ["a=1", "b=2"]

    through_router(test)


def test_large_bodies_both_ways_are_streamed_intact() -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        data = pattern(24 * 1024 * 1024 + 17)
        async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
            up = await client.post("/echo", content=data)
            back = await client.post("/echo-body", content=data)
        assert up.json()["body_len"] == len(data)
        assert up.json()["body_sha256"] == hashlib.sha256(data).hexdigest()
        assert back.status_code == 200 and len(back.content) == len(data) and back.content == data

    through_router(test)


def test_chunked_request_and_chunked_response() -> None:
    async def parts() -> AsyncIterator[bytes]:
        for i in range(50):
            yield pattern(1000 + i)

    async def test(router: Router, backend: BackendServer) -> None:
        expected = b"".join([pattern(1000 + i) for i in range(50)])
        async with httpx.AsyncClient(base_url=router.url) as client:
            up = await client.post("/echo", content=parts())
            down = await client.get("/chunked", params={"n": 40, "size": 3000})
        assert ("Transfer-Encoding", "chunked") in [tuple(h) for h in up.json()["headers"]]
        assert up.json()["body_len"] == len(expected)
        assert up.json()["body_sha256"] == hashlib.sha256(expected).hexdigest()
        assert down.headers["transfer-encoding"] == "chunked"
        assert down.content == pattern(40 * 3000)

    through_router(test)


def test_close_delimited_answer_is_rechunked_for_http11_and_raw_for_http10() -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        [r11] = await raw_exchange(router, request_bytes("GET", "/until-close?n=5000"))
        assert r11.header("transfer-encoding") == "chunked" and r11.body == pattern(5000)
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(b"GET /until-close?n=3000 HTTP/1.0\r\n\r\n")  # HTTP/1.0, no Host
        r10 = await read_response(reader)
        assert await reader.read() == b""  # the router closed: that is how the body ended
        writer.close()
        assert r10.body == pattern(3000) and r10.header("transfer-encoding") is None

    through_router(test)


def test_http10_client_gets_host_and_keep_alive_when_asked() -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = await read_response(reader)
        writer.write(b"GET /echo HTTP/1.0\r\n\r\n")
        second = await read_response(reader)
        assert await reader.read() == b""
        writer.close()
        headers = {k.lower(): v for k, v in first.json()["headers"]}
        assert headers["host"] == f"127.0.0.1:{backend.port}"
        assert first.header("connection") == "keep-alive"
        assert second.header("connection") == "close"

    through_router(test)


def test_hundred_requests_on_one_keep_alive_connection_reuse_backend_connections() -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        for i in range(100):
            body = f"request {i}".encode()
            writer.write(request_bytes("POST", f"/echo?i={i}", body))
            r = await read_response(reader)
            assert r.status == 200 and r.json()["target"] == f"/echo?i={i}"
            assert r.json()["body_len"] == len(body)
        writer.close()
        assert backend.requests == 100
        assert len(backend.peers) == 1  # one pooled connection to the backend served them all
        assert router.snapshot()["revisions"]["r1"]["requests"] == 100

    through_router(test)


def test_pipelined_requests_are_answered_in_order() -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        data = b"".join(request_bytes("POST", f"/echo?i={i}", b"x" * i) for i in range(5))
        answers = await raw_exchange(router, data, answers=5)
        assert [a.json()["target"] for a in answers] == [f"/echo?i={i}" for i in range(5)]
        assert [a.json()["body_len"] for a in answers] == list(range(5))

    through_router(test)


def test_expect_100_continue_is_answered_by_the_router() -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        headers = {"Expect": "100-continue", "Content-Length": "5"}
        writer.write(request_bytes("POST", "/echo", headers=headers))
        interim = await read_response(reader)
        assert interim.status == 100
        writer.write(b"hello")
        final = await read_response(reader)
        writer.close()
        assert final.status == 200 and final.json()["body_len"] == 5
        assert "expect" not in {k.lower() for k, _ in final.json()["headers"]}

    through_router(test)


def test_malformed_request_gets_400_and_upgrade_gets_501() -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        [bad] = await raw_exchange(router, b"GET /echo HTTP/1.1\r\nBad Header Line\r\n\r\n")
        assert bad.status == 400 and bad.json()["source"] == "aicd-router"
        upgrade = request_bytes("GET", "/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
        [up] = await raw_exchange(router, upgrade)
        assert up.status == 501
        assert backend.requests == 0

    through_router(test)


@pytest.mark.parametrize(
    "head",
    [
        # both framings: which one ends the body is the smuggling question; refused, never relayed
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x\r\n Folded: header\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /echo HTTP/1.1\nHost: x\n\n",
    ],
)
def test_ambiguous_framing_is_refused_in_one_read_and_in_pieces(head: bytes) -> None:
    """Smuggling shapes get 400 from the router and never reach the backend, whether the head
    arrives in one read (the router's whole-head path) or byte by byte (its head-limit walk)."""

    async def test(router: Router, backend: BackendServer) -> None:
        data = head + b"0\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
        [whole] = await raw_exchange(router, data)
        assert whole.status == 400 and whole.json()["source"] == "aicd-router"
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            if i % 16 == 0:
                await asyncio.sleep(0)
        piecewise = await read_response(reader, False)
        writer.close()
        assert piecewise.status == 400
        assert backend.requests == 0
        assert router.snapshot()["refused"] == 2

    through_router(test)


def test_backend_statuses_are_passed_through_and_counted() -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        async with httpx.AsyncClient(base_url=router.url) as client:
            codes = [(await client.get(f"/status/{code}")).status_code for code in (201, 204, 404, 500, 503)]
        assert codes == [201, 204, 404, 500, 503]
        m = router.snapshot()["revisions"]["r1"]
        assert m["status"] == {"201": 1, "204": 1, "404": 1, "500": 1, "503": 1}
        assert m["status_class"] == {"2xx": 2, "4xx": 1, "5xx": 2}
        assert m["errors"] == 2 and m["proxy_errors"] == 0

    through_router(test)


def test_json_field_values_are_counted_on_the_configured_path() -> None:
    from aicd.deploy.router.metrics import FieldCount

    async def test(router: Router, backend: BackendServer) -> None:
        async with httpx.AsyncClient(base_url=router.url) as client:
            for classes in ("0,1", "2", "1,1,1"):
                assert (await client.post("/predict", params={"classes": classes})).status_code == 200
            await client.get("/echo")  # another path: not read
        m = router.snapshot()["revisions"]["r1"]
        assert m["field_values"] == {"0": 1, "1": 4, "2": 1}
        router.reset()
        assert router.snapshot()["revisions"] == {}

    through_router(test, field_count=FieldCount("/predict", "predictions"))


def test_snapshot_is_plain_json_with_histogram_and_bounded_reservoir() -> None:
    async def test(router: Router, backend: BackendServer) -> None:
        async with httpx.AsyncClient(base_url=router.url) as client:
            for _ in range(30):
                await client.get("/echo")
        snap = json.loads(json.dumps(router.snapshot()))
        m = snap["revisions"]["r1"]
        assert m["requests"] == 30
        assert sum(m["latency_ms"]["counts"]) == 30
        assert len(m["latency_ms"]["counts"]) == len(m["latency_ms"]["buckets"])
        assert len(m["reservoir_ms"]) == 10 and all(v > 0 for v in m["reservoir_ms"])
        assert m["latency_ms"]["sum"] >= sum(m["reservoir_ms"])
        assert snap["weights"] == {"r1": 100} and snap["in_flight"] == {"r1": 0}

    through_router(test, reservoir_size=10)
