"""Backends and a raw client for the router's tests.

The backend is the standard library's HTTP/1.1 server (one thread per connection, keep-alive), an
HTTP implementation independent of the router's. It runs in a thread of the test process
(:func:`serve_in_thread`) or as its own process (``python router_servers.py NAME [IDLE_TIMEOUT]``,
which prints its port on the first line of stdout).

Routes (any method):
  /echo...            JSON: backend name, method, target, headers, body length and sha256
                      (after waiting ``sleep`` seconds if the query has it)
  /echo-body          the request body sent back as the answer body (Content-Length)
  /chunked?n=N&size=S N chunks of S bytes, chunked transfer encoding
  /until-close?n=N    N bytes with neither length nor chunking, then the connection closes
  /status/NNN         an answer with that status
  /slow?s=SECONDS     waits, then answers
  /truncate           promises 1000 bytes, sends 10, closes
  /predict            {"predictions": [...]} from the "classes" query value (comma-separated)
  /cookies            two Set-Cookie headers
  /value?v=V          an answer with the header X-Value: V (a business metric the service reports)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PATTERN = bytes(range(256)) * 4096  # 1 MiB of known bytes


def pattern(n: int) -> bytes:
    reps, rest = divmod(n, len(PATTERN))
    return PATTERN * reps + PATTERN[:rest]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-backend"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stalls
    server: BackendServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status: int, body: bytes, ctype: str = "application/json", **extra: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.server.name)
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def route(self) -> None:
        with self.server.lock:
            self.server.requests += 1
            self.server.peers.add(self.client_address)
        body = self.read_body()
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path.startswith("/echo-body"):
            self.answer(200, body, "application/octet-stream")
        elif path.startswith("/echo"):
            if "sleep" in query:
                time.sleep(float(query["sleep"]))
            doc = {
                "backend": self.server.name,
                "method": self.command,
                "target": self.path,
                "version": self.request_version,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }
            self.answer(200, json.dumps(doc).encode())
        elif path == "/chunked":
            n, size = int(query.get("n", "3")), int(query.get("size", "10"))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Backend", self.server.name)
            self.end_headers()
            data = pattern(n * size)
            for i in range(n):
                part = data[i * size : (i + 1) * size]
                self.wfile.write(b"%x\r\n%b\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/until-close":
            self.send_response(200)
            self.send_header("X-Backend", self.server.name)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(pattern(int(query.get("n", "1000"))))
            self.close_connection = True
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self.answer(code, json.dumps({"status": code}).encode())
        elif path == "/slow":
            time.sleep(float(query.get("s", "1")))
            self.answer(200, b'{"slow": true}')
        elif path == "/truncate":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
        elif path == "/predict":
            classes = [int(c) for c in query.get("classes", "0").split(",")]
            self.answer(200, json.dumps({"predictions": classes, "model_version": "t"}).encode())
        elif path == "/value":
            self.answer(200, b"{}", X_Value=query.get("v", "0"))
        elif path == "/cookies":
            self.send_response(200)
            self.send_header("Set-Cookie", "a=1")
            self.send_header("Set-Cookie", "b=2")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.answer(404, b'{"error": "no such route"}')

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = route


class BackendServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, name: str, idle_timeout: float | None = None, close_each: bool = False) -> None:
        handler: type[Handler] = Handler
        if idle_timeout:
            handler = type("IdleHandler", (Handler,), {"timeout": idle_timeout})
        if close_each:  # HTTP/1.0 server: one request per connection, like Flask's development server
            handler = type("CloseHandler", (Handler,), {"protocol_version": "HTTP/1.0"})
        super().__init__(("127.0.0.1", 0), handler)
        self.name = name
        self.lock = threading.Lock()
        self.requests = 0
        self.peers: set[tuple[str, int]] = set()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client (the router) that went away mid-answer, on purpose in some tests

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextmanager
def serve_in_thread(
    name: str, idle_timeout: float | None = None, close_each: bool = False
) -> Iterator[BackendServer]:
    server = BackendServer(name, idle_timeout, close_each)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class BackendProcess:
    name: str
    port: int
    proc: subprocess.Popen[str]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def spawn_backend(name: str, idle_timeout: float | None = None) -> BackendProcess:
    args = [sys.executable, str(Path(__file__).resolve()), name]
    if idle_timeout:
        args.append(str(idle_timeout))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return BackendProcess(name, port, proc)


# -- a raw HTTP/1.1 client: exactly the bytes we choose, keep-alive, pipelining ------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader, head_only: bool = False) -> Response:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before an answer")
    status = int(status_line.split()[1])
    headers: list[tuple[str, str]] = []
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise ConnectionError("connection closed in the middle of the headers")
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    response = Response(status, headers)
    if head_only or status in (204, 304) or 100 <= status < 200:
        return response
    if (response.header("transfer-encoding") or "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            parts.append(await reader.readexactly(size))
            await reader.readline()
        response.body = b"".join(parts)
    elif response.header("content-length") is not None:
        response.body = await reader.readexactly(int(response.header("content-length") or 0))
    else:
        response.body = await reader.read()
    return response


def request_bytes(
    method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test.local"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    given = {name.lower() for name in headers or {}}
    if (body or method in ("POST", "PUT", "PATCH")) and "content-length" not in given:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def main() -> None:
    name = sys.argv[1]
    idle = float(sys.argv[2]) if len(sys.argv) > 2 else None
    server = BackendServer(name, idle)
    print(server.port, flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
