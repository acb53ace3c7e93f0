"""blue-green: the new revision beside the old one, then all traffic in one table change.

When every instance is healthy (and, with ``auto_promote: false``, after `aicd promote`), all
traffic switches in one table change. The old revision keeps running, weight 0, for
``rollback_window``: `aicd rollback` within it is one switch back. With
``pre_promotion_analysis``, the new revision is checked first through its own preview address;
with ``post_promotion_analysis``, the threshold checks watch it for that long after the switch,
and a failure switches back.
"""

from __future__ import annotations

import time

from aicd.deploy.plan import BLUE_GREEN
from aicd.deploy.router.router import Router
from aicd.deploy.strategies.base import RolloutSteps, Strategy


class BlueGreen(Strategy):
    name = BLUE_GREEN

    async def run(self, rollout: RolloutSteps) -> None:
        old = rollout.previous
        assert old is not None
        plan = rollout.plan
        await rollout.start_new()
        await rollout.set_weights({old: 100, rollout.revision: 0}, note=False)
        if plan.pre_promotion_analysis:
            await pre_promotion(rollout, old)
        if not plan.auto_promote:
            await rollout.hold(None, None)
        started = time.monotonic()
        await rollout.set_weights({rollout.revision: 100, old: 0})
        await rollout.event(
            "deployment.switched",
            f"all traffic on {rollout.revision} ({(time.monotonic() - started) * 1000:.1f} ms); "
            f"{old} stays up {plan.rollback_window:g}s for a rollback",
        )
        if plan.post_promotion_analysis:
            analysis = rollout.analysis(stable=old)
            await rollout.hold(plan.post_promotion_analysis, analysis)
            await rollout.judge(analysis)
        await rollout.succeed(
            f"{rollout.revision} serves all traffic at {rollout.agent.env.url} (blue-green)"
        )


async def pre_promotion(rollout: RolloutSteps, old: str) -> None:
    """Checks on the new revision through its own preview address before it gets any user traffic."""
    agent = rollout.agent
    preview = Router(agent.host, 0)
    await preview.start()
    rollout.preview = preview
    try:
        preview.set_backends(
            {rollout.revision: agent.backends(rollout.revision)}, weights={rollout.revision: 100}
        )
        seconds = rollout.plan.pre_promotion_analysis
        await rollout.event(
            "analysis.preview",
            f"preview of {rollout.revision} at {preview.url} for {seconds:g}s: send it test traffic; "
            "the analysis checks it before the switch",
            data={"preview_url": preview.url},
        )
        analysis = rollout.analysis(stable=old)
        await rollout.hold(seconds, analysis)
        await rollout.judge(analysis)
    finally:
        rollout.preview = None
        await preview.stop(grace=5.0)


__all__ = ["BlueGreen", "pre_promotion"]
