"""HAProxy as the router: the aicd router's surface over a real haproxy process and real backends.

Everything that runs haproxy is skipped when it is not installed (CI has none); the factory's
"not installed" error is tested everywhere with a binary name that does not exist.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from router_servers import BackendProcess, read_response, request_bytes, serve_in_thread, spawn_backend
from test_router_switch import Tally, client

from aicd.deploy.analysis_metrics import Traffic
from aicd.deploy.haproxy.config import HAProxyFiles, HAProxySettings, check_count_path, render_config
from aicd.deploy.haproxy.metrics import parse_line
from aicd.deploy.haproxy.router import HAProxyRouter
from aicd.deploy.haproxy.runtime import RuntimeAPI
from aicd.deploy.router.factory import make_router
from aicd.deploy.router.metrics import FieldCount
from aicd.deploy.router.router import Router
from aicd.errors import ConfigError

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(
    HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy): nothing to run the router"
)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1][:1] != "Z"
    except OSError:
        return False


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait until ``check()`` is true (log lines land a few ms after the answers)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# -- the factory and the configuration (no haproxy needed) ------------------------------------


def test_factory_gives_the_router_asked_for_or_a_clear_error() -> None:
    assert isinstance(make_router("aicd", "127.0.0.1", 0, None), Router)
    with pytest.raises(ConfigError) as missing:
        make_router("haproxy", "127.0.0.1", 0, None, env="production", binary="no-such-haproxy-here")
    assert str(missing.value).startswith(
        "environments.production.router: haproxy, but haproxy is not installed: apt-get install haproxy"
    )
    assert str(missing.value).endswith("or use router: aicd")
    with pytest.raises(
        ConfigError, match=r"environments.staging.router: 'nginx' is not a router; use one of"
    ):
        make_router("nginx", "127.0.0.1", 0, None, env="staging")


def test_log_lines_parse_and_noise_is_ignored() -> None:
    rec = parse_line(b"aicd s03 i7 200 -- 0 1534 eyJwcmVkaWN0aW9ucyI6IFsxXX0=")
    assert rec is not None and (rec.backend, rec.server, rec.status, rec.termination) == (
        "s03",
        "i7",
        200,
        "--",
    )
    assert rec.latency_ms == 1.534 and rec.body == b'{"predictions": [1]}'
    assert parse_line(b"aicd s00 <NOSRV> 503 SC 2 87 -").body is None  # type: ignore[union-attr]
    assert parse_line(b"Server s00/i1 is UP/READY (leaving forced maintenance).") is None
    assert parse_line(b"aicd s00 i1 abc -- 0 1") is None


def test_counted_path_must_be_safe_for_the_configuration() -> None:
    assert check_count_path("/v1/predict") == "/v1/predict"
    for bad in ("predict", "/a b", "/a#b", '/a"b'):
        with pytest.raises(ConfigError, match="counted path"):
            check_count_path(bad)


@needs_haproxy
def test_generated_configuration_passes_haproxys_own_check(tmp_path: Path) -> None:
    files = HAProxyFiles(tmp_path, tmp_path)
    for count in ("/predict", None):
        settings = HAProxySettings("127.0.0.1:18999", 2, 4, 3.0, 30.0, 75.0, 3, count)
        files.config.write_text(render_config(files, settings))
        files.map.write_text("")
        out = subprocess.run([str(HAPROXY), "-c", "-f", str(files.config)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


# -- routing ----------------------------------------------------------------------------------


@needs_haproxy
def test_split_follows_the_weights_exactly_over_every_hundred_requests() -> None:
    async def main() -> None:
        with serve_in_thread("a1") as a1, serve_in_thread("a2") as a2, serve_in_thread("b1") as b1:
            async with HAProxyRouter() as router:
                router.set_backends(
                    {"a": [("127.0.0.1", a1.port), ("127.0.0.1", a2.port)], "b": [("localhost", b1.port)]},
                    {"a": 70, "b": 30},
                )
                async with httpx.AsyncClient(
                    base_url=router.url, limits=httpx.Limits(max_connections=4)
                ) as c:

                    async def worker(n: int) -> list[str]:
                        return [(await c.get("/echo")).headers["x-backend"] for _ in range(n)]

                    seen = Counter(
                        n for names in await asyncio.gather(*(worker(125) for _ in range(4))) for n in names
                    )
                    assert seen["a1"] + seen["a2"] == 350 and seen["b1"] == 150
                    assert seen["a1"] == seen["a2"] == 175  # a's instances take turns
                    router.set_weights({"a": 0, "b": 100})
                    assert {(await c.get("/echo")).headers["x-backend"] for _ in range(20)} == {"b1"}
                    assert router.weights == {"a": 0, "b": 100}
                snap = router.snapshot()["revisions"]
                assert snap["a"]["requests"] == 350 and snap["b"]["requests"] == 170

    asyncio.run(main())


@needs_haproxy
def test_switches_and_drains_under_steady_load_fail_no_request() -> None:
    """The aicd router's switch test (test_router_switch) against HAProxy, fewer cycles."""
    processes: dict[str, BackendProcess] = {}
    cycles = 9

    async def main() -> None:
        loop = asyncio.get_running_loop()
        blue = await loop.run_in_executor(None, spawn_backend, "blue-0")
        green = await loop.run_in_executor(None, spawn_backend, "green-0", 0.2)  # closes idle conns fast
        processes.update({"blue-0": blue, "green-0": green})
        router = HAProxyRouter()
        old, old_proc = "r0", blue
        router.set_backends({old: [("127.0.0.1", old_proc.port)]})
        await router.start()
        stop = asyncio.Event()
        tally = Tally()
        load = [asyncio.create_task(client(router.port, stop, tally, seed)) for seed in range(16)]
        await asyncio.sleep(0.2)
        spare, restarts = green, 0
        for cycle in range(1, cycles + 1):
            new, new_proc = f"r{cycle}", spare
            both = {old: [("127.0.0.1", old_proc.port)], new: [("127.0.0.1", new_proc.port)]}
            for weights in ({old: 100, new: 0}, {old: 50, new: 50}, {old: 0, new: 100}):
                router.set_backends(both, weights)
                await asyncio.sleep(0.05)
            router.set_backends({new: [("127.0.0.1", new_proc.port)]}, {new: 100})
            assert await router.wait_drained(old, timeout=10), f"{old} still serves requests"
            if cycle % 3 == 0:  # the drained revision's process goes away; a new one takes its place
                await asyncio.sleep(0.3)  # its servers leave haproxy
                await loop.run_in_executor(None, old_proc.stop)
                restarts += 1
                name = f"{old_proc.name.split('-')[0]}-{restarts}"
                old_proc = await loop.run_in_executor(None, spawn_backend, name)
                processes[name] = old_proc
            old, spare, old_proc = new, old_proc, new_proc
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*load)
        await eventually(
            lambda: (
                sum(sum(m["status"].values()) for m in router.snapshot()["revisions"].values()) >= tally.ok
            )
        )
        snap = router.snapshot()
        await router.stop()

        assert tally.failed == [], f"{len(tally.failed)} failed requests, first: {tally.failed[:5]}"
        assert tally.ok > 500, f"only {tally.ok} requests: the load was not steady"
        revisions = snap["revisions"]
        assert sum(m["requests"] for m in revisions.values()) == tally.ok
        assert sum(sum(m["status"].values()) for m in revisions.values()) == tally.ok  # every log line
        assert len([r for r, m in revisions.items() if m["requests"] > 0]) >= cycles
        assert all(m["errors"] == 0 for m in revisions.values())
        assert len(tally.by_backend) >= 1 + restarts

    try:
        asyncio.run(main())
    finally:
        for proc in processes.values():
            if proc.proc.poll() is None:
                proc.stop()


@needs_haproxy
def test_removed_revision_drains_then_leaves_haproxy() -> None:
    async def main() -> None:
        with serve_in_thread("old") as old, serve_in_thread("new") as new:
            async with HAProxyRouter() as router:
                router.set_backends({"r1": [("127.0.0.1", old.port)]})
                reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
                writer.write(request_bytes("GET", "/echo?sleep=2"))
                await eventually(lambda: router.in_flight("r1") == 1)
                router.set_backends({"r1": [("127.0.0.1", old.port)], "r2": [("127.0.0.1", new.port)]})
                router.set_weights({"r1": 0, "r2": 100})
                router.set_backends({"r2": [("127.0.0.1", new.port)]})
                assert router.weights == {"r2": 100} and router.in_flight("r1") == 1
                async with httpx.AsyncClient(base_url=router.url) as c:
                    assert (await c.get("/echo")).headers["x-backend"] == "new"
                assert not await router.wait_drained("r1", timeout=0.05)
                assert await router.wait_drained("r1", timeout=5)
                slow = await read_response(reader)
                writer.close()
                assert slow.status == 200 and slow.json()["backend"] == "old"
                assert router.files is not None
                api = RuntimeAPI(router.files.stats_socket)
                await eventually(lambda: "r1" not in router.snapshot()["in_flight"])
                servers = api.raw("show servers state").splitlines()[2:]
                assert [line.split()[1] for line in servers if line.strip()] == ["s01"]  # r1's server is gone
                assert router.snapshot()["revisions"]["r1"]["requests"] == 1

    asyncio.run(main())


# -- metrics ----------------------------------------------------------------------------------


@needs_haproxy
def test_snapshot_counts_match_what_the_client_saw() -> None:
    async def main() -> None:
        with serve_in_thread("s") as stable, serve_in_thread("c") as canary:
            router = HAProxyRouter(field_count=FieldCount("/predict", "predictions"))
            async with router:
                async with httpx.AsyncClient(base_url=router.url) as c:
                    r = await c.get("/echo")
                    assert r.status_code == 503 and r.json()["source"] == "aicd-router"  # no revision yet
                    router.set_backends(
                        {"s": [("127.0.0.1", stable.port)], "c": [("127.0.0.1", canary.port)]},
                        {"s": 50, "c": 50},
                    )
                    seen: dict[str, Counter[int]] = {"s": Counter(), "c": Counter()}
                    predictions: dict[str, Counter[str]] = {"s": Counter(), "c": Counter()}
                    paths = [
                        "/predict?classes=0,1",
                        "/predict?classes=2",
                        "/status/500",
                        "/status/404",
                        "/echo",
                    ]
                    for i in range(200):
                        r = await c.get(paths[i % len(paths)])
                        rev = r.headers["x-backend"]
                        seen[rev][r.status_code] += 1
                        if r.url.path == "/predict":
                            predictions[rev].update(str(p) for p in r.json()["predictions"])
                    slow = await c.get("/slow?s=0.12")
                    seen[slow.headers["x-backend"]][200] += 1
                await eventually(
                    lambda: (
                        sum(len(m["reservoir_ms"]) for m in router.snapshot()["revisions"].values()) == 201
                    )
                )
                snap = router.snapshot()
            assert snap["unrouted"] == 1 and snap["router"] == "haproxy"
            for rev in ("s", "c"):
                m = snap["revisions"][rev]
                assert m["requests"] == sum(seen[rev].values())
                assert m["errors"] == seen[rev][500]
                assert m["status"] == {str(code): n for code, n in sorted(seen[rev].items())}
                assert m["status_class"] == dict(
                    sorted(Counter(f"{k // 100}xx" for k in seen[rev].elements()).items())
                )
                assert m["field_values"] == dict(sorted(predictions[rev].items()))
                assert m["latency_ms"]["count"] == m["requests"] == len(m["reservoir_ms"])
                assert m["proxy_errors"] == 0
            assert max(max(m["reservoir_ms"]) for m in snap["revisions"].values()) >= 120.0
            assert snap["revisions"]["s"]["requests"] + snap["revisions"]["c"]["requests"] == 201
            window = Traffic.of(snap, "c")  # what the canary analysis reads
            assert window.requests == len(window.latencies_ms) == sum(seen["c"].values())
            assert window.errors == seen["c"][500] and window.field_values == predictions["c"]

    asyncio.run(main())


@needs_haproxy
def test_unreachable_instance_is_retried_on_its_sibling_and_a_dead_revision_is_a_proxy_error() -> None:
    async def main() -> None:
        with serve_in_thread("up") as up:
            dead = socket.socket()
            dead.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
            dead_port = dead.getsockname()[1]
            async with HAProxyRouter() as router:
                router.set_backends({"r1": [("127.0.0.1", dead_port), ("127.0.0.1", up.port)]})
                async with httpx.AsyncClient(base_url=router.url) as c:
                    assert [(await c.get("/echo")).status_code for _ in range(6)] == [200] * 6
                    router.set_backends({"r2": [("127.0.0.1", dead_port)]})
                    assert (await c.get("/echo")).status_code == 503
                await eventually(
                    lambda: router.snapshot()["revisions"].get("r2", {}).get("proxy_errors") == 1
                )
                snap = router.snapshot()["revisions"]
                assert (
                    snap["r1"]["requests"] == 6 and snap["r1"]["errors"] == 0 and snap["r1"]["retries"] >= 3
                )
                assert snap["r2"]["errors"] == 1 and snap["r2"]["retries"] == 2  # max_attempts 3
            dead.close()

    asyncio.run(main())


# -- the process ------------------------------------------------------------------------------


@needs_haproxy
def test_stop_finishes_the_request_in_progress_and_leaves_no_process() -> None:
    async def main() -> None:
        with serve_in_thread("b") as backend:
            router = HAProxyRouter()
            router.set_backends({"r1": [("127.0.0.1", backend.port)]})
            await router.start()
            pid, files = router.pid, router.files
            assert pid is not None and files is not None and alive(pid)
            assert files.stats_socket.stat().st_mode & 0o777 == 0o600
            idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", router.port)
            idle_writer.write(request_bytes("GET", "/echo"))
            assert (await read_response(idle_reader)).status == 200  # then idle on keep-alive
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(request_bytes("GET", "/echo?sleep=0.3"))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            stopping = asyncio.create_task(router.stop(grace=5))
            answer = await read_response(reader)
            assert answer.status == 200
            await stopping
            assert time.monotonic() - started < 3  # the idle keep-alive client did not hold it up
            assert not alive(pid) and router.pid is None
            assert not files.home.exists()  # a temp dir when no state dir is given
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", router.port)
            writer.close()
            idle_writer.close()
            await router.stop()  # twice is fine

    asyncio.run(main())


@needs_haproxy
def test_a_taken_port_is_a_config_error_and_leaves_no_process(tmp_path: Path) -> None:
    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            router = HAProxyRouter("127.0.0.1", port, state_dir=tmp_path / "router")
            with pytest.raises(
                ConfigError, match=rf"router: cannot listen on 127.0.0.1:{port}: Address already in use"
            ):
                await router.start()
            assert router.pid is None
            assert not (tmp_path / "router" / "haproxy.pid").exists()
            assert not (tmp_path / "router" / "haproxy.sock").exists()

    asyncio.run(main())


@needs_haproxy
def test_a_dead_haproxy_is_started_again_on_the_same_port_with_the_same_table() -> None:
    async def main() -> None:
        with serve_in_thread("a") as a, serve_in_thread("b") as b:
            async with HAProxyRouter() as router:
                router.set_backends(
                    {"r1": [("127.0.0.1", a.port)], "r2": [("127.0.0.1", b.port)]}, {"r1": 50, "r2": 50}
                )
                first = router.pid
                assert first is not None
                os.kill(first, signal.SIGKILL)
                await eventually(lambda: router.pid not in (None, first) and router.restarts == 1, timeout=5)
                async with httpx.AsyncClient(base_url=router.url) as c:
                    seen = Counter([(await c.get("/echo")).headers["x-backend"] for _ in range(100)])
                assert seen == {"a": 50, "b": 50}

    asyncio.run(main())


AGENT = """
import asyncio, sys
from pathlib import Path
from aicd.deploy.haproxy.router import HAProxyRouter

async def main():
    router = HAProxyRouter(state_dir=Path(sys.argv[1]))
    await router.start()
    print(router.port, router.pid, router.files.run, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


@needs_haproxy
def test_a_haproxy_left_by_a_killed_agent_is_ended_and_a_long_state_dir_works(tmp_path: Path) -> None:
    state = tmp_path / ("long-" * 20) / "router"  # too long for a Unix socket path: sockets go elsewhere
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(state)], stdout=subprocess.PIPE, text=True)
    assert agent.stdout is not None
    port_text, pid_text, run_dir = agent.stdout.readline().split()
    port, orphan = int(port_text), int(pid_text)
    assert Path(run_dir) != state and alive(orphan)
    agent.kill()  # the agent dies without stopping its router: haproxy lives on, holding the port
    agent.wait()
    assert alive(orphan)

    async def main() -> None:
        with serve_in_thread("a") as a:
            router = HAProxyRouter("127.0.0.1", port, state_dir=state)  # the next agent, same port
            await router.start()
            try:
                assert not alive(orphan) and router.pid not in (None, orphan)
                assert not Path(run_dir).exists()  # the killed router's sockets went with it
                router.set_backends({"r1": [("127.0.0.1", a.port)]})
                async with httpx.AsyncClient(base_url=router.url) as c:
                    assert (await c.get("/echo")).status_code == 200
            finally:
                await router.stop()
            assert (state / "haproxy.cfg").exists()  # the state dir keeps the configuration
            assert router.files is not None and not router.files.run.exists()

    try:
        asyncio.run(main())
    finally:
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)


@needs_haproxy
def test_factory_makes_a_working_haproxy_router(tmp_path: Path) -> None:
    router = make_router("haproxy", "127.0.0.1", 0, FieldCount("/predict", "predictions"), state_dir=tmp_path)
    assert isinstance(router, HAProxyRouter)

    async def main() -> None:
        with serve_in_thread("a") as a:
            async with router:
                router.set_backends({"r1": [("127.0.0.1", a.port)]}, {"r1": 100})
                async with httpx.AsyncClient(base_url=router.url) as c:
                    assert (await c.get("/predict?classes=3")).json()["predictions"] == [3]
                await eventually(lambda: router.snapshot()["revisions"]["r1"]["field_values"] == {"3": 1})

    asyncio.run(main())
