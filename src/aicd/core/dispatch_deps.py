"""What the dispatcher needs from the process that hosts it, as narrow interfaces.

The dispatcher is core: it must not know the server package. `DispatchDeps`
names the few things it reads (settings, the database and its stores, the
SecretBox); the server's `ServerState` satisfies it structurally, and so can
any other host (a test harness, a worker-side process). The dependency runs
one way: aicd.server -> aicd.core.dispatcher -> these Protocols.

Members are read-only properties, so a host may hold a subtype and may
replace its settings (the dispatcher reads them when it needs them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aicd.core.secrets import SecretBox
    from aicd.executors.sandbox import SandboxLimits
    from aicd.store.db import Database
    from aicd.store.projects_repo import ProjectStore
    from aicd.store.repository import RunStore


class DispatchSettings(Protocol):
    """The settings the dispatcher reads (a subset of the server's)."""

    @property
    def home(self) -> Path: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def unsafe_no_sandbox(self) -> bool: ...

    @property
    def job_limits(self) -> SandboxLimits: ...

    @property
    def job_network(self) -> bool: ...

    @property
    def job_hidden_paths(self) -> tuple[Path, ...]: ...

    @property
    def broker_url(self) -> str | None: ...

    @property
    def queue_prefix(self) -> str: ...

    @property
    def lease_timeout_s(self) -> float: ...

    @property
    def stuck_timeout_s(self) -> float: ...

    @property
    def resend_s(self) -> float: ...

    @property
    def database_url(self) -> str: ...


class DispatchDeps(Protocol):
    """The objects the dispatcher uses: settings, the database and its stores, the SecretBox."""

    @property
    def settings(self) -> DispatchSettings: ...

    @property
    def database(self) -> Database: ...

    @property
    def runs(self) -> RunStore: ...

    @property
    def projects(self) -> ProjectStore: ...

    @property
    def secrets(self) -> SecretBox: ...
