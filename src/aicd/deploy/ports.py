"""Ports for service instances on 127.0.0.1.

`allocate_port` picks a port nothing uses: a random one below the kernel's
ephemeral range (so outgoing connections do not take it between the check
and the service's bind), checked by binding it, and not handed out again by
this process for a while (two instances started together never get the same
one). `check_port_free` is for a port asked for by number: a clear
ConflictError naming who holds it, when /proc tells.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from aicd.errors import ConfigError, ConflictError

HOST = "127.0.0.1"
RESERVE_SECONDS = 120.0  # a handed-out port is not handed out again for this long
_FALLBACK_RANGE = (20000, 32767)
_lock = threading.Lock()
_recent: dict[int, float] = {}


def allocate_port(host: str = HOST, *, exclude: Iterable[int] = ()) -> int:
    """A free TCP port on `host`, not in `exclude`, not handed out recently by this process."""
    low, high = _candidate_range()
    excluded = set(exclude)
    rng = random.SystemRandom()
    with _lock:
        now = time.monotonic()
        for port, at in list(_recent.items()):
            if now - at > RESERVE_SECONDS:
                del _recent[port]
        for _ in range(200):
            port = rng.randint(low, high)
            if port in excluded or port in _recent:
                continue
            if _bindable(host, port, reuse=False):
                _recent[port] = now
                return port
        # A crowded range: let the kernel choose, still never twice in a row.
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in excluded and port not in _recent:
                _recent[port] = now
                return port
    raise ConflictError(f"no free TCP port on {host}: every port tried is in use")


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on `port` now (SO_REUSEADDR, as servers bind)."""
    return _bindable(host, port, reuse=True)


def check_port_free(port: int, host: str = HOST) -> None:
    """ConfigError for a port that is not a port; ConflictError naming the holder if it is taken."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"port {port!r} is not a TCP port number (1-65535)")
    if port_is_free(port, host):
        return
    holder = port_holder(port)
    who = f" by pid {holder[0]} ({holder[1]})" if holder else ""
    raise ConflictError(
        f"port {port} on {host} is already in use{who}; stop what listens there or choose another port "
        "(or leave the port out to get a free one)"
    )


def port_holder(port: int) -> tuple[int, str] | None:
    """(pid, command line) of a process of this user listening on TCP `port`, if /proc tells."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    proc = Path("/proc")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                with contextlib.suppress(OSError):
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                    return int(entry.name), cmdline.decode(errors="replace")[:200]
                return int(entry.name), "?"
    return None


def _listening_inodes(port: int) -> set[str]:
    out: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                out.add(fields[9])
    return out


def _bindable(host: str, port: int, *, reuse: bool) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None
    return True


def _candidate_range() -> tuple[int, int]:
    """Ports below the kernel's ephemeral range (Linux: ip_local_port_range)."""
    try:
        low_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_RANGE
    if low_ephemeral - 1 - 10000 < 1000:
        return _FALLBACK_RANGE
    return 10000, low_ephemeral - 1
