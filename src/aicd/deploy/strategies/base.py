"""One interface for every rollout strategy, and the steps a strategy is built from.

A strategy decides the order of things (start the new revision, move traffic, wait, judge,
promote); the rollout (:class:`aicd.deploy.rollout.Rollout`) carries them out and records them,
and rolls back (raising ``RolledBack``) when a check fails. A strategy sees the rollout only
through :class:`RolloutSteps`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from aicd.deploy.analysis import CanaryAnalysis
    from aicd.deploy.environment import Environment
    from aicd.deploy.plan import RolloutPlan
    from aicd.deploy.router.router import Router


class RolloutSteps(Protocol):
    """What a strategy may do: the deployment in progress, as steps."""

    agent: Environment
    revision: str  # the revision being deployed
    previous: str | None  # the one serving before it (None: the first deployment, or stopped by recreate)
    plan: RolloutPlan
    preview: Router | None  # blue-green's preview router while its pre-promotion analysis runs
    step: int  # the canary step in progress (for status)
    promote_full: bool  # `aicd promote --full`: skip the remaining steps
    experiment: dict[str, Any] | None  # an experiment's result (stored with the deployment)
    chosen: str | None  # `aicd promote --variant b`: an experiment's variant chosen by hand

    async def event(
        self, kind: str, message: str, *, data: Mapping[str, Any] | None = None, actor: str = "system"
    ) -> None: ...

    async def start_new(self) -> None:
        """Start the new revision and wait until healthy (DeployError when it does not come up)."""
        ...

    async def restart(self, revision: str) -> None:
        """Start an earlier revision again from its recorded release."""
        ...

    async def set_weights(self, weights: Mapping[str, int], *, note: bool = True) -> None: ...

    async def succeed(self, message: str) -> None:
        """Record the new revision as stable; the previous one retires after the rollback window."""
        ...

    def analysis(self, *, stable: str) -> CanaryAnalysis:
        """A canary analysis of the new revision against ``stable``, from now."""
        ...

    async def judge(self, analysis: CanaryAnalysis) -> None:
        """The final verdict now; rolls back on a failure."""
        ...

    async def check(self, analysis: CanaryAnalysis | None) -> None:
        """Roll back now if something failed (an instance, an abort, a threshold check)."""
        ...

    async def hold(self, duration: float | None, analysis: CanaryAnalysis | None) -> None:
        """Wait ``duration`` seconds (None: until promoted), checking all along."""
        ...

    async def conclude(self, keep: str, reason: str) -> None:
        """The new revision is not kept: ``keep`` serves all traffic as stable; recorded rejected."""
        ...

    async def fail(self, reason: str) -> None:
        """Roll back now for ``reason`` (raises)."""
        ...

    async def wait_labels(self, analysis: CanaryAnalysis, count: int, timeout: float) -> None:
        """Wait until ``count`` labels arrived for each side (rolls back after ``timeout`` s)."""
        ...


class Strategy(ABC):
    """A way to replace the serving revision with a new one."""

    name: ClassVar[str]
    needs_previous: ClassVar[bool] = True  # False: also runs when nothing serves yet

    @abstractmethod
    async def run(self, rollout: RolloutSteps) -> None:
        """Carry the deployment through to success (``rollout.succeed``) or raise."""


__all__ = ["RolloutSteps", "Strategy"]
