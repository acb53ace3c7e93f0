"""HTTP health probes: one `GET path` on 127.0.0.1, over raw asyncio, with a short timeout.

No HTTP client library: a probe is one request on a fresh connection
(`Connection: close`), only the status line matters, and the answer is read
to its end (bounded) so the service does not log a broken pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

MAX_RESPONSE_BYTES = 64 * 1024
DRAIN_SECONDS = 0.2


@dataclass(frozen=True)
class ProbeResult:
    ok: bool  # HTTP 200
    status: int | None  # None when no HTTP answer came
    error: str  # "" when ok, else why: "connection refused", "HTTP 503", "no answer within 1s"
    elapsed: float  # seconds


async def probe(host: str, port: int, path: str, timeout: float = 1.0) -> ProbeResult:
    """GET http://host:port/path once; ok when the status is 200."""
    started = time.monotonic()
    writer: asyncio.StreamWriter | None = None
    try:
        reader, stream = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer = stream
        left = max(0.001, timeout - (time.monotonic() - started))
        status = await asyncio.wait_for(_status(reader, stream, f"{host}:{port}", path), left)
        # The rest of the answer, briefly: a server that ignores `Connection: close` must not fail it.
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(_drain(reader), DRAIN_SECONDS)
    except TimeoutError:
        return ProbeResult(False, None, f"no answer within {timeout:g}s", time.monotonic() - started)
    except ConnectionRefusedError:
        return ProbeResult(False, None, "connection refused", time.monotonic() - started)
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        return ProbeResult(False, None, reason, time.monotonic() - started)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    elapsed = time.monotonic() - started
    if status == 200:
        return ProbeResult(True, status, "", elapsed)
    return ProbeResult(False, status, f"HTTP {status}", elapsed)


async def _status(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authority: str, path: str
) -> int:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: aicd-health\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    )
    writer.write(request.encode("ascii", "replace"))
    await writer.drain()
    line = await reader.readline()
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {line[:80]!r}" if line else "connection closed, no answer")
    return int(parts[1])


async def _drain(reader: asyncio.StreamReader) -> None:
    read = 0
    while read < MAX_RESPONSE_BYTES:
        chunk = await reader.read(MAX_RESPONSE_BYTES - read)
        if not chunk:
            return
        read += len(chunk)
