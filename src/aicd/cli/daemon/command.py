"""`aicd daemon status|stop`: the run daemon of this interpreter (see :mod:`aicd.cli.daemon`)."""

from __future__ import annotations

import json
import os
import socket
import time

import click

from aicd.cli.daemon.client import PROTOCOL, enabled, interpreter_key, runtime_dir, socket_path
from aicd.deploy.supervisor.proc import ProcessId, is_running, start_time_of


def _ask(path: str, what: bytes) -> str | None:
    """The daemon's one-line answer to `what`, or None when no daemon listens on `path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(PROTOCOL + b" " + what + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
    except OSError:
        return None
    return answer.decode("ascii", "replace").strip() or None


def _where() -> tuple[str | None, str | None]:
    folder = runtime_dir(os.environ)
    if folder is None:
        return None, None
    return folder, socket_path(folder, interpreter_key(os.environ))


def _fields(line: str) -> dict[str, int]:
    out = {}
    for word in line.split()[1:]:
        name, _, value = word.partition("=")
        if value.isdigit():
            out[name] = int(value)
    return out


@click.group()
def daemon() -> None:
    """The run daemon: keeps `aicd run`'s modules loaded between runs.

    `aicd run` starts it when none runs (not in CI, not with AICD_DAEMON=off) and it stops by
    itself after AICD_DAEMON_IDLE seconds without a run (900 by default).
    """


@daemon.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json: bool) -> None:
    """Whether a run daemon serves this Python, and what it has done."""
    folder, path = _where()
    answer = _ask(path, b"status") if path else None
    fields = _fields(answer) if answer else {}
    info = {
        "enabled": enabled(os.environ),
        "folder": folder,
        "socket": path,
        "running": bool(fields),
        **fields,
    }
    if as_json:
        click.echo(json.dumps(info))
        return
    if folder is None:
        click.echo("no private folder for the daemon's socket: `aicd run` runs without it")
    elif not fields:
        click.echo(f"no run daemon for this Python (socket {path})")
    else:
        click.echo(
            f"run daemon pid {fields.get('pid')}: up {fields.get('uptime')} s, "
            f"{fields.get('served')} runs served, {fields.get('runs')} running, "
            f"stops after {fields.get('idle_timeout')} s idle (socket {path})"
        )
    if not info["enabled"]:
        click.echo("AICD_DAEMON is off (or CI is set): `aicd run` does not use it")


@daemon.command()
def stop() -> None:
    """Stop this Python's run daemon (runs in progress finish first)."""
    _folder, path = _where()
    answer = _ask(path, b"stop") if path else None
    if not answer or not answer.startswith("stopping "):
        click.echo("no run daemon was running")
        return
    pid = int(answer.split()[1])
    started = start_time_of(pid)  # None once it has exited (a zombie nobody reaps counts as gone)
    process = ProcessId(pid, started) if started is not None else None
    deadline = time.monotonic() + 30
    while process is not None and is_running(process) and time.monotonic() < deadline:
        time.sleep(0.02)
    gone = process is None or not is_running(process)
    click.echo(f"run daemon {pid} stopped" if gone else f"run daemon {pid} still finishing its runs")
