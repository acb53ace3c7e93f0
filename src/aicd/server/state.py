"""ServerState: the objects one server process shares (app.state.aicd)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aicd.server.settings import ServerSettings

if TYPE_CHECKING:
    from aicd.core.dispatcher import Dispatcher
    from aicd.core.secrets import SecretBox
    from aicd.reliability.monitor import Monitor
    from aicd.store.accounts import AccountStore
    from aicd.store.db import Database
    from aicd.store.projects_repo import ProjectStore
    from aicd.store.repository import RunStore
    from aicd.triggers.poller import Poller


@dataclass
class ServerState:
    settings: ServerSettings
    database: Database  # one SQLAlchemy engine for all server stores
    runs: RunStore  # pipelines and jobs
    accounts: AccountStore
    projects: ProjectStore
    secrets: SecretBox
    dispatcher: Dispatcher
    poller: Poller
    monitor: Monitor | None = None  # health monitoring of every environment (started with the server)
