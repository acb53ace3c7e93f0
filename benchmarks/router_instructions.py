#!/usr/bin/env python3
"""Benchmark: user-space instructions per request of the whole proxy process (load-independent).

`benchmarks/router.py` measures req/s and CPU time, which follow the machine's load. This one runs
each proxy under `valgrind --tool=callgrind` in front of the fast service (`router.py --serve-fast`),
warms it up, zeroes the counters (`callgrind_control -z`), sends exactly `--requests` keep-alive GETs
over `--connections` connections (a plain Python client outside valgrind), and dumps the counters
(`callgrind_control -d`): the process's instructions in user space (every thread: the native plane,
the Python loop and its 0.1 s sweeper) over those requests. The kernel's share (the same read and
write per side for every proxy) is not in it. The same figure on any load.

Paths: `aicd` (the router as its processes run it: the native data plane where built), `aicd-py`
(`AICD_ROUTER_NATIVE=0`: the Python path on uvloop), `haproxy` (the config of `router.py`: one
thread, keep-alive both ways, `option forwardfor`).

    python benchmarks/router_instructions.py                     # all three, 4000 requests each
    python benchmarks/router_instructions.py --paths aicd haproxy --requests 2000
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from router import HAPROXY_CFG, free_port, wait_http  # the same set-up as benchmarks/router.py

ROOT = Path(__file__).resolve().parents[1]
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n"
ANSWER_END = b"}"  # the fast service's 30-byte JSON ends the answer


# processes started under valgrind take long to answer
VALGRIND_START_S = 120.0


def load(port: int, requests: int, connections: int) -> int:
    """Send ``requests`` GETs, one at a time per connection; the number actually answered."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    rounds = requests // connections
    try:
        for _ in range(rounds):
            for s in socks:
                s.sendall(REQUEST)
            for s in socks:
                data = b""
                while not (b"\r\n\r\n" in data and data.endswith(ANSWER_END)):
                    chunk = s.recv(4096)
                    if not chunk:
                        raise RuntimeError("the proxy closed a connection")
                    data += chunk
    finally:
        for s in socks:
            s.close()
    return rounds * connections


def total_instructions(path: str) -> int:
    text = Path(path).read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    return int(found.group(1)) if found else 0


def measure(path: str, service_port: int, args: argparse.Namespace, tmp: Path) -> float:
    port = free_port()
    out = tmp / f"cg.{path}"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    env = dict(os.environ)
    if path == "haproxy":
        cfg = tmp / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=port, service_port=service_port))
        cmd = [*valgrind, "haproxy", "-f", str(cfg), "-db"]
    else:
        cmd = [*valgrind, sys.executable, "-m", "aicd.deploy.router", "--listen", f"127.0.0.1:{port}"]
        cmd += ["--backend", f"r1=127.0.0.1:{service_port}"]
        env["AICD_ROUTER_NATIVE"] = "0" if path == "aicd-py" else "auto"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(port, "/", timeout=VALGRIND_START_S)
        load(port, 400, args.connections)  # warm-up: connections, pools, caches
        time.sleep(0.5)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        answered = load(port, args.requests, args.connections)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # callgrind_control -d writes <out>.<pid>.1: the counts between the zeroing and the dump
    dumps = [d for d in glob.glob(f"{out}.{proc.pid}.*") if re.search(r"\.\d+\.\d+$", d)]
    if not dumps:
        raise RuntimeError(f"{path}: callgrind wrote no dump after the zeroing")
    return total_instructions(sorted(dumps)[0]) / answered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="+", default=["aicd", "aicd-py", "haproxy"])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("error: valgrind is not installed (apt-get install -y valgrind)", file=sys.stderr)
        return 2
    paths = [p for p in args.paths if p != "haproxy" or shutil.which("haproxy")]
    load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="aicd-instr-") as name:
        tmp = Path(name)
        service_port = free_port()
        service = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "router.py"), "--serve-fast", str(service_port)]
        )
        try:
            wait_http(service_port, "/", timeout=VALGRIND_START_S)
            figures = {path: measure(path, service_port, args, tmp) for path in paths}
        finally:
            service.kill()
            service.wait()
    print(
        f"`python benchmarks/router_instructions.py --requests {args.requests}` "
        f"(load average {load_avg} at the start; the figures do not depend on it)\n"
    )
    print("| path | user-space instructions per request | against haproxy |")
    print("|---|---:|---:|")
    for path, value in figures.items():
        ratio = f"{value / figures['haproxy']:.2f}x" if "haproxy" in figures else "-"
        print(f"| {path} | {value:,.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
