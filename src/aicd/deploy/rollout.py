"""A deployment in progress inside the environment agent, and the control operations on it.

The strategies (:mod:`aicd.deploy.strategies`: recreate, blue-green, canary, and the first
deployment) decide the order of the steps; :class:`Rollout` carries them out against the
environment (:class:`aicd.deploy.environment.Environment`, which the agent implements) and records
every one of them.

Automatic rollback: a failed analysis, an unhealthy canary instance (liveness probes failing) or a
crash loop sends all traffic back to stable at once (one table change: the canary's in-flight
requests finish there, new ones go to stable), the canary is stopped, the deployment is recorded
``rolled_back`` with the reason and the time from the decision to the switch, and a change-failure
incident is recorded from when the canary first took traffic to the switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicd.deploy.environment import DRAIN_TIMEOUT, Environment
from aicd.deploy.plan import EXPERIMENT, RECREATE, STEPPED, RolloutPlan
from aicd.deploy.router.router import Router
from aicd.deploy.spec import ServiceSpec
from aicd.deploy.strategies import choose
from aicd.deploy.supervisor.supervisor import InstanceEvent, InstanceState
from aicd.errors import AicdError, ConflictError, DeployError, NotFoundError
from aicd.store.deployments import DeploymentRecord

if TYPE_CHECKING:
    from aicd.delivery.judge_config import AnalysisConfig
    from aicd.deploy.analysis import AnalysisReport, CanaryAnalysis

log = logging.getLogger("aicd.deploy.rollout")
Json = dict[str, Any]
TICK = 0.2  # seconds between analysis ticks and checks while a step waits


class RolledBack(Exception):
    """The rollout ended by going back to the previous revision (already recorded)."""


class Rollout:
    """One deployment in progress."""

    def __init__(
        self,
        agent: Environment,
        deployment: DeploymentRecord,
        revision: str,
        release_dir: Path,
        spec: ServiceSpec,
        plan: RolloutPlan,
        analysis: AnalysisConfig | None,
        actor: str,
    ) -> None:
        self.agent = agent
        self.deployment = deployment
        self.revision = revision
        self.release_dir = release_dir
        self.spec = spec
        self.plan = plan
        self.analysis_config = analysis
        self.actor = actor
        self.previous = (
            agent.env.stable_revision if agent.env.stable_revision in agent.supervisor.revisions() else None
        )
        self.finished = False
        self.paused = False
        self.pauses = 0
        self.step = 0
        self.resume = asyncio.Event()
        self.promote_full = False
        self.failure: str | None = None
        self.failure_status = "rolled_back"
        self.failure_actor = "system"
        self.traffic_at: float | None = None
        self.report: AnalysisReport | None = None
        self.task: asyncio.Task[None] | None = None
        self.preview: Router | None = None  # blue-green's preview address during pre-promotion analysis
        self.experiment: Json | None = None  # an experiment's result, stored with the deployment
        self.chosen: str | None = None  # `aicd promote --variant b`: the variant promoted by hand

    def snapshot(self) -> dict[str, Any]:
        """The router's counters; with a preview router, the new revision's come from it."""
        snap = self.agent.router.snapshot()
        if self.preview is not None:
            own = self.preview.snapshot()["revisions"].get(self.revision)
            if own is not None:
                snap["revisions"][self.revision] = own
        return snap

    # -- helpers ---------------------------------------------------------------------------------

    async def event(
        self, kind: str, message: str, *, data: Mapping[str, Any] | None = None, actor: str = "system"
    ) -> None:
        await self.agent.event(
            kind, message, deployment_id=self.deployment.id, revision=self.revision, data=data, actor=actor
        )

    async def set_weights(self, weights: Mapping[str, int], *, note: bool = True) -> None:
        self.agent.apply_weights(weights)
        if self.traffic_at is None and weights.get(self.revision, 0) > 0:
            self.traffic_at = time.time()
        canary = (
            self.revision
            if self.revision in weights and self.revision != self.agent.env.stable_revision
            else None
        )
        await self.agent.update_env(weights=dict(weights), canary_revision=canary, status=self.agent.status())
        if note:
            text = ", ".join(f"{rev} {w}%" for rev, w in weights.items())
            await self.event("weight.set", f"traffic: {text or 'none'}", data={"weights": dict(weights)})

    async def set_deployment(self, **fields: Any) -> None:
        dep_id = self.deployment.id
        self.deployment = await self.agent.db(lambda: self.agent.store.set_deployment(dep_id, **fields))
        if fields.get("finished"):
            await finished_event(self.agent, self.deployment)

    async def revision_status(self, revision: str, status: str, **extra: Any) -> None:
        env_id = self.agent.env.id
        await self.agent.db(
            lambda: self.agent.store.update_revision(env_id, revision, status=status, **extra)
        )

    def instance_event(self, event: InstanceEvent) -> None:
        if event.revision != self.revision or self.failure is not None:
            return
        if event.state in (InstanceState.CRASH_LOOP, InstanceState.UNHEALTHY):
            what = (
                "is in a crash loop"
                if event.state == InstanceState.CRASH_LOOP
                else "failed its health checks"
            )
            self.failure = f"revision {self.revision}: instance {event.index} {what} ({event.reason})"
            self.resume.set()

    def result(self) -> Json:
        return {
            "deployment": self.deployment.to_json(),
            "url": self.agent.env.url,
            "paused": self.paused and not self.finished,
            "finished": self.finished,
            "step": self.step,
            "steps": [s.to_json() for s in self.plan.steps] if self.plan.strategy in STEPPED else [],
            "analysis": self.report.to_json() if self.report is not None else None,
        }

    # -- the run ---------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.event(
                "deployment.started",
                f"deployment #{self.deployment.number}: {self.revision} ({self.plan.strategy})"
                + (f" replacing {self.previous}" if self.previous else ""),
                actor=self.actor,
            )
            await choose(self.plan.strategy, serving=self.previous is not None).run(self)
        except RolledBack:
            pass
        except AicdError as exc:
            await self._failed(str(exc))
        except Exception as exc:
            log.exception("rollout failed")
            await self._failed(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.finished = True
            self.paused = False
            with contextlib.suppress(Exception):
                await self.agent.update_env(status=self.agent.status())

    async def _failed(self, reason: str) -> None:
        """The new revision never took over: make sure the previous one serves; record."""
        if self.revision in self.agent.weights and self.previous in self.agent.supervisor.revisions():
            await self.set_weights({self.previous: 100})
        await self.agent.stop_revision(self.revision, "failed")
        await self.set_deployment(status="failed", reason=reason, finished=True)
        await self.event("deployment.failed", f"deployment #{self.deployment.number} failed: {reason}")

    async def start_new(self) -> None:
        await self.event(
            "revision.starting",
            f"starting {self.revision}: {self.spec.instances} instance(s) of {self.spec.command_text}",
        )
        try:
            infos = await self.agent.supervisor.start(self.revision, self.release_dir, self.spec)
        except AicdError as exc:
            keeps = (
                f"; {self.previous} keeps serving" if self.previous and self.plan.strategy != RECREATE else ""
            )
            raise DeployError(f"{self.revision} did not start: {exc}{keeps}") from None
        ports = [i.port for i in infos]
        await self.revision_status(self.revision, "running", ports=ports)
        await self.event(
            "revision.ready", f"{self.revision} is healthy on port(s) {', '.join(map(str, ports))}"
        )

    def stored_analysis(self) -> Json | None:
        """What the deployment record keeps of the analysis (and of an experiment's result)."""
        analysis = self.report.to_json() if self.report else None
        if self.experiment is not None:
            analysis = {**(analysis or {}), "experiment": self.experiment}
        return analysis

    async def succeed(self, message: str) -> None:
        old = self.previous
        await self.agent.update_env(stable_revision=self.revision, canary_revision=None)
        await self.set_deployment(
            status="succeeded",
            reason=self.experiment.get("reason") if self.experiment else None,  # an experiment's verdict
            finished=True,
            analysis=self.stored_analysis(),
        )
        await self.event("deployment.succeeded", message)
        if old is not None and old in self.agent.supervisor.revisions() and old != self.revision:
            self.agent.retiring[old] = asyncio.ensure_future(
                retire(self.agent, old, self.plan.rollback_window)
            )

    async def conclude(self, keep: str, reason: str) -> None:
        """The new revision is not the one to keep (an experiment it did not win): all traffic on
        ``keep``, which becomes stable; the new revision stops; recorded ``rejected`` with ``reason``
        (not a change failure: the experiment ran as planned)."""
        self.agent.apply_weights({keep: 100})
        await self.agent.update_env(
            weights=dict(self.agent.weights), stable_revision=keep, canary_revision=None
        )
        await self.agent.router.wait_drained(self.revision, DRAIN_TIMEOUT)
        await self.agent.stop_revision(self.revision, "failed")
        await self.set_deployment(
            status="rejected", reason=reason, finished=True, analysis=self.stored_analysis()
        )
        await self.event("deployment.rejected", f"deployment #{self.deployment.number}: {reason}")

    async def restart(self, revision: str) -> None:
        env_id = self.agent.env.id
        record = await self.agent.db(lambda: self.agent.store.get_revision(env_id, revision))
        infos = await self.agent.supervisor.start(
            revision, Path(record.release_dir), ServiceSpec.from_json(record.spec)
        )
        await self.revision_status(revision, "running", ports=[i.port for i in infos])

    # -- analysis and waiting ----------------------------------------------------------------------

    def analysis(self, *, stable: str) -> CanaryAnalysis:
        from aicd.delivery.live_quality import QualityConfig
        from aicd.deploy.analysis import CanaryAnalysis, default_analysis

        return CanaryAnalysis(
            self.analysis_config or default_analysis(),
            stable=stable,
            canary=self.revision,
            baseline=self.snapshot(),
            started_at=time.time(),
            interval_override=self.plan.analysis_interval,
            quality=QualityConfig.from_json(self.plan.feedback or {}),
        )

    async def fail(self, reason: str) -> None:
        """Roll back now for ``reason`` (raises RolledBack)."""
        if self.failure is None:
            self.failure = reason
        await self.check(None)

    async def wait_labels(self, analysis: CanaryAnalysis, count: int, timeout: float) -> None:
        """Wait until ``count`` labels arrived for each side's answers, checking all along; roll
        back when they did not within ``timeout`` seconds (no verdict on live quality is possible)."""
        deadline = time.monotonic() + timeout
        announced = 0.0
        while True:
            await self.check(analysis)
            stable_n, canary_n = analysis.labels(self.snapshot())
            if min(stable_n, canary_n) >= count or self.promote_full:
                await self.event(
                    "analysis.labels",
                    f"{stable_n} labels for {analysis.stable}, {canary_n} for {self.revision}: "
                    f"at least {count} each",
                    data={"stable": stable_n, "canary": canary_n, "count": count},
                )
                return
            now = time.monotonic()
            if now >= deadline:
                self.failure = (
                    f"analysis failed: {stable_n} labels for {analysis.stable} and {canary_n} for "
                    f"{self.revision} within {timeout:g}s, fewer than the {count} each the labels step "
                    "waits for: live quality cannot be judged (POST labels to /_aicd/feedback)"
                )
                await self.check(None)
            if now - announced >= 5.0:
                announced = now
                await self.event(
                    "analysis.labels",
                    f"waiting for labels: {stable_n} for {analysis.stable}, {canary_n} for "
                    f"{self.revision}, {count} each wanted",
                    data={"stable": stable_n, "canary": canary_n, "count": count},
                )
            self.resume.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.resume.wait(), TICK)

    async def judge(self, analysis: CanaryAnalysis) -> None:
        if self.promote_full and self.failure is None:
            return
        await self.check(analysis)
        report = analysis.final(self.snapshot(), time.time())
        self.report = report
        await self.event("analysis.result", report.summary(), data=report.to_json())
        if not report.passed:
            await self.rollback(f"analysis failed: {report.reason}")

    async def check(self, analysis: CanaryAnalysis | None) -> None:
        """Roll back now if something failed (an instance, an abort, a threshold check)."""
        if analysis is not None:
            for measurement in analysis.tick(self.snapshot(), time.time()):
                await self.event(
                    "analysis.measurement",
                    f"{measurement.metric}: {measurement.reason}",
                    data=measurement.to_json(),
                )
            reason = analysis.failed_early()
            if reason is not None and self.failure is None:
                self.report = analysis.final(self.snapshot(), time.time())
                self.failure = f"analysis failed: {reason}"
        if self.failure is not None:
            await self.rollback(self.failure)

    async def hold(self, duration: float | None, analysis: CanaryAnalysis | None) -> None:
        """Wait `duration` seconds (None: until promoted), checking every TICK."""
        deadline = None if duration is None else time.monotonic() + duration
        self.resume.clear()
        if duration is None:
            self.paused = True
            self.pauses += 1
            await self.agent.update_env(status="paused")
            await self.set_deployment(status="paused")
            await self.event(
                "deployment.paused",
                f"paused: `aicd promote {self.agent.name}` to go on, "
                f"`aicd abort {self.agent.name}` to roll back",
            )
        try:
            while True:
                await self.check(analysis)
                if self.resume.is_set() and self.failure is None:
                    self.resume.clear()
                    if self.paused or self.promote_full:
                        return
                if deadline is not None and time.monotonic() >= deadline:
                    return
                wait = TICK if deadline is None else max(0.0, min(TICK, deadline - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.resume.wait(), wait)
        finally:
            if self.paused and not self.finished and self.failure is None:
                self.paused = False
                await self.set_deployment(status="running")
                await self.agent.update_env(status="deploying")
            self.paused = False

    async def rollback(self, reason: str) -> None:
        """All traffic back to the previous revision at once; stop the new one; record. Raises RolledBack."""
        if self.traffic_at is None and self.failure_status == "rolled_back":
            self.failure_status = "rejected"  # it never served a user: not a change failure
        back = self.previous
        decided = time.monotonic()
        decided_at = time.time()
        if back is not None:
            self.agent.apply_weights({back: 100})
        switch_ms = (time.monotonic() - decided) * 1000
        await self.agent.update_env(
            weights=dict(self.agent.weights), stable_revision=back, canary_revision=None
        )
        drained = await self.agent.router.wait_drained(self.revision, DRAIN_TIMEOUT)
        drain_ms = (time.monotonic() - decided) * 1000
        await self.agent.stop_revision(self.revision)
        timing = {
            "decided_at": decided_at,
            "switch_ms": round(switch_ms, 3),
            "drain_ms": round(drain_ms, 3),
            "drained": drained,
        }
        analysis = self.stored_analysis() or {}
        await self.set_deployment(
            status=self.failure_status,
            reason=reason,
            finished=True,
            analysis={**analysis, "rollback": timing},
        )
        verb = {"aborted": "aborted", "rejected": "rejected"}.get(self.failure_status, "rolled back")
        await self.event(
            f"deployment.{self.failure_status}",
            f"deployment #{self.deployment.number} {verb}: {reason}; all traffic on {back} "
            f"{switch_ms:.1f} ms after the decision, {self.revision}'s in-flight requests done "
            f"after {drain_ms:.0f} ms",
            data=timing,
            actor=self.failure_actor,
        )
        if self.failure_status == "rolled_back" and self.traffic_at is not None:
            env_id = self.agent.env.id
            dep_id = self.deployment.id
            opened = self.traffic_at

            def incident() -> None:
                record = self.agent.store.open_incident(
                    env_id,
                    "change_failure",
                    f"deployment #{self.deployment.number} ({self.revision}) rolled back",
                    opened_by="system",
                    deployment_id=dep_id,
                    cause=reason,
                    at=opened,
                )
                self.agent.store.resolve_incident(
                    record.id,
                    resolved_by="system",
                    resolution=f"traffic back on {back}",
                    at=decided_at + switch_ms / 1000,
                )

            await self.agent.db(incident)
        raise RolledBack


async def finished_event(agent: Environment, deployment: DeploymentRecord) -> None:
    """The ``deployment.finished`` hook event (:mod:`aicd.delivery.hooks`); never fails the caller."""
    from aicd.delivery.hooks import emit

    data = {
        "environment": agent.name,
        "scope": agent.scope,
        "deployment": deployment.number,
        "revision": deployment.revision,
        "previous_revision": deployment.previous_revision,
        "strategy": deployment.strategy,
        "status": deployment.status,
        "reason": deployment.reason,
        "commit": deployment.commit_sha,
        "url": agent.env.url,
    }
    try:
        await agent.db(lambda: emit(agent.home, "deployment.finished", data))
    except Exception:
        log.exception("the deployment.finished event could not be queued")


async def retire(agent: Environment, revision: str, delay: float) -> None:
    """After the rollback window: take `revision` out of the table, let it drain, stop it."""
    try:
        await asyncio.sleep(delay)
        if revision == agent.env.stable_revision or revision not in agent.supervisor.revisions():
            return
        await agent.stop_revision(revision)
        await agent.event(
            "revision.stopped", f"{revision} stopped (its rollback window ended)", revision=revision
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("retiring %s failed", revision)
    finally:
        agent.retiring.pop(revision, None)


# -- the operations the control socket offers -------------------------------------------------------


def _busy(agent: Environment) -> Rollout | None:
    rollout = agent.rollout
    return rollout if rollout is not None and not rollout.finished else None


async def _settled(rollout: Rollout, pauses: int) -> Json:
    while not rollout.finished and not (rollout.paused and rollout.pauses > pauses):
        await asyncio.sleep(0.05)
    return rollout.result()


async def deploy(agent: Environment, request: Json) -> Json:
    from aicd.delivery.judge_config import load_analysis

    current = _busy(agent)
    if current is not None:
        raise ConflictError(
            f"environment {agent.name}: deployment #{current.deployment.number} ({current.revision}, "
            f"{current.plan.strategy}) is in progress{' (paused)' if current.paused else ''}; "
            f"`aicd promote {agent.name}` or `aicd abort {agent.name}` it first"
        )
    spec = ServiceSpec.from_json(request["spec"])
    plan = RolloutPlan.from_json(request["plan"])
    release = Path(request["release_dir"]).resolve()
    if release.parent != agent.releases.resolve() or not release.is_dir():
        raise NotFoundError(f"release {release}: not a release prepared for environment {agent.name}")
    analysis = None
    if request.get("analysis_file"):
        analysis = load_analysis(
            Path(request["analysis_file"]), request.get("analysis_display") or "aicd.yml", required=False
        )
    meta: Mapping[str, Any] = request.get("meta") or {}
    actor = str(meta.get("actor") or "local")
    env_id = agent.env.id
    store = agent.store
    await agent.refresh()
    revision = await agent.db(
        lambda: store.new_revision(
            env_id,
            release_dir=str(release),
            spec=spec.to_json(),
            commit_sha=meta.get("commit_sha"),
            ref=meta.get("ref"),
            pipeline_id=meta.get("pipeline_id"),
            job_id=meta.get("job_id"),
            model_version=meta.get("model_version"),
        )
    )
    previous = agent.env.stable_revision
    deployment = await agent.db(
        lambda: store.begin_deployment(
            env_id,
            revision=revision.name,
            strategy=plan.strategy,
            actor=actor,
            previous_revision=previous,
            commit_sha=meta.get("commit_sha"),
            commit_at=meta.get("commit_at"),
            ref=meta.get("ref"),
            pipeline_id=meta.get("pipeline_id"),
            job_id=meta.get("job_id"),
            pipeline_url=meta.get("pipeline_url"),
        )
    )
    agent.save_plan(plan)
    rollout = Rollout(agent, deployment, revision.name, release, spec, plan, analysis, actor)
    agent.rollout = rollout
    await agent.update_env(status="deploying", tier=plan.tier or agent.env.tier)
    rollout.task = asyncio.ensure_future(rollout.run())
    if request.get("wait") is False:
        return rollout.result()
    return await _settled(rollout, 0)


async def promote(agent: Environment, request: Json) -> Json:
    rollout = _busy(agent)
    if rollout is None:
        raise ConflictError(f"environment {agent.name}: no deployment in progress, nothing to promote")
    pauses = rollout.pauses
    rollout.promote_full = bool(request.get("full"))
    actor = str(request.get("actor") or "local")
    variant = request.get("variant")
    if variant:
        if rollout.plan.strategy != EXPERIMENT:
            raise ConflictError(
                f"environment {agent.name}: --variant is for experiments; this deployment is "
                f"{rollout.plan.strategy}"
            )
        names = set((rollout.plan.experiment or {}).get("weights") or ("a", "b"))
        if variant not in names:
            raise ConflictError(
                f"environment {agent.name}: the experiment has no variant {variant!r}; "
                f"it has {', '.join(sorted(names))}"
            )
        rollout.chosen = str(variant)
    await rollout.event(
        "deployment.promote",
        f"promoted by {actor}{' (skipping the remaining steps)' if rollout.promote_full else ''}"
        + (f": variant {variant}" if variant else ""),
        actor=actor,
    )
    rollout.resume.set()
    return await _settled(rollout, pauses)


async def abort(agent: Environment, request: Json) -> Json:
    rollout = _busy(agent)
    if rollout is None:
        raise ConflictError(f"environment {agent.name}: no deployment in progress, nothing to abort")
    actor = str(request.get("actor") or "local")
    rollout.failure_status = "aborted"
    rollout.failure_actor = actor
    rollout.failure = f"aborted by {actor}"
    rollout.resume.set()
    while not rollout.finished:
        await asyncio.sleep(0.05)
    return rollout.result()


async def rollback(agent: Environment, request: Json) -> Json:
    """Go back to an earlier revision (default: the one before the current stable)."""
    if _busy(agent) is not None:
        raise ConflictError(
            f"environment {agent.name}: a deployment is in progress; `aicd abort {agent.name}` rolls it back"
        )
    env = await agent.refresh()
    store = agent.store
    current = env.stable_revision
    if current is None:
        raise ConflictError(f"environment {agent.name}: nothing is deployed, nothing to roll back")
    target = request.get("to")
    last = await agent.db(lambda: store.list_deployments(environment=agent.name, scope=agent.scope, limit=50))
    current_dep = next((d for d in last if d.revision == current and d.status == "succeeded"), None)
    if not target:
        target = current_dep.previous_revision if current_dep is not None else None
        if not target:
            raise ConflictError(f"environment {agent.name}: {current} has no earlier revision to go back to")
    if target == current:
        raise ConflictError(f"environment {agent.name}: {target} is already the serving revision")
    record = await agent.db(lambda: store.get_revision(env.id, str(target)))
    actor = str(request.get("actor") or "local")
    deployment = await agent.db(
        lambda: store.begin_deployment(
            env.id,
            revision=record.name,
            strategy="rollback",
            actor=actor,
            previous_revision=current,
            commit_sha=record.commit_sha,
            ref=record.ref,
            pipeline_id=record.pipeline_id,
            job_id=record.job_id,
        )
    )
    try:
        await agent.event(
            "deployment.started",
            f"deployment #{deployment.number}: rollback from {current} to {record.name}",
            deployment_id=deployment.id,
            revision=record.name,
            actor=actor,
        )
        if record.name not in agent.supervisor.revisions():
            release = Path(record.release_dir)
            if not release.is_dir():
                raise NotFoundError(
                    f"revision {record.name}: its release {release} is gone; deploy it again instead"
                )
            infos = await agent.supervisor.start(record.name, release, ServiceSpec.from_json(record.spec))
            await agent.db(
                lambda: store.update_revision(
                    env.id, record.name, status="running", ports=[i.port for i in infos]
                )
            )
        started = time.monotonic()
        agent.apply_weights({record.name: 100, current: 0})
        switch_ms = (time.monotonic() - started) * 1000
        await agent.update_env(stable_revision=record.name, canary_revision=None, weights=dict(agent.weights))
        retiring = agent.retiring.pop(record.name, None)
        if retiring is not None:
            retiring.cancel()
        if current_dep is not None:
            await agent.db(
                lambda: store.set_deployment(
                    current_dep.id, status="rolled_back", reason=f"rolled back to {record.name} by {actor}"
                )
            )
        done = await agent.db(
            lambda: store.set_deployment(
                deployment.id,
                status="succeeded",
                finished=True,
                analysis={"rollback": {"switch_ms": round(switch_ms, 3)}},
            )
        )
        await agent.event(
            "deployment.succeeded",
            f"rolled back: all traffic on {record.name} ({switch_ms:.1f} ms); {current} stopping",
            deployment_id=deployment.id,
            revision=record.name,
            actor=actor,
        )
        agent.retiring[current] = asyncio.ensure_future(retire(agent, current, 0.0))
        await finished_event(agent, done)
        return {"deployment": done.to_json(), "url": env.url, "paused": False, "finished": True}
    except (AicdError, OSError) as exc:
        reason = str(exc)
        failed = await agent.db(
            lambda: store.set_deployment(deployment.id, status="failed", reason=reason, finished=True)
        )
        await finished_event(agent, failed)
        await agent.event(
            "deployment.failed",
            f"rollback to {record.name} failed: {reason}; {current} keeps serving",
            deployment_id=deployment.id,
            actor=actor,
        )
        if isinstance(exc, AicdError):
            raise
        raise DeployError(reason) from None


__all__ = ["Rollout", "abort", "deploy", "promote", "rollback"]
