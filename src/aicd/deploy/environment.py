"""What a rollout may do to its environment: the narrow interface the agent offers to rollouts.

The agent (:mod:`aicd.deploy.agent`) implements it and runs rollouts (:mod:`aicd.deploy.rollout`,
:mod:`aicd.deploy.strategies`); those see only this protocol, never the agent class, so the
dependency goes one way: agent -> rollout -> strategies -> this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from aicd.deploy.plan import RolloutPlan
    from aicd.deploy.router.factory import AnyRouter
    from aicd.deploy.supervisor.supervisor import Supervisor
    from aicd.store.deployments import DeployStore, EnvironmentRecord

T = TypeVar("T")

DRAIN_TIMEOUT = 30.0  # seconds a revision taken out of the table may take to finish its requests


class Environment(Protocol):
    """One live environment: its record, processes, router and store, and the operations on them."""

    name: str
    scope: str  # "" locally, the project's name on a server
    host: str
    home: Path  # the aicd home the environment lives in (hooks are configured there)
    releases: Path
    store: DeployStore
    env: EnvironmentRecord
    supervisor: Supervisor
    router: AnyRouter
    weights: dict[str, int]  # revisions in the router's table; 0 = kept for a fast rollback
    retiring: dict[str, asyncio.Task[None]]
    rollout: Any  # the rollout in progress (aicd.deploy.rollout.Rollout), or None

    async def db(self, fn: Callable[[], T]) -> T:
        """Run a store call off the event loop."""
        ...

    async def refresh(self) -> EnvironmentRecord: ...

    async def update_env(self, **fields: Any) -> EnvironmentRecord: ...

    async def event(
        self,
        kind: str,
        message: str,
        *,
        deployment_id: int | None = None,
        revision: str | None = None,
        data: Mapping[str, Any] | None = None,
        actor: str = "system",
    ) -> None: ...

    def backends(self, revision: str) -> list[tuple[str, int]]: ...

    def apply_weights(self, weights: Mapping[str, int]) -> None:
        """One atomic switch of the router's table: revisions not named leave it (and drain)."""
        ...

    async def stop_revision(self, revision: str, status: str = "stopped") -> bool: ...

    def status(self) -> str: ...

    def save_plan(self, plan: RolloutPlan) -> None: ...


__all__ = ["DRAIN_TIMEOUT", "Environment"]
