"""Leaving nothing behind: stop the demo's environments, then any process still living in its folder.

The demo's processes (environment agents, service instances, jobs) all run with their working
directory, or their command line, inside the demo's temporary folder; that is how they are found
in /proc. Each is asked to stop first (the agent stops its services); only what is still there
after `grace` seconds is sent SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from aicd.errors import AicdError, ConflictError

Echo = Callable[[str], None]


def processes_under(folder: Path) -> dict[int, str]:
    """pid -> command line of every process (not this one) whose cwd or command line is in `folder`."""
    root = str(folder.resolve())
    found: dict[int, str] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        inside = (
            cwd == root or cwd.startswith(root + "/") or (root + "/") in cmdline or cmdline.endswith(root)
        )
        if inside and cmdline:  # zombies have no command line: their parent reaps them
            found[int(entry.name)] = cmdline
    return found


def stop_environments(home: Path, database_url: str, echo: Echo) -> list[str]:
    """Stop every environment recorded in `database_url` whose agent answers; their names."""
    from aicd.deploy import client, control
    from aicd.store.deployments import open_deploy_store

    if database_url.startswith("sqlite:///") and not Path(database_url.removeprefix("sqlite:///")).exists():
        return []
    location = client.Location(home, database_url)
    with open_deploy_store(database_url) as store:
        names = [e.name for e in store.list_environments(scope="")]
    stopped = []
    for name in names:
        if not client.agent_running(location, name):
            continue
        socket = client.agent_socket(location, name)
        try:
            try:
                control.request(socket, {"op": "stop"}, timeout=30)
            except ConflictError:  # a rollout is under way (Ctrl-C mid-canary): roll it back first
                echo(f"{name}: a deployment is in progress; aborting it")
                control.request(socket, {"op": "abort", "actor": "aicd demo"}, timeout=60)
                control.request(socket, {"op": "stop"}, timeout=30)
        except (AicdError, OSError) as exc:
            echo(f"{name}: could not stop it cleanly ({exc}); its processes will be ended")
            continue
        stopped.append(name)
    return stopped


def end_processes(folder: Path, echo: Echo, *, grace: float = 20.0) -> list[int]:
    """Wait up to `grace` s for the processes in `folder` to exit, then end the rest; their pids."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not processes_under(folder):
            return []
        time.sleep(0.1)
    left = processes_under(folder)
    for pid, cmdline in left.items():
        echo(f"ending process {pid} ({cmdline[:100]})")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and processes_under(folder):
        time.sleep(0.1)
    for pid in processes_under(folder):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return sorted(left)
