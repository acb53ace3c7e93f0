"""The environment agent's control channel: JSON lines over a Unix socket.

A request is one JSON object on one line: ``{"op": "deploy", ...}``. The agent answers with
any number of progress lines ``{"event": {...}}`` and then exactly one final line,
``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": {"type": "ConflictError",
"message": "..."}}``; then it closes the connection. A client that goes away does not stop what
it asked for: a rollout belongs to the agent, not to the connection.

The socket lives in a short private directory (``$XDG_RUNTIME_DIR/aicd`` or ``/tmp/aicd-<uid>``,
mode 0700), named after a hash of the environment's state directory: Unix socket paths are
limited to 107 bytes, state directories in temporary folders are often longer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from aicd import errors as errors_module
from aicd.errors import AicdError, DeployError

Json = dict[str, Any]
Emit = Callable[[Json], None]
Handler = Callable[[Json, Emit], Awaitable[Json]]
MAX_LINE = 4 * 1024 * 1024


def socket_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    base = Path(runtime) / "aicd" if runtime and Path(runtime).is_dir() else Path(f"/tmp/aicd-{os.getuid()}")
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    if base.stat().st_uid != os.getuid():
        raise DeployError(f"{base}: belongs to another user; set XDG_RUNTIME_DIR to a private directory")
    os.chmod(base, 0o700)
    return base


def socket_path(state_dir: Path) -> Path:
    digest = hashlib.sha256(os.fsencode(str(Path(state_dir).resolve()))).hexdigest()[:20]
    return socket_dir() / f"env-{digest}.sock"


def encode_error(exc: BaseException) -> Json:
    kind = type(exc).__name__ if isinstance(exc, AicdError) else "DeployError"
    message = str(exc) if isinstance(exc, AicdError) else f"the agent failed: {type(exc).__name__}: {exc}"
    return {"type": kind, "message": message}


def decode_error(error: Json) -> AicdError:
    kind = getattr(errors_module, str(error.get("type", "")), None)
    message = str(error.get("message", "the agent failed"))
    if isinstance(kind, type) and issubclass(kind, AicdError):
        try:
            return kind(message)
        except TypeError:
            pass
    return DeployError(message)


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Listen on `path` (a stale socket file is replaced) and answer requests with `handler`."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def emit(event: Json) -> None:
            if not writer.is_closing():
                writer.write(json.dumps({"event": event}).encode() + b"\n")

        try:
            line = await reader.readline()
            if not line:
                return
            try:
                request = json.loads(line)
                if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                    raise ValueError("a request is a JSON object with an 'op'")
            except ValueError as exc:
                reply: Json = {
                    "ok": False,
                    "error": {"type": "ConfigError", "message": f"bad request: {exc}"},
                }
            else:
                try:
                    reply = {"ok": True, "result": await handler(request, emit)}
                except Exception as exc:
                    reply = {"ok": False, "error": encode_error(exc)}
            if not writer.is_closing():
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    if path.exists() or path.is_symlink():
        path.unlink()
    server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_LINE)
    os.chmod(path, 0o600)
    return server


def request(path: Path, body: Json, *, on_event: Emit | None = None, timeout: float | None = None) -> Json:
    """Send one request and wait for its final answer (progress lines go to `on_event`)."""
    for message in stream(path, body, timeout=timeout):
        if "event" in message:
            if on_event is not None:
                on_event(message["event"])
            continue
        if message.get("ok"):
            result = message.get("result")
            return result if isinstance(result, dict) else {}
        raise decode_error(message.get("error") or {})
    raise DeployError("the environment agent closed the connection without an answer; see its log")


def stream(path: Path, body: Json, *, timeout: float | None = None) -> Iterator[Json]:
    """The raw answer lines of one request (blocking; for the CLI)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5.0)
        sock.connect(str(path))
        sock.settimeout(timeout)
        sock.sendall(json.dumps(body).encode() + b"\n")
        with sock.makefile("rb") as lines:
            for line in lines:
                if line.strip():
                    yield json.loads(line)
    except TimeoutError:
        raise DeployError(f"the environment agent did not answer within {timeout:g}s") from None
    finally:
        sock.close()


def reachable(path: Path) -> bool:
    """Something is listening on the socket."""
    if not path.exists():
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(1.0)
        sock.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        sock.close()


async def arequest(path: Path, body: Json) -> AsyncIterator[Json]:
    """The answer lines of one request, from async code (tests, the server)."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
    try:
        writer.write(json.dumps(body).encode() + b"\n")
        await writer.drain()
        while line := await reader.readline():
            yield json.loads(line)
    finally:
        writer.close()
