#!/usr/bin/env python3
"""Benchmark: the router's per-request Python path, in instructions (load-independent).

`benchmarks/router.py` measures the router under wrk beside HAProxy; on a shared machine its req/s
follow the load. This one drives the router's own protocol objects (a client connection, a pooled
backend connection, the metrics, request ids on) with in-memory transports: one keep-alive GET in,
its head out to the backend, a 30-byte JSON answer in, the answer out, per request. No socket, no
event loop, no kernel: what is left is the Python path that `perf` puts at about half the router's
CPU per request. Counted two ways:

  instructions  `valgrind --tool=callgrind` (when installed), the difference between a run of
                2500 and one of 500 requests, over 2000: the same figure on any load
  CPU time      process time per request, best of 5 runs of 50000 (moves with the load)

`--base REF` measures the router of another commit the same way, in the same run (its `src/` is
exported with `git archive` into a temp dir), so a change is judged against its parent:

    python benchmarks/router_path.py                    # this tree
    python benchmarks/router_path.py --base 43a12ac     # and the router before issue 16's work
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n\r\n"
BODY = b'{"status":"ok","prediction":1}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


class MemoryTransport:
    """What the router calls on a transport, keeping the bytes written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True


def drive(requests: int, request_ids: bool = True) -> tuple[list[bytes], list[bytes]]:
    """``requests`` GETs through the router's objects; (bytes to the backend, bytes to the client)."""
    from aicd.deploy.router.backend import BackendConnection
    from aicd.deploy.router.metrics import RouterMetrics
    from aicd.deploy.router.proxy import ClientConnection, ProxyCore, Settings
    from aicd.deploy.router.table import build_table

    core = ProxyCore(Settings(request_ids=request_ids), RouterMetrics())
    loop = asyncio.new_event_loop()
    core.loop = loop
    core.table = build_table({"r1": [("127.0.0.1", 9)]}, None, {})
    backend = next(iter(core.table.all_backends()))
    conn = BackendConnection(backend)
    to_backend = MemoryTransport()
    conn.connection_made(to_backend)  # type: ignore[arg-type]
    backend.idle.append(conn)
    client = ClientConnection(core)
    to_client = MemoryTransport()
    client.connection_made(to_client)  # type: ignore[arg-type]
    from_client, from_backend = client.data_received, conn.data_received
    for _ in range(requests):
        from_client(REQUEST)
        from_backend(ANSWER)
    loop.close()
    counted = core.metrics.snapshot()["revisions"]["r1"]["requests"]
    if len(to_client.written) != requests or counted != requests:
        raise SystemExit(f"the router answered {len(to_client.written)} of {requests} requests")
    return to_backend.written, to_client.written


def cpu_us(requests: int, request_ids: bool) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        drive(requests, request_ids)
        best = min(best, time.process_time() - start)
    return best / requests * 1e6


def instructions(src: Path | None, requests: int) -> int:
    env = {**os.environ}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    done = subprocess.run(
        [*valgrind, sys.executable, __file__, "--drive", str(requests)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"callgrind said no total: {done.stderr[-500:]}")
    return int(found.group(1))


def per_request_instructions(src: Path | None) -> float:
    return (instructions(src, 2500) - instructions(src, 500)) / 2000


def measure(src: Path | None) -> dict[str, float]:
    """This process measures the tree in sys.path; another tree is measured in a child."""
    figures: dict[str, float] = {}
    if src is None:
        figures["cpu_us"] = cpu_us(50000, True)
        figures["cpu_us_noid"] = cpu_us(50000, False)
    else:
        env = {**os.environ, "PYTHONPATH": str(src)}
        done = subprocess.run(
            [sys.executable, __file__, "--cpu"], capture_output=True, text=True, env=env, check=True
        )
        figures["cpu_us"], figures["cpu_us_noid"] = (float(x) for x in done.stdout.split())
    if shutil.which("valgrind"):
        figures["instructions"] = per_request_instructions(src)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="also measure the router of this git commit (its src/)")
    parser.add_argument("--drive", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive is not None:
        drive(args.drive)
        return 0
    if args.cpu:
        print(cpu_us(50000, True), cpu_us(50000, False))
        return 0
    sent, answered = drive(1)
    print(f"to the backend: {sent[0]!r}\nto the client:  {answered[0]!r}")
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.base:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.base, "src"], capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            rows.append((f"router at {args.base}", measure(Path(tmp) / "src")))
        rows.append(("router of this tree", measure(None)))
    print(f"\nload average {os.getloadavg()[0]:.1f} (CPU time moves with it; instructions do not)")
    print("| router | instructions/request | CPU µs/request | CPU µs/request, no request ids |")
    print("|---|---:|---:|---:|")
    for name, fig in rows:
        ins = f"{fig['instructions']:,.0f}" if "instructions" in fig else "(no valgrind)"
        print(f"| {name} | {ins} | {fig['cpu_us']:.2f} | {fig['cpu_us_noid']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
