"""What the supervisor tells its owner: instance states, events, snapshots, the restart policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class InstanceState(StrEnum):
    STARTING = "starting"  # launched, not yet answering 200 on the health path
    READY = "ready"  # healthy; may take traffic
    UNHEALTHY = "unhealthy"  # running, but liveness probes keep failing
    CRASHED = "crashed"  # exited on its own; a restart is scheduled
    CRASH_LOOP = "crash_loop"  # crashed too often; left down for the owner to act (roll back)
    STOPPED = "stopped"  # stopped on purpose (or its start failed)


@dataclass(frozen=True)
class InstanceEvent:
    """One state change of one instance (given to the supervisor's `on_event`)."""

    revision: str
    index: int
    state: InstanceState
    reason: str  # why, in words: "healthy", "exited with code 1; restarting in 0.5s", ...
    pid: int | None
    port: int
    at: float  # time.time()


@dataclass(frozen=True)
class InstanceInfo:
    """A snapshot of one instance."""

    revision: str
    index: int
    state: InstanceState
    pid: int | None
    port: int
    restarts: int
    log: Path
    adopted: bool  # found running by this supervisor rather than started by it


EventCallback = Callable[[InstanceEvent], None]


@dataclass(frozen=True)
class RestartPolicy:
    """Restarts with exponential backoff; too many crashes in a window is a crash loop."""

    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    reset_after: float = 30.0  # up (healthy) this long before a crash: the backoff starts over
    crash_limit: int = 3  # this many crashes ...
    crash_window: float = 60.0  # ... within this many seconds: crash loop

    def __post_init__(self) -> None:
        from aicd.errors import ConfigError

        if self.initial_delay < 0 or self.factor < 1 or self.max_delay < self.initial_delay:
            raise ConfigError("restart policy: need 0 <= initial_delay <= max_delay and factor >= 1")
        if self.crash_limit < 1 or self.crash_window <= 0 or self.reset_after < 0:
            raise ConfigError("restart policy: need crash_limit >= 1, crash_window > 0, reset_after >= 0")

    def delay(self, consecutive: int) -> float:
        """The wait before restart number `consecutive` + 1 of a row (0-based)."""
        return float(min(self.max_delay, self.initial_delay * self.factor ** min(consecutive, 64)))
