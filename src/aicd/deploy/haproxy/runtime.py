"""HAProxy's runtime API (the stats socket): one command per connection, answers checked.

Commands are short and HAProxy answers them at once, so they are sent with a blocking socket (a
timeout of a few seconds): the router's synchronous calls (``set_backends``, ``snapshot``) stay
synchronous, as the aicd router's are. A command whose answer is not the expected one raises
:class:`HAProxyError` with HAProxy's own words.
"""

from __future__ import annotations

import csv
import io
import socket
from collections.abc import Iterable
from pathlib import Path

from aicd.errors import DeployError

STAT_FIELDS = (
    "scur",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "wretr",
    "wredis",
    "cli_abrt",
)
"""Counters read from ``show stat`` for each backend (``scur`` is a gauge: streams on it now)."""

ADDED = "New server registered."
DELETED = "Server deleted."
STILL_BUSY = ("still has connections", "still has", "Only servers in maintenance", "is still")


class HAProxyError(DeployError):
    """HAProxy's runtime API refused a command or cannot be reached."""


class RuntimeAPI:
    """The admin-level stats socket of one HAProxy process."""

    def __init__(self, path: Path, *, timeout: float = 5.0, experimental: bool = False) -> None:
        self.path = path
        self.timeout = timeout
        # HAProxy 2.4 has dynamic servers behind "experimental-mode on" (a per-connection switch).
        self.prefix = "experimental-mode on; " if experimental else ""

    def raw(self, command: str) -> str:
        """Send one command line, return the whole answer (HAProxy closes after answering)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except OSError as exc:
                raise HAProxyError(
                    f"router: HAProxy is not answering on {self.path} ({exc.strerror or exc})"
                ) from None
        return b"".join(chunks).decode("utf-8", "replace")

    def run(self, command: str, expect: Iterable[str] = ("",)) -> str:
        """``command``; HAProxyError unless its answer (stripped) is one of ``expect``."""
        answer = self.raw(command).strip()
        if answer not in tuple(expect):
            raise HAProxyError(f"router: HAProxy refused {command!r}: {answer or '(no answer)'}")
        return answer

    def alive(self) -> bool:
        try:
            return bool(self.raw("show info").strip())
        except HAProxyError:
            return False

    # -- servers --------------------------------------------------------------------------------

    def add_server(self, backend: str, server: str, addr: str) -> None:
        """A new server, in maintenance until :meth:`set_state` makes it ready."""
        self.run(f"{self.prefix}add server {backend}/{server} {addr}", expect=(ADDED,))

    def set_state(self, backend: str, server: str, state: str) -> None:
        self.run(f"set server {backend}/{server} state {state}")

    def del_server(self, backend: str, server: str) -> bool:
        """Delete a server in maintenance; False while it still has requests or connections."""
        answer = self.raw(f"{self.prefix}del server {backend}/{server}").strip()
        if answer == DELETED or answer == "No such server.":
            return True
        if any(marker in answer for marker in STILL_BUSY):
            return False
        raise HAProxyError(f"router: HAProxy refused to delete server {backend}/{server}: {answer}")

    # -- the weights map ------------------------------------------------------------------------

    def replace_map(self, path: Path, entries: Iterable[tuple[str, str]]) -> None:
        """All of ``path``'s entries at once: a new version, filled, then committed in one step."""
        answer = self.raw(f"prepare map {path}").strip()
        if not answer.startswith("New version created:"):
            raise HAProxyError(f"router: HAProxy cannot prepare the weights map: {answer}")
        version = answer.rsplit(":", 1)[1].strip()
        adds = [f"add map @{version} {path} {key} {value}" for key, value in entries]
        answer = self.raw("; ".join([*adds, f"commit map @{version} {path}"])).strip()
        if answer:
            raise HAProxyError(f"router: HAProxy refused the new weights: {answer}")

    # -- counters -------------------------------------------------------------------------------

    def backend_stats(self) -> dict[str, dict[str, int]]:
        """Backend name -> the :data:`STAT_FIELDS` counters (``show stat`` of backends only)."""
        text = self.raw("show stat -1 2 -1")
        if not text.startswith("# "):
            raise HAProxyError(f"router: HAProxy's show stat answered {text[:200]!r}")
        reader = csv.reader(io.StringIO(text[2:]))
        header = next(reader)
        index = {name: header.index(name) for name in ("pxname", "svname", *STAT_FIELDS)}
        out: dict[str, dict[str, int]] = {}
        for row in reader:
            if len(row) < len(header) or row[index["svname"]] != "BACKEND":
                continue
            out[row[index["pxname"]]] = {f: int(row[index[f]] or 0) for f in STAT_FIELDS}
        return out
