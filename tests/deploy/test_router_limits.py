"""The router's limits on request heads: 431, 414, 400; refused requests reach no backend.

An outside review found that an endless header grew the router from 23 to 141 MB and that a 40 MB
header raised other clients' latency from 5 ms to 300-540 ms. These tests send such requests to a
real router (in this process, or as its own process when its memory is measured).
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from router_servers import read_response, request_bytes, serve_in_thread

from aicd.deploy.router.router import Router
from aicd.errors import ConfigError


async def send_raw(router: Router, data: bytes) -> tuple[int, dict[str, object], bool]:
    """Send ``data``, read one answer: (status, its JSON body, whether the router then closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(data)  # not drained first: the router answers long before it read everything
    try:
        response = await asyncio.wait_for(read_response(reader), 30)
        closed = await asyncio.wait_for(reader.read(), 30) == b""
    finally:
        writer.close()
    return response.status, response.json(), closed


def refused(status: int, data: bytes, **limits: int) -> None:
    async def main() -> None:
        with serve_in_thread("b1") as backend:
            async with Router(**limits) as router:  # type: ignore[arg-type]
                router.set_backends({"r1": [("127.0.0.1", backend.port)]})
                got, body, closed = await send_raw(router, data)
                assert got == status and body["source"] == "aicd-router", body
                assert closed, "the connection must be closed after a refusal"
                async with httpx.AsyncClient(base_url=router.url) as client:  # others still served
                    assert (await client.get("/echo")).status_code == 200
                snap = router.snapshot()
                assert snap["refused"] == 1
                assert snap["revisions"]["r1"]["requests"] == 1  # only the good one
                assert snap["revisions"]["r1"]["errors"] == 0 and snap["revisions"]["r1"]["retries"] == 0
            assert backend.requests == 1  # the refused request never reached it

    asyncio.run(main())


def test_a_1_mb_header_is_431_and_not_forwarded() -> None:
    refused(431, request_bytes("GET", "/echo", headers={"X-Big": "a" * (1 << 20)}))


def test_10000_headers_are_431_and_not_forwarded() -> None:
    headers = {f"X-H{i}": "v" for i in range(10_000)}
    refused(431, request_bytes("GET", "/echo", headers=headers))


def test_an_8_mb_request_line_is_414_and_not_forwarded() -> None:
    refused(414, request_bytes("GET", "/echo?q=" + "a" * (8 << 20)))


def test_a_malformed_request_is_400_and_not_forwarded() -> None:
    refused(400, b"GET /echo HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n")


def test_a_post_over_a_limit_is_not_forwarded_nor_retried() -> None:
    refused(431, request_bytes("POST", "/echo", b"x" * 1000, headers={f"X-{i}": "1" for i in range(101)}))


def test_limits_are_configurable() -> None:
    refused(431, request_bytes("GET", "/echo", headers={f"X-{i}": "1" for i in range(11)}), max_headers=10)
    refused(414, request_bytes("GET", "/echo?" + "a" * 600), max_url_bytes=512)
    refused(431, request_bytes("GET", "/echo", headers={"X-A": "a" * 3000}), max_head_bytes=2048)
    with pytest.raises(ConfigError, match="max_headers"):
        Router(max_headers=0)


def test_requests_under_the_limits_pass_whole() -> None:
    """Heads near the limits, a head split across reads, pipelined requests and a large body in the
    same write as its head are all forwarded as they were."""

    async def main() -> None:
        with serve_in_thread("b1") as backend:
            async with Router() as router:
                router.set_backends({"r1": [("127.0.0.1", backend.port)]})
                reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
                big = request_bytes(
                    "GET", "/echo?" + "q" * 8000, headers={f"X-{i}": "v" * 560 for i in range(90)}
                )
                assert 50_000 < len(big) < 64 * 1024
                writer.write(big)
                assert (await read_response(reader)).status == 200
                for cut in (5, len(big) - 3, len(big) - 2, len(big) - 1):  # CRLFCRLF across two reads
                    writer.write(big[:cut])
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    writer.write(big[cut:])
                    assert (await read_response(reader)).status == 200
                body = b"b" * (3 << 20)
                writer.write(request_bytes("POST", "/echo-body", body))
                answer = await read_response(reader)
                assert answer.status == 200 and answer.body == body
                writer.write(b"".join(request_bytes("GET", f"/echo?n={i}") for i in range(2000)))
                for _ in range(2000):
                    assert (await read_response(reader)).status == 200
                # bodies and heads pipelined in one write: a body, then the next head, then a body...
                bodies = [b"\r\n\r\n" * 5000, b"", b"x" * 70_000]
                writer.write(b"".join(request_bytes("POST", "/echo-body", body) for body in bodies))
                for body in bodies:
                    answer = await read_response(reader)
                    assert answer.status == 200 and answer.body == body
                chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                head = b"POST /echo-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                writer.write(head + chunked + request_bytes("GET", "/echo"))
                answer = await read_response(reader)
                assert answer.status == 200 and answer.body == b"hello world"
                assert (await read_response(reader)).status == 200
                writer.close()
            assert backend.requests == 1 + 4 + 1 + 2000 + 3 + 2
            assert router.snapshot()["refused"] == 0

    asyncio.run(main())


def attack(port: int, head: bytes, total: int, stop: threading.Event) -> dict[str, object]:
    """Send ``head`` then header bytes (up to ``total``) until the router closes; note its answer."""
    seen: dict[str, object] = {"sent": 0, "answer": b""}
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(60)

    def read() -> None:
        chunks = []
        try:
            while data := sock.recv(65536):
                chunks.append(data)
        except OSError:
            pass
        seen["answer"] = b"".join(chunks)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    piece = b"a" * 65536
    try:
        sock.sendall(head)
        while int(seen["sent"]) < total and not stop.is_set():  # type: ignore[call-overload]
            sock.sendall(piece)
            seen["sent"] = int(seen["sent"]) + len(piece)  # type: ignore[call-overload]
    except OSError:
        pass  # the router closed the connection: the attack is over
    reader.join(30)
    sock.close()
    return seen


def rss_kib(pid: int, key: str = "VmHWM") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def test_an_endless_header_is_cut_and_the_router_does_not_grow() -> None:
    """The router as its own process: its peak memory after a client streamed a header endlessly."""
    with serve_in_thread("b1") as backend:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "aicd.deploy.router", "--listen", f"127.0.0.1:{port}"),
                *("--backend", f"r1=127.0.0.1:{backend.port}", "--json"),
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            assert "aicd router on" in proc.stderr.readline()
            httpx.get(f"http://127.0.0.1:{port}/echo", timeout=30).raise_for_status()  # warm
            before = rss_kib(proc.pid)
            seen = attack(port, b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Endless: ", 200 << 20, threading.Event())
            after = rss_kib(proc.pid)
            assert bytes(seen["answer"]).startswith(b"HTTP/1.1 431 "), seen["answer"]  # type: ignore[arg-type]
            assert int(seen["sent"]) < 200 << 20, "the router must close the connection"  # type: ignore[call-overload]
            print(f"router peak RSS: {before} KiB before, {after} KiB after {seen['sent']} bytes")
            assert after - before < 16 * 1024, (before, after)  # was +118 MB
            httpx.get(f"http://127.0.0.1:{port}/echo", timeout=30).raise_for_status()
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        assert '"refused": 1' in out
        assert backend.requests == 2


def test_a_40_mb_header_does_not_slow_other_clients_much() -> None:
    async def latencies(client: httpx.AsyncClient, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            (await client.get("/echo")).raise_for_status()
            times.append(time.perf_counter() - t0)
        return times

    async def main() -> None:
        with serve_in_thread("b1") as backend:
            async with Router() as router:
                router.set_backends({"r1": [("127.0.0.1", backend.port)]})
                async with httpx.AsyncClient(base_url=router.url) as client:
                    quiet = statistics.median(await latencies(client, 40))
                    stop = threading.Event()
                    head = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Huge: "
                    attacks = [asyncio.to_thread(attack, router.port, head, 40 << 20, stop) for _ in range(4)]
                    running = asyncio.gather(*attacks)
                    await asyncio.sleep(0.05)
                    loud = statistics.median(await latencies(client, 40))
                    seen = await running
                print(f"median latency: {quiet * 1000:.1f} ms quiet, {loud * 1000:.1f} ms under attack")
                for one in seen:
                    assert bytes(one["answer"]).startswith(b"HTTP/1.1 431 ")  # type: ignore[arg-type]
                assert loud < max(10 * quiet, 0.1), (quiet, loud)  # was 5 ms -> 300-540 ms
                assert router.snapshot()["refused"] == 4
            assert backend.requests == 80

    asyncio.run(main())


def test_limits_from_aicd_yml_reach_the_router() -> None:
    from aicd.deploy.plan import RolloutPlan, parse_environment
    from aicd.deploy.router.factory import make_router

    plan = parse_environment("production", {"router_limits": {"max_headers": 20}}, "aicd.yml")
    assert plan.router_limits == {"max_headers": 20}
    assert RolloutPlan.from_json(plan.to_json()).router_limits == {"max_headers": 20}  # the agent's copy
    router = make_router("aicd", "127.0.0.1", 0, limits=plan.router_limits, env="production")
    assert isinstance(router, Router)
    assert router._core.settings.max_headers == 20 and router._core.settings.max_head_bytes == 64 * 1024
    refused(431, request_bytes("GET", "/echo", headers={f"X-{i}": "1" for i in range(21)}), max_headers=20)
    for bad, message in (
        ({"max_headers": 0}, "max_headers must be a whole number from 1 to 10000"),
        ({"max_head": 1}, "unknown limit 'max_head'"),
        ([1], "must be a mapping"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_environment("production", {"router_limits": bad}, "aicd.yml")
    with pytest.raises(ConfigError, match="apply to router: aicd"):
        parse_environment(
            "production", {"router": "haproxy", "router_limits": {"max_headers": 5}}, "aicd.yml"
        )


def test_a_refusal_pipelined_after_a_good_request_comes_after_its_answer() -> None:
    async def main() -> None:
        with serve_in_thread("b1") as backend:
            async with Router() as router:
                router.set_backends({"r1": [("127.0.0.1", backend.port)]})
                reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
                big = request_bytes("GET", "/echo", headers={f"X-{i}": "1" for i in range(200)})
                writer.write(request_bytes("GET", "/slow?s=0.3") + big + request_bytes("GET", "/echo"))
                first = await read_response(reader)
                second = await read_response(reader)
                assert (first.status, second.status) == (200, 431)
                assert await asyncio.wait_for(reader.read(), 30) == b""  # closed: the third is not served
                writer.close()
            assert backend.requests == 1
            snap = router.snapshot()
            assert snap["refused"] == 1 and snap["revisions"]["r1"]["requests"] == 1

    asyncio.run(main())
