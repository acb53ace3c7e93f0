"""Zero failed requests while weights change, revisions come and go, and drained backends stop.

Steady load: 16 keep-alive clients (raw sockets, one connection each for the whole test) send GETs
and POSTs with bodies back to back; four of them make requests that take 150 ms, so a revision
removed from the table always has requests in flight and must really drain. Meanwhile the table
goes, over and over, through the canary and blue-green moves: {old: 100, new: 0} -> 50/50 ->
0/100 -> old removed, wait until it is drained; every third cycle the drained backend process is
then terminated and a fresh one started (a new revision on a new port). The backends are separate
processes (stdlib HTTP/1.1 server); one of them closes idle keep-alive connections after 0.2 s.
Every answer must be a 200 with the right body: the failures counted must be zero.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from router_servers import (
    BackendProcess,
    Response,
    read_response,
    request_bytes,
    serve_in_thread,
    spawn_backend,
)

from aicd.deploy.router.router import Router

CLIENTS = 16
CYCLES = int(os.environ.get("AICD_ROUTER_SWITCH_CYCLES", "30"))
STEP = 0.03  # seconds between two table changes


@dataclass
class Tally:
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    by_backend: Counter[str] = field(default_factory=Counter)


async def client(port: int, stop: asyncio.Event, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while not stop.is_set():
            i += 1
            body = rng.randbytes(rng.choice([0, 10, 700, 5000])) if i % 2 else b""
            method = "POST" if i % 2 else "GET"
            slow = "&sleep=0.15" if seed % 4 == 0 else ""  # a quarter of the clients make long requests
            target = f"/echo?c={seed}&i={i}{slow}"
            writer.write(request_bytes(method, target, body))
            try:
                r = await asyncio.wait_for(read_response(reader), timeout=10)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                tally.failed.append(f"client {seed} request {i}: {exc!r}")
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            if r.status != 200 or r.json()["body_len"] != len(body) or r.json()["target"] != target:
                tally.failed.append(f"client {seed} request {i}: {r.status} {r.body[:200]!r}")
                continue
            tally.ok += 1
            tally.by_backend[r.json()["backend"]] += 1
    finally:
        writer.close()


def test_switches_and_drains_under_steady_load_fail_no_request() -> None:
    processes: dict[str, BackendProcess] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        blue = await loop.run_in_executor(None, spawn_backend, "blue-0")
        green = await loop.run_in_executor(None, spawn_backend, "green-0", 0.2)
        processes.update({"blue-0": blue, "green-0": green})
        router = Router(pool_idle_timeout=3.0)
        old, old_proc = "r0", blue
        router.set_backends({old: [("127.0.0.1", old_proc.port)]})
        await router.start()
        stop = asyncio.Event()
        tally = Tally()
        load = [asyncio.create_task(client(router.port, stop, tally, seed)) for seed in range(CLIENTS)]
        await asyncio.sleep(0.2)
        spare = green
        restarts = 0
        started = time.monotonic()
        for cycle in range(1, CYCLES + 1):
            new, new_proc = f"r{cycle}", spare
            both = {old: [("127.0.0.1", old_proc.port)], new: [("127.0.0.1", new_proc.port)]}
            for weights in ({old: 100, new: 0}, {old: 50, new: 50}, {old: 0, new: 100}):
                router.set_backends(both, weights)
                await asyncio.sleep(STEP)
            router.set_backends({new: [("127.0.0.1", new_proc.port)]}, {new: 100})
            assert await router.wait_drained(old, timeout=10), f"{old} still serves requests"
            assert router.in_flight(old) == 0
            if cycle % 3 == 0:  # the drained revision's process goes away; a new one takes its place
                await loop.run_in_executor(None, old_proc.stop)
                restarts += 1
                name = f"{old_proc.name.split('-')[0]}-{restarts}"
                old_proc = await loop.run_in_executor(None, spawn_backend, name)
                processes[name] = old_proc
            old, spare, old_proc = new, old_proc, new_proc
            await asyncio.sleep(STEP)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*load)
        snap = router.snapshot()
        await router.stop()

        assert tally.failed == [], f"{len(tally.failed)} failed requests, first: {tally.failed[:5]}"
        assert tally.ok > 1000, f"only {tally.ok} requests in {elapsed:.1f}s: the load was not steady"
        served = {rev: m["requests"] for rev, m in snap["revisions"].items()}
        assert sum(served.values()) == tally.ok
        assert len([r for r, n in served.items() if n > 0]) >= CYCLES  # every revision took traffic
        assert all(m["errors"] == 0 for m in snap["revisions"].values())
        assert restarts == CYCLES // 3
        assert len(tally.by_backend) >= 1 + restarts  # every process but maybe the last one served
        print(
            f"\n{tally.ok} requests, 0 failed, {CYCLES} cycles in {elapsed:.1f}s, "
            f"{restarts} backend restarts, "
            f"{sum(m['retries'] for m in snap['revisions'].values())} retries"
        )

    try:
        asyncio.run(main())
    finally:
        for proc in processes.values():
            if proc.proc.poll() is None:
                proc.stop()


def test_removed_revision_drains_its_slow_request_while_new_ones_go_elsewhere() -> None:
    async def main() -> None:
        with serve_in_thread("old") as old, serve_in_thread("new") as new:
            async with Router() as router:
                router.set_backends({"r1": [("127.0.0.1", old.port)]})
                reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
                writer.write(request_bytes("GET", "/echo?sleep=0.5"))
                await asyncio.sleep(0.15)
                assert router.in_flight("r1") == 1
                router.set_backends({"r1": [("127.0.0.1", old.port)], "r2": [("127.0.0.1", new.port)]})
                router.set_weights({"r1": 0, "r2": 100})
                router.set_backends({"r2": [("127.0.0.1", new.port)]})
                assert router.weights == {"r2": 100} and router.in_flight("r1") == 1
                r2 = await raw_get(router.port, "/echo")
                assert r2.json()["backend"] == "new"
                assert not await router.wait_drained("r1", timeout=0.05)
                assert await router.wait_drained("r1", timeout=5)
                slow = await read_response(reader)
                writer.close()
                assert slow.status == 200 and slow.json()["backend"] == "old"
                snap = router.snapshot()
                assert snap["revisions"]["r1"]["status"] == {"200": 1} and snap["in_flight"] == {"r2": 0}

    asyncio.run(main())


def test_stop_lets_the_request_in_progress_finish_and_refuses_new_connections() -> None:
    async def main() -> None:
        with serve_in_thread("b") as backend:
            router = Router()
            router.set_backends({"r1": [("127.0.0.1", backend.port)]})
            await router.start()
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(request_bytes("GET", "/echo?sleep=0.3"))
            await asyncio.sleep(0.1)
            stopping = asyncio.create_task(router.stop(grace=5))
            await asyncio.sleep(0.05)
            answer = await read_response(reader)
            assert answer.status == 200 and answer.header("connection") == "close"
            await stopping
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", router.port)

    asyncio.run(main())


async def raw_get(port: int, target: str) -> Response:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("GET", target))
    answer = await read_response(reader)
    writer.close()
    return answer
