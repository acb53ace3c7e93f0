"""Which process runs a local pipeline, and what to do with runs whose process is gone.

`aicd run` holds an owner file, ``home/running/<pipeline id>``, for as long as it runs the
pipeline: an exclusive ``flock`` on it, and in it the process's pid, its start time (in clock
ticks since boot, ``/proc/<pid>/stat``) and the boot id. The kernel drops the lock when the process
ends however it ends (SIGKILL, a crash, a full disk), and no other process can hold it, so a free
lock means the owner is gone even if its pid was reused since; the pid and start time are there for
people and messages. Job shells do not inherit the lock (Python opens files non-inheritable).

A later `aicd run` or `aicd runs` calls :func:`reap_stale_runs`: every run whose owner file is
unlocked and which did not finish is marked failed (its unfinished jobs ``runner_system_failure``,
with a line in their logs), the processes its jobs left behind are killed, and its workspaces
(``home/builds/<id>``) and source snapshot are removed. A run without an owner file (made by a
server sharing this store, or by an older aicd) is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from aicd.core.orphans import kill_job_processes
from aicd.errors import AicdError, ExecutorError
from aicd.executors.base import job_log_path
from aicd.executors.workspace import remove_tree
from aicd.store import Store

RUNNING_DIR = "running"
UNFINISHED = frozenset({"created", "pending", "running"})  # of a job or a pipeline
STALE_LINE = (
    "ERROR: the aicd run process that ran this job ended before the job did "
    "(killed, or it crashed): marked failed (runner_system_failure) by a later aicd command"
)


def _starttime(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass
class RunOwner:
    """The owner file of one running pipeline, locked by this process until :meth:`release`."""

    path: Path
    handle: IO[str] | None

    @classmethod
    def claim(cls, home: Path) -> RunOwner:
        """A locked owner file, not yet tied to a pipeline (see :meth:`bind`)."""
        folder = home / RUNNING_DIR
        path = folder / f"new-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 (held open: it holds the lock)
        except OSError as exc:
            raise ExecutorError(f"cannot record this run in {folder}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            pid = os.getpid()
            owner = {"pid": pid, "start": _starttime(pid), "boot_id": _boot_id(), "since": time.time()}
            handle.write(json.dumps(owner) + "\n")
            handle.flush()
        except OSError as exc:
            handle.close()
            with contextlib.suppress(OSError):
                path.unlink()
            raise ExecutorError(f"cannot record this run in {folder}: {exc.strerror or exc}") from None
        return cls(path, handle)

    def bind(self, pipeline_id: int) -> None:
        """Name the file after the pipeline this process now runs (a rename: no space needed)."""
        target = self.path.with_name(str(pipeline_id))
        os.replace(self.path, target)
        self.path = target

    def release(self) -> None:
        """The run is recorded as finished: remove the file, then let the lock go."""
        if self.handle is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        self.handle.close()
        self.handle = None


def _owner_gone(path: Path) -> dict[str, object] | None:
    """The owner's record if no process holds ``path``'s lock any more; None while one does."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return None  # its process still runs
        try:
            data = json.loads(handle.read() or "{}")
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}


def run_is_live(home: Path, pipeline_id: int) -> bool:
    """Whether an `aicd run` process still runs pipeline `pipeline_id` of this home (it holds the
    lock of its owner file): what a reader of the home (`aicd ui`) follows live."""
    path = home / RUNNING_DIR / str(pipeline_id)
    return path.is_file() and _owner_gone(path) is None


def reap_stale_runs(store: Store, home: Path) -> list[int]:
    """Mark failed the runs whose `aicd run` process is gone, and clean up after them.

    Returns the ids of the runs marked failed. Errors while cleaning are not fatal: the next
    command tries again (the owner file stays until its run is recorded as finished).
    """
    folder = home / RUNNING_DIR
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    failed: list[int] = []
    for path in entries:
        owner = _owner_gone(path)
        if owner is None:
            continue
        pid = owner.get("pid")
        if isinstance(pid, int):
            for snapshot in (home / "snapshots").glob(f"{pid}-*"):
                with contextlib.suppress(OSError):
                    remove_tree(snapshot)
        if not path.name.isdigit():  # it died before its pipeline was recorded
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        try:
            if _fail_run(store, home, int(path.name), owner):
                failed.append(int(path.name))
        except (AicdError, OSError):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
    return failed


def _fail_run(store: Store, home: Path, pipeline_id: int, owner: dict[str, object]) -> bool:
    try:
        record = store.get_pipeline(pipeline_id)
    except AicdError:
        return False  # not in this store (any more)
    jobs = store.list_jobs(pipeline_id)
    unfinished = [j for j in jobs if j.status in UNFINISHED]
    if unfinished:
        kill_job_processes([j.id for j in unfinished], home / "builds")
    builds = home / "builds" / str(pipeline_id)
    if builds.exists():
        remove_tree(builds)
    if record.status not in UNFINISHED:
        return False
    now = time.time()
    for job in unfinished:
        log_path = Path(job.log_path) if job.log_path else job_log_path(Path(record.run_dir), job.id)
        if job.status == "running":
            with contextlib.suppress(OSError):
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with open(log_path, "a", encoding="utf-8") as log:
                    log.write(STALE_LINE + "\n")
            store.update_job(
                job.id,
                status="failed",
                failure_reason="runner_system_failure",
                finished_at=now,
                log_path=str(log_path),
            )
        else:
            store.update_job(job.id, status="skipped", finished_at=now)
    pid = owner.get("pid", "?")
    store.update_pipeline(
        pipeline_id,
        status="failed",
        finished_at=now,
        error=f"the aicd run process (pid {pid}) ended before the run did (killed, or it crashed): "
        "marked failed (runner_system_failure) and its workspaces removed",
    )
    return True
