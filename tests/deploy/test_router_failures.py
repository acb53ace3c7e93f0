"""The router when backends fail: refused, silent, broken mid-answer, stale keep-alive; bad tables."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import pytest
from router_servers import read_response, request_bytes, serve_in_thread

from aicd.deploy.router.router import Router
from aicd.errors import ConfigError


def closed_port() -> int:
    """A port nothing listens on (bound, then released): connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def revision_metrics(router: Router, revision: str) -> dict[str, Any]:
    metrics: dict[str, Any] = router.snapshot()["revisions"][revision]
    return metrics


def test_backend_down_gives_502_counted_as_proxy_error() -> None:
    async def main() -> None:
        async with Router() as router:
            router.set_backends({"r1": [("127.0.0.1", closed_port())]})
            async with httpx.AsyncClient(base_url=router.url) as client:
                r = await client.post("/predict", content=b"{}")
                again = await client.get("/echo")  # the client connection is still usable
            assert r.status_code == 502 and r.json()["source"] == "aicd-router"
            assert "refused" in r.json()["error"]
            assert again.status_code == 502
            m = revision_metrics(router, "r1")
            assert m["requests"] == 2 and m["errors"] == 2 and m["proxy_errors"] == 2
            assert m["status"] == {"502": 2}

    asyncio.run(main())


def test_refused_backend_is_skipped_by_a_retry_on_another_one() -> None:
    async def main() -> None:
        with serve_in_thread("alive") as alive:
            async with Router() as router:
                router.set_backends({"r1": [("127.0.0.1", closed_port()), ("127.0.0.1", alive.port)]})
                async with httpx.AsyncClient(base_url=router.url) as client:
                    codes = [(await client.post("/echo", content=b"x")).status_code for _ in range(20)]
                assert codes == [200] * 20
                m = revision_metrics(router, "r1")
                assert m["errors"] == 0 and m["retries"] == 10  # every second pick was the dead one
                assert alive.requests == 20

    asyncio.run(main())


def test_refused_canary_falls_back_to_stable() -> None:
    async def main() -> None:
        with serve_in_thread("stable") as stable:
            async with Router() as router:
                router.set_backends(
                    {"stable": [("127.0.0.1", stable.port)], "canary": [("127.0.0.1", closed_port())]},
                    {"stable": 80, "canary": 20},
                )
                async with httpx.AsyncClient(base_url=router.url) as client:
                    codes = [(await client.get("/echo")).status_code for _ in range(50)]
                assert codes == [200] * 50
                assert revision_metrics(router, "canary")["retries"] == 10
                assert revision_metrics(router, "canary")["requests"] == 0
                assert revision_metrics(router, "stable")["requests"] == 50

    asyncio.run(main())


def test_silent_backend_gives_504_within_the_response_timeout() -> None:
    async def main() -> None:
        with serve_in_thread("slow") as slow:
            async with Router(response_timeout=0.3) as router:
                router.set_backends({"r1": [("127.0.0.1", slow.port)]})
                async with httpx.AsyncClient(base_url=router.url) as client:
                    started = time.monotonic()
                    r = await client.get("/slow", params={"s": "3"})
                    elapsed = time.monotonic() - started
                    fine = await client.get("/echo")
                assert r.status_code == 504 and "did not answer within 0.3s" in r.json()["error"]
                assert 0.3 <= elapsed < 1.5  # never early (the native plane counts 0.1 s ticks)
                assert fine.status_code == 200
                m = revision_metrics(router, "r1")
                assert m["status"] == {"200": 1, "504": 1} and m["proxy_errors"] == 1
                assert m["retries"] == 0  # a request that may be running is never sent twice

    asyncio.run(main())


def test_answer_broken_mid_body_drops_the_client_connection_and_counts_502() -> None:
    async def main() -> None:
        with serve_in_thread("b") as backend:
            async with Router() as router:
                router.set_backends({"r1": [("127.0.0.1", backend.port)]})
                reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
                writer.write(request_bytes("GET", "/truncate"))
                with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                    await read_response(reader)
                writer.close()
                m = revision_metrics(router, "r1")
                assert m["status"] == {"502": 1} and m["proxy_errors"] == 1

    asyncio.run(main())


def test_connections_the_backend_closes_while_idle_leave_the_pool() -> None:
    """The backend closes idle connections after 0.1 s; the router would keep them 3 s."""

    async def main() -> None:
        with serve_in_thread("b", idle_timeout=0.1) as backend:
            async with Router(pool_idle_timeout=3.0) as router:
                router.set_backends({"r1": [("127.0.0.1", backend.port)]})
                async with httpx.AsyncClient(base_url=router.url) as client:
                    for i in range(4):
                        r = await client.post("/echo", content=b"payload %d" % i)
                        assert r.status_code == 200 and r.json()["body_len"] == len(b"payload %d" % i)
                        await asyncio.sleep(0.3)
                m = revision_metrics(router, "r1")
                assert m["errors"] == 0 and m["requests"] == 4 and m["retries"] == 0
                assert backend.requests == 4 and len(backend.peers) == 4

    asyncio.run(main())


class StaleRaceBackend(asyncio.Protocol):
    """Answers the first request of each connection; closes without a word on the next one.

    That is what a reused keep-alive connection looks like when the server's idle timeout fires
    just as the router sends on it.
    """

    answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.served = 0

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" not in data:
            return
        if self.served:
            self.transport.close()
            return
        self.served += 1
        StaleRaceBackend.answered += 1
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def test_request_on_a_stale_keep_alive_connection_is_retried_once_for_any_method() -> None:
    StaleRaceBackend.answered = 0  # the test runs on both data paths in one process

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(StaleRaceBackend, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with Router() as router:
            router.set_backends({"r1": [("127.0.0.1", port)]})
            async with httpx.AsyncClient(base_url=router.url) as client:
                for method in ("POST", "GET", "PUT", "DELETE"):
                    body = b"body" if method in ("POST", "PUT") else b""
                    r = await client.request(method, "/", content=body)
                    assert r.status_code == 200 and r.content == b"ok"
            m = revision_metrics(router, "r1")
            assert m["requests"] == 4 and m["errors"] == 0 and m["retries"] == 3
            assert StaleRaceBackend.answered == 4
        server.close()

    asyncio.run(main())


def test_fresh_connection_closed_without_answer_fails_a_post_but_retries_a_get() -> None:
    class Rude(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.close()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Rude, "127.0.0.1", 0)
        rude = server.sockets[0].getsockname()[1]
        with serve_in_thread("good") as good:
            async with Router() as router:
                router.set_backends({"r1": [("127.0.0.1", rude), ("127.0.0.1", good.port)]})
                async with httpx.AsyncClient(base_url=router.url) as client:
                    post = await client.post("/echo", content=b"once only")  # first pick: rude
                    await client.get("/echo")  # second pick: good
                    get = await client.get("/echo")  # rude, then retried on good
                assert post.status_code == 502 and "without answering" in post.json()["error"]
                assert get.status_code == 200 and get.headers["x-backend"] == "good"
                m = revision_metrics(router, "r1")
                assert m["proxy_errors"] == 1 and m["retries"] == 1
                assert good.requests == 2
        server.close()

    asyncio.run(main())


def test_no_revision_with_weight_gives_503_counted_as_unrouted() -> None:
    async def main() -> None:
        async with Router() as router:
            async with httpx.AsyncClient(base_url=router.url) as client:
                r = await client.get("/")
            assert r.status_code == 503
            assert router.snapshot()["unrouted"] == 1

    asyncio.run(main())


@pytest.mark.parametrize(
    ("backends", "weights", "message"),
    [
        ({"r1": [("127.0.0.1", 9)]}, {"r1": 50}, "must sum to 100"),
        ({"r1": [("127.0.0.1", 9)]}, {"r1": 100, "r2": 0}, "without backends: r2"),
        ({"r1": [("127.0.0.1", 9)], "r2": [("127.0.0.1", 10)]}, {"r1": 100}, "no weight given for revision"),
        ({"r1": [("127.0.0.1", 9)]}, {"r1": 100.0}, "integer 0..100"),
        ({"r1": [("127.0.0.1", 70000)]}, None, "port in 1-65535"),
        ({"r1": []}, {"r1": 100}, "has weight 100 but no backends"),
        ({"r1": [("127.0.0.1", 9), ("127.0.0.1", 9)]}, None, "listed twice"),
        ({"": [("127.0.0.1", 9)]}, None, "non-empty strings"),
    ],
)
def test_bad_tables_are_refused_and_change_nothing(backends: Any, weights: Any, message: str) -> None:
    router = Router()
    router.set_backends({"old": [("127.0.0.1", 8000)]})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        router.set_backends(backends, weights)
    assert router.weights == {"old": 100}


def test_port_already_taken_is_a_config_error() -> None:
    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            router = Router("127.0.0.1", taken.getsockname()[1])
            with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:"):
                await router.start()

    asyncio.run(main())


def test_backend_closing_every_connection_still_serves_keep_alive_clients() -> None:
    async def main() -> None:
        with serve_in_thread("closer", close_each=True) as backend:
            async with Router() as router:
                router.set_backends({"r1": [("127.0.0.1", backend.port)]})
                async with httpx.AsyncClient(base_url=router.url) as client:
                    for i in range(30):
                        r = await client.post("/echo", content=b"n%d" % i)
                        assert r.status_code == 200 and r.json()["version"] == "HTTP/1.1"
                        assert r.headers.get("connection") != "close"  # the client keeps its connection
                [closer] = router.table.all_backends()
                assert closer.idle == [] and len(backend.peers) == 30  # one backend connection each
                m = revision_metrics(router, "r1")
                assert m["requests"] == 30 and m["retries"] == 0

    asyncio.run(main())


def test_an_idle_connection_the_backend_closed_is_not_taken_even_before_the_loop_saw_the_close() -> None:
    """A busy event loop may not have read a backend's close yet: the pool looks at the socket."""
    from aicd.deploy.router.backend import BackendConnection, release, take_idle
    from aicd.deploy.router.table import Backend

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            backend = Backend("r1", "127.0.0.1", port)
            conns, accepted = [], []
            for _ in range(2):
                _, conn = await loop.create_connection(lambda: BackendConnection(backend), "127.0.0.1", port)
                conns.append(conn)
                accepted.append(listener.accept()[0])
            for conn in conns:
                release(conn, tick=0, max_idle=8)
            assert take_idle(backend) is conns[1]  # open and quiet: taken
            release(conns[1], tick=0, max_idle=8)
            # The backend closes both; the loop gets no turn to see it (as when it is busy).
            for sock in accepted:
                sock.close()
            time.sleep(0.2)  # the FINs cross loopback; this loop still has not run
            assert take_idle(backend) is None
            assert all(conn.closed for conn in conns) and backend.idle == []

    asyncio.run(main())
