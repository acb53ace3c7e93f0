#!/usr/bin/env python3
"""Benchmark: aicd's router vs HAProxy vs no proxy, on the same service with the same load tool.

For each service, these paths are measured in one run, taking turns (`--rounds` times, medians
reported):

  direct    load tool -> service
  aicd-asyncio the router's Python path on asyncio's own event loop (`AICD_ROUTER_NATIVE=0
            AICD_EVENT_LOOP=asyncio`): what uvloop gains is `aicd-py` against it
  aicd-py   the router's Python path (`AICD_ROUTER_NATIVE=0`, uvloop where installed): what the
            native data plane gains is `aicd` against it
  aicd-noid the router with `--no-request-ids`: what request ids cost is `aicd` against it
  aicd      load tool -> `python -m aicd.deploy.router` (its own process, as the deploy agent runs
            it; its native data plane where built, else the Python path on uvloop; request ids and
            metrics on) -> service
  aicd-mirror the router also copying every request to the service (`--mirror`, shadow traffic;
            a mirror runs on the Python path): what mirroring costs users is its p50/p99 and
            throughput against `aicd-py`
  aicd-base with `--base REF`: the router of git commit REF (its `src/`, exported into a temp dir),
            run as `aicd`: what a change gained is `aicd` against it, in the same run
  haproxy   load tool -> HAProxy (config generated into a temp dir; nbthread 1, keep-alive to the
            service with `http-reuse always`, `option forwardfor` like the router's X-Forwarded-For)

Each path gets two runs of the load tool:

  throughput   --connections (default 64) keep-alive connections, as fast as they go: requests/s,
               p50 and p99 latency (queueing included)
  latency      one connection, one request at a time: p50 and p99 with no queueing; the router's
               added latency is its p50 here minus the direct p50

Services:

  fast   a minimal asyncio HTTP/1.1 server answering GET with a fixed 30-byte JSON (no framework):
         the hardest case for a proxy, whose own cost is then most of the total
  iris   the example AI service (examples/iris-service, Flask's server) answering POST /predict,
         trained into a temp dir first (needs scikit-learn and flask)

Load tool: wrk (Debian's `wrk`) with a Lua script reporting exact percentiles. Without wrk the
script falls back to a Python asyncio load generator (raw sockets, keep-alive; far slower than wrk,
so the throughput figures then measure the load generator too) and says so. Without HAProxy the
haproxy column is left out, with a note.

    python benchmarks/router.py                                # both services, 10 s runs, 3 rounds
    python benchmarks/router.py --quick                        # fast service, 2 s runs, 1 round
    python benchmarks/router.py --output benchmarks/results/router.md
    python benchmarks/router.py --service fast --base 43a12ac  # and the router before issue 16's speed-up
    apt-get install -y wrk haproxy                             # the peers (Debian)

Targets: the router adds under 1 ms at p50 (issue 5), and serves at least 0.9x HAProxy's
throughput on the same service with request ids and metrics on (issue 16; issue 5 asked 0.5x).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IRIS = ROOT / "examples" / "iris-service"
IRIS_BODY = '{"features": [[5.1, 3.5, 1.4, 0.2]]}'
PATHS = ("direct", "aicd-asyncio", "aicd-py", "aicd-noid", "aicd", "aicd-mirror", "haproxy")
TARGET_ADDED_P50_MS = 1.0
TARGET_RATIO = 0.9  # issue 16: at least 0.9x HAProxy's throughput with request ids and metrics on

FAST_BODY = b'{"status":"ok","prediction":1}'
FAST_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(FAST_BODY),
    FAST_BODY,
)

WRK_SCRIPT = """
{request}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n@@{{"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50":%d,"p99":%d}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


# -- the fast service ----------------------------------------------------------------------------


class FastService(asyncio.Protocol):
    """GET-only HTTP/1.1 keep-alive server: one fixed answer per request head received."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        count = buffer.count(b"\r\n\r\n")
        if count:
            buffer = buffer[buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(FAST_ANSWER * count)
        self.buffer = buffer


def serve_fast(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(FastService, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    asyncio.run(main())


# -- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered HTTP on 127.0.0.1:{port}{path} within {timeout:g}s")


@contextmanager
def process(
    args: list[str], port: int, probe: str, log: Path, **kw: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (its output to ``log``, never to an unread pipe), once it answers HTTP."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, **kw)
    try:
        try:
            wait_http(port, probe)
        except RuntimeError:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{' '.join(args[:3])} did not start: {log.read_text()[-2000:]}") from None
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Service:
    name: str
    port: int
    pid: int
    method: str
    path: str
    body: str = ""


@contextmanager
def fast_service(tmp: Path) -> Iterator[Service]:
    port = free_port()
    with process([sys.executable, __file__, "--serve-fast", str(port)], port, "/", tmp / "fast.log") as proc:
        yield Service("fast", port, proc.pid, "GET", "/")


@contextmanager
def iris_service(tmp: Path) -> Iterator[Service]:
    subprocess.run(
        [sys.executable, "train.py", "--out", str(tmp / "model")], cwd=IRIS, check=True, capture_output=True
    )
    port = free_port()
    env = {**os.environ, "MODEL_PATH": str(tmp / "model" / "model.joblib"), "PORT": str(port)}
    with process([sys.executable, "app.py"], port, "/healthz", tmp / "iris.log", cwd=IRIS, env=env) as proc:
        yield Service("iris", port, proc.pid, "POST", "/predict", IRIS_BODY)


@contextmanager
def aicd_router(
    service: Service,
    tmp: Path,
    request_ids: bool = True,
    mirror: bool = False,
    loop: str = "auto",
    src: Path | None = None,
    native: str = "auto",
) -> Iterator[tuple[int, int]]:
    port = free_port()
    args = [sys.executable, "-m", "aicd.deploy.router", "--listen", f"127.0.0.1:{port}"]
    args += ["--backend", f"r1=127.0.0.1:{service.port}"]
    if not request_ids:
        args.append("--no-request-ids")
    if mirror:
        args += ["--mirror", f"127.0.0.1:{service.port}", "--mirror-method", service.method]
    env = {**os.environ, "AICD_EVENT_LOOP": loop, "AICD_ROUTER_NATIVE": native}
    if src is not None:  # another commit's router
        env["PYTHONPATH"] = str(src)
    with process(args, port, service.path, tmp / "router.log", env=env) as proc:
        yield port, proc.pid


HAPROXY_CFG = """global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    option forwardfor
    http-reuse always
frontend bench
    bind 127.0.0.1:{port}
    default_backend service
backend service
    server s1 127.0.0.1:{service_port}
"""


@contextmanager
def haproxy(service: Service, tmp: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    cfg = tmp / f"haproxy-{service.name}.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=port, service_port=service.port))
    with process(["haproxy", "-f", str(cfg), "-db"], port, service.path, tmp / "haproxy.log") as proc:
        yield port, proc.pid


# -- load ----------------------------------------------------------------------------------------


def wrk_run(port: int, service: Service, connections: int, seconds: float, tmp: Path) -> dict[str, float]:
    request = ""
    if service.method != "GET":
        body = json.dumps(service.body)
        request = (
            f'wrk.method = "{service.method}"\nwrk.body = {body}\n'
            'wrk.headers["Content-Type"] = "application/json"'
        )
    script = tmp / f"wrk-{service.name}.lua"
    script.write_text(WRK_SCRIPT.format(request=request))
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    args += ["-s", str(script), f"http://127.0.0.1:{port}{service.path}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("@@"))
    raw = json.loads(line[2:])
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50": raw["p50"] / 1000.0,
        "p99": raw["p99"] / 1000.0,
        "requests": raw["requests"],
        "failed": raw["errors"] + raw["non2xx"],
    }


async def _python_load(port: int, service: Service, connections: int, seconds: float) -> dict[str, float]:
    body = service.body.encode()
    head = f"{service.method} {service.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    request = (head + "\r\n").encode() + body
    latencies: list[float] = []
    failed = 0
    stop_at = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not status.startswith(b"HTTP/1.1 2"):
                failed += 1
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "requests": len(latencies),
        "failed": failed,
    }


def python_run(port: int, service: Service, connections: int, seconds: float, tmp: Path) -> dict[str, float]:
    return asyncio.run(_python_load(port, service, connections, seconds))


# -- the run -------------------------------------------------------------------------------------


@contextmanager
def path_port(path: str, service: Service, tmp: Path) -> Iterator[tuple[int, int]]:
    """The port to load for ``path``, and the pid whose CPU time is the path's own cost."""
    if path == "direct":
        yield service.port, service.pid
    elif path.startswith("aicd"):
        with aicd_router(
            service,
            tmp,
            request_ids=path != "aicd-noid",
            mirror=path == "aicd-mirror",
            loop="asyncio" if path == "aicd-asyncio" else "auto",
            src=tmp / "base" / "src" if path == "aicd-base" else None,
            native="0" if path in ("aicd-asyncio", "aicd-py") else "auto",
        ) as found:
            yield found
    else:
        with haproxy(service, tmp) as found:
            yield found


def measure(service: Service, paths: list[str], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    run = wrk_run if args.loadgen == "wrk" else python_run
    warm_up = 1.0 if args.loadgen == "wrk" else 0.3
    samples: dict[str, dict[str, list[float]]] = {p: {} for p in paths}
    for round_no in range(args.rounds):
        for path in paths:
            with path_port(path, service, tmp) as (port, pid):
                run(port, service, min(8, args.connections), warm_up, tmp)  # connections, caches
                cpu = cpu_seconds(pid)
                heavy = run(port, service, args.connections, args.duration, tmp)
                heavy["cpu_us"] = (cpu_seconds(pid) - cpu) / max(1, heavy["requests"]) * 1e6
                heavy["load"] = os.getloadavg()[0]  # the machine's 1-min load beside the figure
                light = run(port, service, 1, args.duration / 2, tmp)
            for key, value in [*heavy.items(), *[(f"c1_{k}", v) for k, v in light.items()]]:
                samples[path].setdefault(key, []).append(value)
            print(
                f"  {service.name:5} round {round_no + 1} {path:8} {heavy['rps']:9.0f} req/s  "
                f"p50 {heavy['p50']:6.2f} ms  p99 {heavy['p99']:6.2f} ms  "
                f"cpu {heavy['cpu_us']:5.1f} us/req | "
                f"c=1 p50 {light['p50']:.3f} ms  "
                f"failed {int(heavy['failed'] + light['failed'])}  load {heavy['load']:.1f}",
                file=sys.stderr,
                flush=True,
            )
    return {
        path: {k: (sum(v) if k.endswith("failed") else statistics.median(v)) for k, v in s.items()}
        for path, s in samples.items()
    }


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, load average {load}"


def router_loop() -> str:
    """The event loop the ``aicd`` paths run on (uvloop and its version where installed)."""
    try:
        import uvloop
    except ImportError:
        return "asyncio (uvloop not installed)"
    return f"uvloop {uvloop.__version__}"


def tool_versions(loadgen: str, with_haproxy: bool) -> str:
    parts = [f"Python {platform.python_version()}", f"router loop {router_loop()}"]
    if loadgen == "wrk":
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        parts.append((out.stdout or out.stderr).split("[")[0].strip())
    else:
        parts.append("Python asyncio load generator (wrk not installed)")
    if with_haproxy:
        out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True)
        parts.append(" ".join(out.stdout.split()[:3]))
    return ", ".join(parts)


def render(results: dict[str, dict[str, Any]], args: argparse.Namespace, notes: list[str]) -> str:
    lines = [
        "| service | path | req/s | p50 ms | p99 ms | CPU µs/req | c=1 p50 ms | c=1 p99 ms | failed | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts: list[str] = []
    for name, paths in results.items():
        for path, m in paths.items():
            lines.append(
                f"| {name} | {path} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['cpu_us']:.1f} | "
                f"{m['c1_p50']:.3f} | {m['c1_p99']:.3f} | {int(m['failed'] + m['c1_failed'])} | "
                f"{m['load']:.1f} |"
            )
        added = paths["aicd"]["c1_p50"] - paths["direct"]["c1_p50"]
        added_loaded = paths["aicd"]["p50"] - paths["direct"]["p50"]
        ok = "met" if added < TARGET_ADDED_P50_MS else "MISSED"
        verdicts.append(
            f"- {name}: the router adds {added:.3f} ms at p50 with one connection "
            f"({added_loaded:+.2f} ms at p50 with {args.connections}): "
            f"target < {TARGET_ADDED_P50_MS:g} ms {ok}."
        )
        if "aicd-py" in paths:
            base, now = paths["aicd-py"], paths["aicd"]
            verdicts.append(
                f"- {name}: the router's native data plane against its Python path: "
                f"{now['cpu_us']:.1f} against {base['cpu_us']:.1f} µs of CPU per request, "
                f"{(now['rps'] / base['rps'] - 1) * 100:+.1f}% throughput (aicd against aicd-py)."
            )
        if "aicd-asyncio" in paths and "aicd-py" in paths:
            base, now = paths["aicd-asyncio"], paths["aicd-py"]
            verdicts.append(
                f"- {name}: the router's Python path on {router_loop()} against asyncio's loop: "
                f"{now['cpu_us']:.1f} against {base['cpu_us']:.1f} µs of CPU per request, "
                f"{(now['rps'] / base['rps'] - 1) * 100:+.1f}% throughput."
            )
        if "aicd-noid" in paths:
            base, now = paths["aicd-noid"], paths["aicd"]
            verdicts.append(
                f"- {name}: request ids cost {now['cpu_us'] - base['cpu_us']:+.1f} µs of CPU per request, "
                f"{now['c1_p50'] - base['c1_p50']:+.3f} ms at p50 with one connection, "
                f"{(now['rps'] / base['rps'] - 1) * 100:+.1f}% throughput (aicd against aicd-noid)."
            )
        if "aicd-mirror" in paths:
            base = paths["aicd-py"] if "aicd-py" in paths else paths["aicd"]
            now = paths["aicd-mirror"]
            verdicts.append(
                f"- {name}: mirroring every request costs users {now['p99'] - base['p99']:+.2f} ms at p99 "
                f"and {now['c1_p50'] - base['c1_p50']:+.3f} ms at p50 with one connection, "
                f"{(now['rps'] / base['rps'] - 1) * 100:+.1f}% throughput, "
                f"{now['cpu_us'] - base['cpu_us']:+.1f} µs of the router's CPU per request "
                "(aicd-mirror against aicd-py)."
            )
        if "aicd-base" in paths:
            base, now = paths["aicd-base"], paths["aicd"]
            verdicts.append(
                f"- {name}: the router of this tree against the one at {args.base}: "
                f"{now['cpu_us']:.1f} against {base['cpu_us']:.1f} µs of CPU per request "
                f"({(now['cpu_us'] / base['cpu_us'] - 1) * 100:+.1f}%), "
                f"{(now['rps'] / base['rps'] - 1) * 100:+.1f}% throughput."
            )
        if "haproxy" in paths:
            ratio = paths["aicd"]["rps"] / paths["haproxy"]["rps"]
            ok = "met" if ratio >= TARGET_RATIO else "MISSED"
            verdicts.append(
                f"- {name}: the router serves {ratio:.2f}x HAProxy's throughput "
                f"({paths['aicd']['rps']:.0f} vs {paths['haproxy']['rps']:.0f} req/s; "
                f"{paths['aicd']['cpu_us']:.1f} vs {paths['haproxy']['cpu_us']:.1f} µs of CPU per request): "
                f"target >= {TARGET_RATIO:g}x {ok}."
            )
            busiest = max(m["load"] for m in paths.values())
            if busiest > (os.cpu_count() or 1):
                verdicts.append(
                    f"  The load average reached {busiest:.1f} on {os.cpu_count()} cores during the runs: "
                    "req/s then follow how much CPU each process got, not the path; the steadier figure "
                    f"is CPU per request, where the router needs "
                    f"{paths['aicd']['cpu_us'] / paths['haproxy']['cpu_us']:.2f}x HAProxy's."
                )
    return "\n".join([*lines, "", *verdicts, *notes])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast service only, 2 s runs, 1 round")
    parser.add_argument("--service", choices=["fast", "iris", "both"], default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds per throughput run (10)")
    parser.add_argument("--rounds", type=int, default=None, help="turns per path (3)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--loadgen", choices=["wrk", "python"], help="default: wrk if installed")
    parser.add_argument("--no-haproxy", action="store_true")
    parser.add_argument("--base", metavar="REF", help="also run the router of this git commit (aicd-base)")
    parser.add_argument("--output", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--serve-fast", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fast:
        serve_fast(args.serve_fast)
        return 0
    args.service = args.service or ("fast" if args.quick else "both")
    args.duration = args.duration or (2.0 if args.quick else 10.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    notes: list[str] = []
    if args.loadgen is None:
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    if args.loadgen == "wrk" and not shutil.which("wrk"):
        print("error: wrk is not installed (apt-get install -y wrk); or --loadgen python", file=sys.stderr)
        return 2
    if args.loadgen == "python":
        notes.append(
            "- Load generator: the Python asyncio one (wrk not installed): it is slower than the paths "
            "it drives, so the req/s figures are the load generator's limit as much as the path's."
        )
    paths = list(PATHS)
    if args.no_haproxy or not shutil.which("haproxy"):
        paths.remove("haproxy")
        if not args.no_haproxy:
            notes.append("- HAProxy is not installed (apt-get install -y haproxy): no haproxy column.")
    if args.base:
        paths.insert(paths.index("aicd"), "aicd-base")
    services = ["fast", "iris"] if args.service == "both" else [args.service]
    host = machine()
    print(f"{host}\n{tool_versions(args.loadgen, 'haproxy' in paths)}", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="aicd-router-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.base:
            git = ["git", "-C", str(ROOT), "archive", args.base, "src"]
            archive = subprocess.run(git, capture_output=True)
            if archive.returncode != 0:
                print(f"error: git archive {args.base}: {archive.stderr.decode().strip()}", file=sys.stderr)
                return 2
            (tmp / "base").mkdir()
            subprocess.run(["tar", "-x", "-C", str(tmp / "base")], input=archive.stdout, check=True)
        for name in services:
            with fast_service(tmp) if name == "fast" else iris_service(tmp) as service:
                results[name] = measure(service, paths, args, tmp)
    table = render(results, args, notes)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.output:
        header = (
            f"# Router benchmark\n\n`python benchmarks/router.py {' '.join(sys.argv[1:])}` on "
            f"{dt.date.today().isoformat()}: {host} at the start; "
            f"{tool_versions(args.loadgen, 'haproxy' in paths)}. "
            f"{args.rounds} round(s) per path, medians; throughput runs {args.duration:g} s with "
            f"{args.connections} keep-alive connections, latency runs with one connection.\n\n"
        )
        args.output.write_text(header + table + "\n")
    failed = sum(int(m["failed"] + m["c1_failed"]) for paths_ in results.values() for m in paths_.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
