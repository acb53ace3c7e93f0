"""Processes a killed server left behind: job processes still running after it died.

Job shells get SIGKILL when the server dies (PR_SET_PDEATHSIG, see
aicd.executors.script.die_with_parent), but what they started (a `sleep`, a
training run) lives on in its process group. On restart, before the jobs
are marked failed, those processes are found by their environment
(CI_JOB_ID of one of the jobs, CI_BUILDS_DIR of this server's home) and
killed. Linux only (/proc); elsewhere nothing is done.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

_PROC = Path("/proc")


def _environ(pid: str) -> dict[bytes, bytes] | None:
    try:
        data = (_PROC / pid / "environ").read_bytes()
    except OSError:  # gone, or not ours
        return None
    out: dict[bytes, bytes] = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key] = value
    return out


def job_processes(job_ids: Iterable[int], builds_dir: Path) -> list[int]:
    """Pids of running processes of these jobs (of the server whose builds are in builds_dir)."""
    wanted = {str(i).encode() for i in job_ids}
    if not wanted or not _PROC.is_dir():
        return []
    builds = os.fsencode(str(builds_dir))
    me = os.getpid()
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        env = _environ(entry.name)
        if env is not None and env.get(b"CI_JOB_ID") in wanted and env.get(b"CI_BUILDS_DIR") == builds:
            found.append(int(entry.name))
    return found


def kill_job_processes(job_ids: Iterable[int], builds_dir: Path) -> int:
    """SIGKILL every process (and its process group) left running by these jobs; how many were found."""
    pids = job_processes(job_ids, builds_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            pgid = os.getpgid(pid)
            if pgid != os.getpgid(0):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)
