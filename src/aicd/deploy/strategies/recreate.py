"""recreate: drain and stop the old revision, start the new one, route to it.

Downtime between the two is expected (that is the strategy). If the new one does not come up, the
old one is started again.
"""

from __future__ import annotations

from aicd.deploy.plan import RECREATE
from aicd.deploy.strategies.base import RolloutSteps, Strategy
from aicd.errors import DeployError


class Recreate(Strategy):
    name = RECREATE
    needs_previous = False

    async def run(self, rollout: RolloutSteps) -> None:
        old = rollout.previous
        if old is not None:
            await rollout.set_weights({})
            await rollout.agent.stop_revision(old)
        try:
            await rollout.start_new()
        except DeployError:
            if old is not None:
                await rollout.restart(old)
                await rollout.set_weights({old: 100})
            raise
        rollout.previous = None  # stopped: nothing to retire
        await rollout.set_weights({rollout.revision: 100})
        await rollout.succeed(f"{rollout.revision} serves all traffic (recreate)")


__all__ = ["Recreate"]
