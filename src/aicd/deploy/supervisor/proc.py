"""Processes of service instances: launch in their own group, identify, wait for, stop (Linux).

A process is identified by its pid *and* its start time (field 22 of
/proc/<pid>/stat, clock ticks since boot), so a pid the kernel has reused
for another program is never taken for an instance. Waiting for an exit
uses a pidfd (which also works for processes that are not our children,
e.g. those adopted after a restart of the supervisor), else polls /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aicd.errors import DeployError
from aicd.executors.script import group_alive

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start_time: int  # /proc/<pid>/stat starttime


def start_time_of(pid: int) -> int | None:
    """The start time of a live (not zombie) process `pid`, None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X", b"x"):
        return None
    return int(fields[19])


def is_running(proc: ProcessId) -> bool:
    """Whether `proc` is still running: same pid, same start time, not a zombie."""
    return start_time_of(proc.pid) == proc.start_time


def launch(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path
) -> tuple[subprocess.Popen[bytes], ProcessId]:
    """Start `argv` in `cwd` as the leader of a new session and process group, output appended to log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
    except FileNotFoundError as exc:
        missing = exc.filename if exc.filename else argv[0]
        raise DeployError(
            f"cannot start {argv[0]!r}: {missing} not found (cwd {cwd}); check service.command "
            "and that the release directory holds the service"
        ) from None
    except PermissionError as exc:
        raise DeployError(f"cannot start {argv[0]!r}: {exc.strerror} (cwd {cwd})") from None
    except OSError as exc:
        raise DeployError(f"cannot start {argv[0]!r}: {exc.strerror or exc} (cwd {cwd})") from None
    started = start_time_of(popen.pid)
    if started is None:  # gone already (exit right after exec): its start time no longer matters
        started = -1
    return popen, ProcessId(popen.pid, started)


async def wait_exit(proc: ProcessId, popen: subprocess.Popen[bytes] | None) -> int | None:
    """Wait until `proc` exits; its exit status when it is our child (`popen`), else None."""
    fd = _pidfd(proc.pid)
    if fd is not None:
        try:
            if popen is not None or is_running(proc):  # the pidfd holds *this* process
                loop = asyncio.get_running_loop()
                gone: asyncio.Future[None] = loop.create_future()
                loop.add_reader(fd, lambda: None if gone.done() else gone.set_result(None))
                try:
                    await gone
                finally:
                    loop.remove_reader(fd)
        finally:
            os.close(fd)
    else:
        while (popen.poll() is None) if popen is not None else is_running(proc):
            await asyncio.sleep(POLL_SECONDS)
    if popen is None:
        return None
    while popen.poll() is None:  # exited: reaping is immediate
        await asyncio.sleep(0.01)
    return popen.returncode


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exited (exit status unknown: the process was adopted)"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def group_running(proc: ProcessId) -> bool:
    """Whether the process group `proc` leads still has a running member."""
    if is_running(proc):
        return True
    if start_time_of(proc.pid) is not None:
        # Another process has the leader's pid now, so the kernel freed the group id:
        # the group is empty and that pid is not ours to signal.
        return False
    return group_alive(proc.pid)


async def stop_group(
    proc: ProcessId, popen: subprocess.Popen[bytes] | None, sig: int, grace: float
) -> str | None:
    """Send `sig` to the group `proc` leads, SIGKILL after `grace` s.

    How it ended ("SIGTERM", "SIGKILL after 10s"), or None when nothing of the group was running.
    """
    _reap(popen)
    if not group_running(proc):
        return None
    _signal_group(proc.pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        _reap(popen)
        if not group_running(proc):
            return signal.Signals(sig).name
    _signal_group(proc.pid, signal.SIGKILL)
    for _ in range(100):
        _reap(popen)
        if not group_running(proc):
            break
        await asyncio.sleep(0.01)
    return f"SIGKILL after {grace:g}s"


def log_tail(path: Path, lines: int = 5, width: int = 200) -> str:
    """The last `lines` lines of a log, each cut to `width` characters ("" when none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16 * 1024))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").splitlines()
    kept = [line if len(line) <= width else line[:width] + "..." for line in text if line.strip()]
    return "\n".join(kept[-lines:])


def _reap(popen: subprocess.Popen[bytes] | None) -> None:
    if popen is not None:
        popen.poll()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _pidfd(pid: int) -> int | None:
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError:  # no pidfd on this kernel / blocked: poll instead
        return None
