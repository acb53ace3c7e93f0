"""experiment: an A/B test between the serving revision and the new one (and earlier ones).

Variant ``a`` is the revision serving now (the control), ``b`` the new one, ``c``, ``d``... earlier
revisions named in ``experiment.revisions`` (started again from their releases). The router assigns
each user to a variant by a hash of the experiment's id and the user's key (a header or cookie;
without one, each request on its own) at the configured weights, and records each request on its
variant's revision (:mod:`aicd.deploy.router.experiment`). The threshold checks watch the new
revision all along, as in a canary: a failing check rolls everything back to ``a``.

The verdict (:mod:`aicd.delivery.experiment_stats`) is taken once, when every variant has the
planned sample of the primary metric (labels for live accuracy, reported values for a business
metric): a fixed horizon, computed before the start from ``effect``, ``alpha`` and ``power``, and
announced in the ``experiment.started`` event. A variant significantly better than ``a`` that also
passes the guardrails (the canary judge's errors and latency against ``a``) wins. If ``duration``
ends first, the result is inconclusive and ``a`` keeps serving.

With ``auto_promote: true`` the winner takes all traffic at once; with ``false`` the deployment
pauses with the result until `aicd promote ENV` (the winner) or `aicd promote ENV --variant b`
(chosen by hand). `aicd promote ENV --full [--variant b]` ends the experiment early (then the
verdict is inconclusive unless a variant is chosen: an early look is not a test). When the new
revision is not kept, the deployment is recorded ``rejected`` with the result; the result is stored
with the deployment either way (``analysis.experiment``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aicd.deploy.plan import EXPERIMENT, experiment_design
from aicd.deploy.router.experiment import Experiment
from aicd.deploy.router.router import Router
from aicd.deploy.strategies.base import RolloutSteps, Strategy
from aicd.errors import DeployError

if TYPE_CHECKING:
    from aicd.delivery.experiment_stats import Design, ExperimentResult, VariantData
    from aicd.deploy.analysis import CanaryAnalysis

PROGRESS_EVERY = 10.0  # seconds between progress events
CHECK_EVERY = 1.0  # seconds between sample counts (no p-value is looked at before the horizon)


class ExperimentStrategy(Strategy):
    name = EXPERIMENT

    async def run(self, rollout: RolloutSteps) -> None:
        agent = rollout.agent
        control = rollout.previous
        assert control is not None
        router = agent.router
        if not isinstance(router, Router):
            raise DeployError(
                f"environment {agent.name}: experiments need router: aicd (HAProxy's assigns no variants)"
            )
        settings: dict[str, Any] = dict(rollout.plan.experiment or {})
        extra: dict[str, str] = dict(settings.get("revisions") or {})
        revisions = {"a": control, "b": rollout.revision, **extra}
        if len(set(revisions.values())) != len(revisions):
            raise DeployError(f"experiment: a variant names a revision twice ({revisions})")
        weights: dict[str, int] = dict(settings.get("weights") or {"a": 50, "b": 50})
        design = experiment_design(settings)
        await rollout.start_new()
        started_extra: list[str] = []
        for revision in extra.values():
            if revision not in agent.supervisor.revisions():
                await rollout.restart(revision)
                started_extra.append(revision)
        key = settings.get("key") or {}
        experiment = Experiment(
            str(settings.get("id") or f"{agent.name}-{rollout.revision}"),
            [(name, revisions[name], weights[name]) for name in revisions],
            header=key.get("header"),
            cookie=key.get("cookie"),
            override=bool(settings.get("override", True)),
            metric_header=settings.get("metric_header"),
        )
        await rollout.set_weights({revisions[name]: weights[name] for name in revisions})
        baseline = router.snapshot()
        analyses = {
            name: rollout.analysis(stable=control) if name == "b" else _extra_analysis(rollout, control, rev)
            for name, rev in revisions.items()
            if name != "a"
        }
        router.start_experiment(experiment)
        keep: str | None = None
        try:
            who = f"by {next(iter(key))} {next(iter(key.values()))}" if key else "per request (no user key)"
            await rollout.event(
                "experiment.started",
                f"experiment {experiment.id}: "
                + ", ".join(f"{n} = {revisions[n]} {weights[n]}%" for n in revisions)
                + f", users assigned {who}; verdict at {design.explain()} (fixed horizon), "
                f"at most {settings.get('duration', 3600.0):g}s",
                data={
                    "id": experiment.id,
                    "variants": revisions,
                    "weights": weights,
                    "design": design.to_json(),
                },
            )
            result = await _run_to_horizon(rollout, router, experiment, design, baseline, analyses, settings)
            rollout.experiment = {"id": experiment.id, "variants": revisions, **result.to_json()}
            await rollout.event("experiment.result", result.reason, data=rollout.experiment)
            winner = result.winner
            if rollout.chosen is None and not rollout.plan.auto_promote:
                await rollout.hold(None, analyses["b"])
            if rollout.chosen is not None:
                winner = rollout.chosen
                rollout.experiment["promoted_by_hand"] = winner
            keep = revisions[winner]
        except BaseException:
            for revision in started_extra:  # rolled back or aborted: the earlier revisions stop too
                if revision != agent.env.stable_revision and revision in agent.supervisor.revisions():
                    await agent.stop_revision(revision)
            raise
        finally:
            stats = router.stop_experiment()
            if rollout.experiment is not None and stats is not None:
                rollout.experiment["router"] = stats
        if keep == rollout.revision:
            await rollout.set_weights(
                {rollout.revision: 100, **{r: 0 for r in revisions.values() if r != keep}}
            )
            for revision in started_extra:
                await agent.stop_revision(revision)
            await rollout.succeed(
                f"experiment {experiment.id}: b ({rollout.revision}) promoted: all traffic at {agent.env.url}"
            )
            return
        reason = (
            result.reason
            if winner == result.winner
            else f"experiment {experiment.id}: {winner} ({keep}) chosen by hand; {result.reason}"
        )
        name = next(n for n, r in revisions.items() if r == keep)
        await rollout.conclude(keep, f"{reason}; {name} ({keep}) serves all traffic")
        for revision in [*started_extra, control]:
            if revision != keep and revision in agent.supervisor.revisions():
                await agent.stop_revision(revision)


def _extra_analysis(rollout: RolloutSteps, control: str, revision: str) -> CanaryAnalysis:
    """The guardrail analysis of an earlier revision against the control (a canary analysis of it)."""
    from aicd.delivery.live_quality import QualityConfig
    from aicd.deploy.analysis import CanaryAnalysis, default_analysis

    return CanaryAnalysis(
        rollout.analysis(stable=control).config or default_analysis(),
        stable=control,
        canary=revision,
        baseline=rollout.agent.router.snapshot(),
        started_at=time.time(),
        interval_override=rollout.plan.analysis_interval,
        quality=QualityConfig.from_json(rollout.plan.feedback or {}),
    )


async def _run_to_horizon(
    rollout: RolloutSteps,
    router: Router,
    experiment: Experiment,
    design: Design,
    baseline: dict[str, Any],
    analyses: dict[str, CanaryAnalysis],
    settings: dict[str, Any],
) -> ExperimentResult:
    """Wait until every variant has its sample (or the time is up), checking the new revision all
    along; then the verdict, once."""
    from aicd.delivery.experiment_stats import decide

    needed = design.per_variant()
    duration = float(settings.get("duration") or 3600.0)
    deadline = time.monotonic() + duration
    announced = time.monotonic()
    while True:
        data = _variant_data(router, experiment, design, baseline)
        counts = {v.name: v.n for v in data}
        if all(n >= needed for n in counts.values()) or rollout.promote_full:
            break
        now = time.monotonic()
        if now >= deadline:
            break
        if now - announced >= PROGRESS_EVERY:
            announced = now
            await rollout.event(
                "experiment.progress",
                "experiment samples: "
                + ", ".join(f"{n} {c}/{needed}" for n, c in counts.items())
                + f" ({deadline - now:.0f}s left)",
                data={"samples": counts, "needed": needed},
            )
        await rollout.hold(min(CHECK_EVERY, max(0.0, deadline - now)), analyses["b"])
    snapshot = router.snapshot()
    guardrails: dict[str, str | None] = {}
    for name, analysis in analyses.items():
        report = analysis.final(snapshot, time.time(), guardrails=True)
        guardrails[name] = None if report.passed else report.reason
    result = decide(design, data, guardrails=guardrails, final=True)
    assert result is not None
    return result


def _variant_data(
    router: Router, experiment: Experiment, design: Design, baseline: dict[str, Any]
) -> list[VariantData]:
    """Each variant's samples of the primary metric since the experiment began (control first)."""
    from aicd.delivery.experiment_stats import ACCURACY, MANN_WHITNEY, VariantData

    snapshot = router.snapshot()
    out = []
    for variant in experiment.variants:
        if design.metric == ACCURACY:
            now = snapshot["revisions"].get(variant.revision, {}).get("quality", {})
            before = baseline["revisions"].get(variant.revision, {}).get("quality", {})
            labels = int(now.get("labels", 0)) - int(before.get("labels", 0))
            correct = int(now.get("correct", 0)) - int(before.get("correct", 0))
            out.append(VariantData(variant.name, variant.revision, n=labels, successes=correct))
        else:
            out.append(
                VariantData(
                    variant.name,
                    variant.revision,
                    n=variant.n,
                    total=variant.sum,
                    total_sq=variant.sum_sq,
                    values=tuple(variant.values) if design.test == MANN_WHITNEY else (),
                )
            )
    return out


__all__ = ["ExperimentStrategy"]
