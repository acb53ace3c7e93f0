"""canary: the new revision beside stable, then Argo Rollouts' steps.

``set_weight``, ``pause`` (a duration, or until `aicd promote`), ``analysis`` (judge now),
``labels`` (wait until N labels arrived for each side's answers: docs/feedback.md), ``shadow``
(a copy of traffic to the canary, users get stable's answers: :mod:`.shadow`). The
analysis (threshold checks every interval; Kayenta's judge and the prediction drift check at each
``analysis`` step and before promotion) runs from the start. Stable runs for the whole canary.
"""

from __future__ import annotations

from aicd.deploy.plan import CANARY
from aicd.deploy.strategies.base import RolloutSteps, Strategy


class Canary(Strategy):
    name = CANARY

    async def run(self, rollout: RolloutSteps) -> None:
        stable = rollout.previous
        assert stable is not None
        revision = rollout.revision
        await rollout.start_new()
        await rollout.set_weights({stable: 100, revision: 0}, note=False)
        analysis = rollout.analysis(stable=stable)
        steps = rollout.plan.steps
        for index, step in enumerate(steps):
            if rollout.promote_full:
                break
            rollout.step = index
            await rollout.event(
                "step", f"step {index + 1}/{len(steps)}: {step.describe()}", data=step.to_json()
            )
            if step.kind == "set_weight":
                weight = int(step.weight or 0)
                await rollout.set_weights({stable: 100 - weight, revision: weight})
            elif step.kind == "pause":
                await rollout.hold(step.duration, analysis)
            elif step.kind == "labels":
                await rollout.wait_labels(analysis, int(step.count or 1), step.duration or 0.0)
            elif step.kind == "shadow":
                from aicd.deploy.strategies.shadow import shadow_phase

                await shadow_phase(rollout, step, analysis)
            else:
                await rollout.judge(analysis)
            await rollout.check(analysis)
        rollout.step = len(steps)
        await rollout.judge(analysis)
        await rollout.set_weights({revision: 100, stable: 0})
        await rollout.succeed(
            f"{revision} promoted: all traffic at {rollout.agent.env.url} ({rollout.plan.strategy})"
        )


__all__ = ["Canary"]
