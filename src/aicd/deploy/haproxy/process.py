"""The haproxy process of one router: its files, starting it, ending it, and one left behind.

haproxy runs in the foreground (``-db``), a child of the router's process, its stderr in
``haproxy.stderr`` and its pid in ``haproxy.pid`` in the state dir. Started: it is ready once it
answers on its stats socket; if it exits first, its ALERT lines say why (a port already in use is
a ConfigError, as for the aicd router). Ended: SIGUSR1 (soft stop: stop listening, let requests in
progress finish), then SIGTERM, then SIGKILL. A haproxy that a previous router of the same state dir
left running (its agent was killed) is recognised by the pid file and its command line, and ended
before a new one starts, so the port is free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aicd.deploy.haproxy.config import HAProxyFiles, address, alerts, bind_failure, read_tail, usable_run_dir
from aicd.deploy.haproxy.runtime import RuntimeAPI
from aicd.deploy.ports import allocate_port
from aicd.errors import ConfigError, DeployError

log = logging.getLogger("aicd.deploy.haproxy.router")

START_TIMEOUT = 10.0
RUN_PREFIX = "aicd-hx-"
RUN_FILE = "haproxy.run"  # the temp dir holding the sockets when the state dir's path is too long
PORT_TRIES = 5


def prepare_files(state_dir: Path | None) -> tuple[HAProxyFiles, list[Path]]:
    """The files of a router with this state dir (None: a temp dir), and the temp dirs made for it."""
    temps: list[Path] = []
    if state_dir is None:
        home = Path(tempfile.mkdtemp(prefix="aicd-haproxy-"))
        temps.append(home)
    else:
        home = state_dir
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        end_stale(HAProxyFiles(home, home))
    run = home
    if not usable_run_dir(home):
        run = Path(tempfile.mkdtemp(prefix=RUN_PREFIX))
        temps.append(run)
        if state_dir is not None:
            (home / RUN_FILE).write_text(f"{run}\n")  # for the next router, if this one is killed
    return HAProxyFiles(home, run), temps


async def run_haproxy(
    binary: str,
    files: HAProxyFiles,
    config: Callable[[int], str],
    host: str,
    port: int,
    *,
    experimental: bool = False,
) -> tuple[subprocess.Popen[bytes], RuntimeAPI, int]:
    """Start haproxy with ``config(port)`` and wait until it answers: (process, runtime API, port).

    Port 0: a free port, another one if it is taken before haproxy binds it. ConfigError when
    haproxy cannot listen, DeployError when it does not start for another reason.
    """
    for attempt in range(1 if port else PORT_TRIES):
        chosen = port or allocate_port(host)
        files.config.write_text(config(chosen))
        files.map.write_text("")
        with contextlib.suppress(FileNotFoundError):
            files.stats_socket.unlink()
        with files.stderr.open("wb") as err:
            proc = subprocess.Popen(
                [binary, "-db", "-f", str(files.config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=str(files.home),
            )
        files.pidfile.write_text(f"{proc.pid}\n")
        api = RuntimeAPI(files.stats_socket, experimental=experimental)
        try:
            failure = await _wait_ready(proc, api, files.stderr)
        except BaseException:  # cancelled (the router stops): this haproxy must not outlive it
            kill_now(proc)
            raise
        if failure is None:
            return proc, api, chosen
        reason = bind_failure(failure)
        if reason and "in use" in reason and not port and attempt + 1 < PORT_TRIES:
            continue  # a free port taken meanwhile: another one
        if reason:
            raise ConfigError(f"router: cannot listen on {host}:{chosen}: {reason} (haproxy)")
        said = "; ".join(alerts(failure)) or failure.strip()[-500:] or "no message"
        raise DeployError(f"router: haproxy did not start: {said} (see {files.stderr})")
    raise AssertionError("unreachable")


async def _wait_ready(proc: subprocess.Popen[bytes], api: RuntimeAPI, stderr: Path) -> str | None:
    """None once haproxy answers on its stats socket; its stderr if it exits first."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return read_tail(stderr) or f"haproxy exited with status {proc.returncode}"
        if api.path.exists() and api.alive():
            return None
        await asyncio.sleep(0.02)
    kill_now(proc)
    return f"[ALERT] haproxy did not answer on {api.path} within {START_TIMEOUT:g} s"


def kill_now(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


async def end(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Soft-stop haproxy (SIGUSR1: stop listening, finish requests), then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGUSR1, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        deadline = time.monotonic() + wait
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    proc.poll()


def end_stale(files: HAProxyFiles) -> None:
    """What a previous router of this state dir left (its agent was killed): its haproxy, its temp dir."""
    _end_stale_process(files)
    with contextlib.suppress(OSError):
        run = Path((files.home / RUN_FILE).read_text().strip())
        if run.name.startswith(RUN_PREFIX) and run.parent == Path(tempfile.gettempdir()):
            shutil.rmtree(run, ignore_errors=True)
        (files.home / RUN_FILE).unlink()


def _end_stale_process(files: HAProxyFiles) -> None:
    try:
        pid = int(files.pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if str(files.config).encode() not in cmdline:
        return  # the pid is someone else's now
    log.warning("ending haproxy pid %s left running by a previous router of %s", pid, files.home)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 3.0
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not running(pid):
            return


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1][:1] != "Z"
    except OSError:
        return False


def resolve(host: str, port: int) -> str:
    """``host:port`` as haproxy's runtime API takes it: an IP address (names resolved here)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConfigError(f"router: cannot resolve backend host {host!r}: {exc}") from None
        ip = ipaddress.ip_address(str(infos[0][4][0]))
    return address(str(ip), port)
