"""The supervisor's state file and lock, so that a new supervisor finds running instances again.

`<state dir>/supervisor.json` (mode 0600: it holds the instances' env)::

    {"version": 1,
     "revisions": {"r3": {"release_dir": "/...", "spec": {...ServiceSpec.to_json()},
                          "env": {...},
                          "instances": [{"index": 0, "pid": 4242, "start_time": 912345,
                                         "port": 23456, "port_fixed": false, "state": "ready",
                                         "restarts": 0, "command": "python app.py"}]}}}

`<state dir>/supervisor.lock` is held (flock) by the one supervisor that owns
the directory for as long as it lives; the kernel drops it when that
process dies, so a restarted supervisor can take over at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.errors import ConfigError, ConflictError

STATE_FILE = "supervisor.json"
LOCK_FILE = "supervisor.lock"
VERSION = 1


@dataclass(frozen=True)
class InstanceRecord:
    index: int
    pid: int | None
    start_time: int | None
    port: int
    port_fixed: bool
    state: str
    restarts: int = 0
    command: str = ""


@dataclass(frozen=True)
class RevisionRecord:
    revision: str
    release_dir: str
    spec: dict[str, Any]
    env: dict[str, str]
    instances: list[InstanceRecord] = field(default_factory=list)


def write_state(path: Path, revisions: list[RevisionRecord]) -> None:
    """Replace the state file atomically (write, fsync, rename)."""
    doc = {
        "version": VERSION,
        "revisions": {
            r.revision: {
                "release_dir": r.release_dir,
                "spec": r.spec,
                "env": r.env,
                "instances": [vars(i) for i in r.instances],
            }
            for r in revisions
        },
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_state(path: Path) -> list[RevisionRecord]:
    """The revisions a state file records ([] when there is none); ConfigError when it is damaged."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(path, str(exc)) from None
    try:
        if doc.get("version") != VERSION:
            raise _damaged(path, f"version {doc.get('version')!r}, this aicd reads {VERSION}")
        out: list[RevisionRecord] = []
        for revision, item in doc["revisions"].items():
            instances = [
                InstanceRecord(
                    index=int(i["index"]),
                    pid=None if i["pid"] is None else int(i["pid"]),
                    start_time=None if i["start_time"] is None else int(i["start_time"]),
                    port=int(i["port"]),
                    port_fixed=bool(i["port_fixed"]),
                    state=str(i["state"]),
                    restarts=int(i.get("restarts", 0)),
                    command=str(i.get("command", "")),
                )
                for i in item["instances"]
            ]
            out.append(
                RevisionRecord(
                    revision=str(revision),
                    release_dir=str(item["release_dir"]),
                    spec=dict(item["spec"]),
                    env={str(k): str(v) for k, v in item["env"].items()},
                    instances=instances,
                )
            )
        return out
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _damaged(path, f"{type(exc).__name__}: {exc}") from None


def _damaged(path: Path, why: str) -> ConfigError:
    return ConfigError(
        f"{path}: the supervisor state file is damaged ({why}); stop the service's processes by hand "
        "if any still run, then delete the file"
    )


class StateLock:
    """The exclusive lock on a state directory; ConflictError when another supervisor holds it."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConflictError(
                f"{self.path.parent}: another supervisor (pid {holder}) manages these instances; "
                "stop it first, or use another state directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
