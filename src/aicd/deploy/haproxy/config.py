"""HAProxy as the router: finding the binary, where its files go, and the configuration it runs.

The configuration is generated at every start and never edited by hand. Its shape is what makes an
atomic switch possible with HAProxy's runtime API alone (no reload):

- a fixed pool of backends ``s00`` ... ``sNN`` ("slots"), one per revision while the revision is
  in the table or still draining; a revision's instances are dynamic servers of its slot
  (``add server`` / ``del server``, HAProxy >= 2.4), ``balance roundrobin`` between them;
- the frontend numbers requests with a shared counter (a one-entry stick table), spreads the numbers
  over 0..99 (``61 * n mod 100``, a permutation of every 100 consecutive numbers) and looks the
  result up in an integer-range map (``0:89 s00``, ``90:99 s01``): over every 100 consecutive
  requests each revision gets exactly its weight, interleaved (90/10: one canary request in about
  every ten). A new table is a new map version, prepared entry by entry and swapped in with one
  ``commit map``: each request sees the old weights or the new ones;
- ``none``: the backend of requests when no revision has weight (503, like aicd's router);
- one log line per request (backend, server, status, termination state, latency in microseconds,
  the counted JSON answer in base64) into a ring that HAProxy forwards over a Unix stream socket
  the router listens on: lossless unless the ring (16 MiB) overflows.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aicd.errors import ConfigError

MIN_VERSION = (2, 4)  # dynamic servers (add/del server) and map versions (prepare/commit map)
NO_ROUTE = "none"
COUNTER = "requests"  # the stick table that numbers requests
SPREAD = 61  # coprime to 100, near 100 / golden ratio: consecutive requests land far apart in 0..99
SLOT_PREFIX = "s"
LOG_TAG = "aicd"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes
SAFE_PATH = re.compile(r"[A-Za-z0-9_./+-]+")
SAFE_URL_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
RING_SIZE = 16 * 1024 * 1024
INSTALL_HINT = "apt-get install haproxy (Debian/Ubuntu), dnf install haproxy, or brew install haproxy"


def find_haproxy(binary: str | None = None) -> str | None:
    """The haproxy executable: ``binary`` (a path or a name on PATH), else ``haproxy`` on PATH."""
    return shutil.which(binary or "haproxy")


def haproxy_version(binary: str) -> tuple[int, int]:
    """(major, minor) of the installed HAProxy; ConfigError when it does not run or is too old."""
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"router: cannot run {binary} -v: {exc}") from None
    found = re.search(r"HA-?Proxy version (\d+)\.(\d+)", out.stdout + out.stderr)
    if found is None:
        raise ConfigError(f"router: {binary} -v does not print an HAProxy version: {out.stdout[:200]!r}")
    version = (int(found.group(1)), int(found.group(2)))
    if version < MIN_VERSION:
        raise ConfigError(
            f"router: HAProxy {version[0]}.{version[1]} is too old: the haproxy router needs HAProxy "
            f">= {MIN_VERSION[0]}.{MIN_VERSION[1]} (dynamic servers); upgrade it, or use router: aicd"
        )
    return version


def slot_name(index: int) -> str:
    return f"{SLOT_PREFIX}{index:02d}"


def address(host: str, port: int) -> str:
    """An address as HAProxy reads it (IPv6 with the ``ipv6@`` prefix: the port is after the last colon)."""
    return f"ipv6@{host}:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class HAProxyFiles:
    """Where one router's HAProxy files live.

    ``home``: the configuration, HAProxy's stderr and the pid file (the state dir, kept for a
    look after the fact). ``run``: the stats socket, the log socket and the map, whose paths are
    written into the configuration and into runtime commands; it is ``home`` unless that path is
    too long for a Unix socket or has characters HAProxy would need quoted (then a private temp dir).
    """

    home: Path
    run: Path

    @property
    def config(self) -> Path:
        return self.home / "haproxy.cfg"

    @property
    def stderr(self) -> Path:
        return self.home / "haproxy.stderr"

    @property
    def pidfile(self) -> Path:
        return self.home / "haproxy.pid"

    @property
    def stats_socket(self) -> Path:
        return self.run / "haproxy.sock"

    @property
    def log_socket(self) -> Path:
        return self.run / "haproxy-log.sock"

    @property
    def map(self) -> Path:
        return self.run / "weights.map"


def usable_run_dir(path: Path) -> bool:
    """Whether sockets and the map can live in ``path`` (short enough, no characters to quote)."""
    longest = path / "haproxy-log.sock"
    return len(str(longest).encode()) <= MAX_SOCKET_PATH and SAFE_PATH.fullmatch(str(path)) is not None


def check_count_path(path: str) -> str:
    if SAFE_URL_PATH.fullmatch(path) is None:
        raise ConfigError(
            f"router: the counted path {path!r} must start with / and hold only URL path characters "
            "(no spaces, quotes, # or backslashes) to be used with HAProxy"
        )
    return path


@dataclass(frozen=True)
class HAProxySettings:
    bind: str  # address(host, port)
    threads: int
    slots: int
    connect_timeout: float
    response_timeout: float
    client_idle_timeout: float
    max_attempts: int
    count_path: str | None  # requests whose 2xx JSON answer is logged (FieldCount.path)


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


NO_ROUTE_BODY = r"{\"error\": \"no revision has traffic\", \"source\": \"aicd-router\"}"


def render_config(files: HAProxyFiles, s: HAProxySettings) -> str:
    """The whole haproxy.cfg for these files and settings."""
    log_format = f"{LOG_TAG} %b %s %ST %ts %rc %[date(0,us),sub(txn.t0)]" + (
        " %[var(txn.body),base64]" if s.count_path else ""
    )
    lines = [
        "# Generated by aicd (router: haproxy) at every start; edits are lost.",
        "global",
        f"    stats socket {files.stats_socket} mode 600 level admin",
        "    stats timeout 30s",
        f"    nbthread {s.threads}",
        "    noreuseport",  # a second haproxy on this port must fail, not share it
        f"    log ring@{LOG_TAG} len 65535 format raw local0",
        "",
        f"ring {LOG_TAG}",
        "    format raw",
        "    maxlen 65535",
        f"    size {RING_SIZE}",
        "    timeout connect 2s",
        "    timeout server 30s",
        f"    server agent unix@{files.log_socket}",
        "",
        "defaults",
        "    mode http",
        "    log global",
        f'    log-format "{log_format}"',
        "    option dontlognull",
        "    option abortonclose",
        "    option forwardfor",
        "    option redispatch 1",
        f"    retries {s.max_attempts - 1}",
        "    retry-on conn-failure",
        f"    timeout connect {_ms(s.connect_timeout)}",
        f"    timeout server {_ms(s.response_timeout)}",
        f"    timeout client {_ms(s.client_idle_timeout)}",
        f"    timeout http-keep-alive {_ms(s.client_idle_timeout)}",
        "    timeout http-request 30s",
        "",
        "frontend router",
        f"    bind {s.bind}",
        "    http-request set-var(txn.t0) date(0,us)",
        f"    http-request track-sc0 int(1) table {COUNTER}",
        f"    http-request set-var(txn.pick) sc0_inc_gpc0,mul({SPREAD}),mod(100)",
        "    http-request set-header X-Forwarded-Proto http",
    ]
    if s.count_path:
        counted = "{ var(txn.count) -m bool } { status 200:299 }"
        lines += [
            f"    http-request set-var(txn.count) bool(1) if {{ path -m str {s.count_path} }}",
            f"    http-response wait-for-body time 2s if {counted}",
            f"    http-response set-var(txn.body) res.body if {counted}",
        ]
    lines += [
        f"    use_backend %[var(txn.pick),map_int({files.map},{NO_ROUTE})]",
        f"    default_backend {NO_ROUTE}",
        "",
        f"backend {NO_ROUTE}",
        f'    http-request return status 503 content-type application/json string "{NO_ROUTE_BODY}"',
        "",
        f"backend {COUNTER}",
        "    stick-table type integer size 1 store gpc0",
    ]
    for i in range(s.slots):
        lines += ["", f"backend {slot_name(i)}", "    balance roundrobin"]
    return "\n".join(lines) + "\n"


def alerts(stderr_text: str) -> list[str]:
    """HAProxy's ALERT lines, without their ``[ALERT] (pid) :`` prefix."""
    out = []
    for line in stderr_text.splitlines():
        if "[ALERT]" in line:
            out.append(re.sub(r"^\[ALERT\]\s*(\(\d+\))?\s*:\s*", "", line.strip()))
    return out


def bind_failure(stderr_text: str) -> str | None:
    """The reason HAProxy could not listen (``Address already in use``), if that is why it stopped."""
    found = re.search(r"cannot bind socket \(([^)]*)\)", stderr_text)
    return found.group(1) if found else None


def read_tail(path: Path, limit: int = 4000) -> str:
    with contextlib.suppress(OSError):
        data = path.read_bytes()
        return data[-limit:].decode("utf-8", "replace")
    return ""
