"""shadow: the candidate beside stable gets a copy of real traffic; users get only stable's answers.

A ``shadow`` step (the whole of ``strategy: shadow``, or a phase of a canary before its first
``set_weight``) starts the candidate's mirror in the router (:mod:`aicd.deploy.router.mirror`):
a share of finished requests (``shadow.percent`` of those of ``shadow.methods``; GET, HEAD and
OPTIONS by default: mirroring writes can corrupt data) is copied to the candidate after stable
answered, through a bounded queue (copies dropped and counted when the candidate lags), so a
user's request is never delayed or failed by it. The candidate's answers are recorded as its
traffic (the threshold checks, the judge and the drift check read them as a canary's) and their
counted field (``predictions:``) is compared with stable's answer to the same request.

At the end of the step the agreement rate is judged: below ``shadow.agreement`` (default 0.95)
over at least ``shadow.min_compared`` compared answers, the candidate is rolled back before any
user saw it (recorded ``rejected``, not a change failure); with fewer, the step says so and goes on.
Then the analysis judges latency, errors and drift as at an ``analysis`` step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aicd.deploy.plan import SHADOW, Step
from aicd.deploy.router.router import Router
from aicd.deploy.strategies.base import RolloutSteps
from aicd.deploy.strategies.canary import Canary
from aicd.errors import DeployError

if TYPE_CHECKING:
    from aicd.deploy.analysis import CanaryAnalysis


class Shadow(Canary):
    """The canary's steps, by default one shadow phase and then promotion."""

    name = SHADOW


async def shadow_phase(rollout: RolloutSteps, step: Step, analysis: CanaryAnalysis) -> None:
    """Mirror traffic to the candidate for ``step.duration`` seconds, then judge its answers."""
    agent = rollout.agent
    router = agent.router
    if not isinstance(router, Router):
        raise DeployError(
            f"environment {agent.name}: shadow traffic needs router: aicd (HAProxy's router mirrors nothing)"
        )
    settings = dict(rollout.plan.shadow or {})
    percent = float(settings.get("percent", 100.0))
    methods = [str(m) for m in settings.get("methods", ["GET", "HEAD", "OPTIONS"])]
    threshold = float(settings.get("agreement", 0.95))
    least = int(settings.get("min_compared", 50))
    router.start_mirror(
        rollout.revision,
        agent.backends(rollout.revision),
        percent=percent,
        methods=methods,
        tolerance=float(settings.get("tolerance", 0.0)),
        queue_size=int(settings.get("queue", 1000)),
    )
    stats = None
    try:
        await rollout.event(
            "shadow.started",
            f"{rollout.revision} gets a copy of {percent:g}% of {', '.join(methods)} requests for "
            f"{step.duration or 0:g}s; users get only {analysis.stable}'s answers",
            data={"percent": percent, "methods": methods},
        )
        await rollout.hold(step.duration or 0.0, analysis)
    finally:
        stats = await router.stop_mirror()
    stats = stats or {}
    agreement = stats.get("agreement")
    compared = int(stats.get("compared") or 0)
    summary = (
        f"shadow: {stats.get('mirrored', 0)} requests mirrored, {stats.get('dropped', 0)} dropped, "
        f"{stats.get('failed', 0)} failed; "
        + (
            f"predictions agree on {agreement:.1%} of {stats.get('elements', 0)} "
            f"(in {compared} answers; at least {threshold:.0%} wanted)"
            if agreement is not None
            else "no answers to compare"
        )
    )
    await rollout.event("shadow.result", summary, data=stats)
    if agreement is not None and compared >= least and agreement < threshold:
        await rollout.fail(f"analysis failed: {summary}")
    await rollout.judge(analysis)


__all__ = ["Shadow", "shadow_phase"]
