"""The first deployment of an environment (nothing serves yet), whatever the strategy."""

from __future__ import annotations

from aicd.deploy.strategies.base import RolloutSteps, Strategy


class First(Strategy):
    """Start, wait until healthy, route all traffic to it."""

    name = "first"
    needs_previous = False

    async def run(self, rollout: RolloutSteps) -> None:
        await rollout.start_new()
        await rollout.set_weights({rollout.revision: 100})
        await rollout.succeed(f"{rollout.revision} serves all traffic at {rollout.agent.env.url}")


__all__ = ["First"]
