"""Bringing environments back after a restart of the machine (or of their agents).

An environment's services belong to its agent process, which outlives `aicd server` and the jobs
that deployed. After a reboot nothing runs: :func:`restore_agents` starts the agent of every
environment that was serving (stable revision set, not stopped on purpose) and whose agent does
not answer; each agent finds its instances again or restarts them, on the same address.
`aicd server` calls it at start; `aicd env start ENV` does it for one environment.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aicd.deploy.client import Location, agent_running, ensure_agent
from aicd.errors import AicdError
from aicd.store.deployments import DeployStore

log = logging.getLogger(__name__)


def restore_agents(store: DeployStore, home: Path, database_url: str) -> list[str]:
    """Start the missing agents; the names ("scope/name" on a server) of those started."""
    started: list[str] = []
    try:
        environments = store.list_environments(scope=None)
    except AicdError as exc:
        log.warning("environments could not be read, none restored: %s", exc)
        return started
    for env in environments:
        if env.stable_revision is None or env.status in ("stopped", "idle"):
            continue
        location = Location(home, database_url, env.scope)
        label = f"{env.scope}/{env.name}" if env.scope else env.name
        try:
            if agent_running(location, env.name):
                continue
            ensure_agent(location, env.name, port=env.router_port)
            started.append(label)
            log.info("environment %s: agent started again at %s", label, env.url)
        except (AicdError, OSError) as exc:
            log.warning("environment %s: its agent could not be started again: %s", label, exc)
    return started
