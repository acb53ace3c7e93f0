"""The environment agent: one long-lived process per environment that owns its live service.

It holds the environment's supervisor (the revisions' processes) and its router (the stable
address), runs rollouts (:mod:`aicd.deploy.rollout`, which sees it only as an
:class:`aicd.deploy.environment.Environment`), and answers `aicd deploy`, `promote`,
`abort`, `rollback` and `env status` over its control socket (:mod:`aicd.deploy.control`).
Every change is written to the store first-hand: the environment row (revisions, weights, router
port), deployments, and events.

It is started on demand (:mod:`aicd.deploy.client`) in its own session, so it outlives the job or
command that started it. When it starts again (after a crash, a reboot, `aicd server` starting),
it finds its revisions' processes again (the supervisor's state file), restarts the gone ones,
listens on the same router port and restores the weights from the database. A rollout that was
in progress when the agent died is rolled back: all traffic to the stable revision.

Run: ``python -m aicd.deploy.agent --state-dir D --database-url U --env NAME [--scope S] [--port P]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aicd.deploy import control
from aicd.deploy import rollout as rollouts
from aicd.deploy.environment import DRAIN_TIMEOUT
from aicd.deploy.plan import ROUTERS, RolloutPlan
from aicd.deploy.ports import HOST, port_holder
from aicd.deploy.router import loop as event_loop
from aicd.deploy.router.factory import make_router
from aicd.deploy.router.router import FieldCount
from aicd.deploy.supervisor.supervisor import InstanceEvent, InstanceState, Supervisor
from aicd.errors import AicdError, ConfigError, ConflictError, NotFoundError
from aicd.store.deployments import DeployStore, EnvironmentRecord, open_deploy_store

log = logging.getLogger("aicd.deploy.agent")
T = TypeVar("T")
Json = dict[str, Any]

AGENT_FILE = "agent.json"
ERROR_FILE = "agent.error"
PLAN_FILE = "plan.json"
STOP_ABORT_TIMEOUT = 60.0  # `env stop` during a rollout: how long the abort may take before stopping anyway
EXIT_LOCKED = 75  # another agent already serves this environment
RELEASES = "releases"
# Variables a service inherits from the agent; everything else (CI_*, tokens) stays out.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME", "VIRTUAL_ENV")


def service_base_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k in INHERITED or k.startswith("PYTHON")}


class Agent:
    """The live state of one environment, and the operations on it."""

    def __init__(
        self,
        state_dir: Path,
        store: DeployStore,
        name: str,
        *,
        scope: str = "",
        port: int = 0,
        host: str = HOST,
        field_count: FieldCount | None = None,
        router: str = "aicd",
        router_limits: Mapping[str, int] | None = None,
        feedback: Mapping[str, Any] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.home = state_dir.parent.parent  # <home>/environments/<env>: where hooks are configured
        self.store = store
        self.name = name
        self.scope = scope
        self.host = host
        self.requested_port = port
        self.releases = state_dir / RELEASES
        self.releases.mkdir(parents=True, exist_ok=True)
        self._db = ThreadPoolExecutor(1, thread_name_prefix="aicd-agent-db")
        self.env: EnvironmentRecord = store.ensure_environment(name, scope=scope)
        self.supervisor = Supervisor(
            state_dir / "supervisor", on_event=self._on_instance, base_env=service_base_env(os.environ)
        )
        self.router = make_router(
            router,
            host,
            0,
            field_count,
            env=name,
            state_dir=state_dir / "router",
            limits=router_limits,
            feedback=feedback,
        )
        self.weights: dict[str, int] = {}  # revisions in the router's table; 0 = kept for a fast rollback
        self.stopped = asyncio.Event()
        self.rollout: rollouts.Rollout | None = None  # while one runs
        self.retiring: dict[str, asyncio.Task[None]] = {}
        self.subscribers: set[control.Emit] = set()
        self._server: asyncio.AbstractServer | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self.stop_services = False  # set by a `stop` request: the services stop with the agent

    # -- the database, off the event loop (the router shares it) -------------------------------

    async def db(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn)

    async def refresh(self) -> EnvironmentRecord:
        self.env = await self.db(lambda: self.store.get_environment(self.name, scope=self.scope))
        return self.env

    async def update_env(self, **fields: Any) -> EnvironmentRecord:
        env_id = self.env.id
        self.env = await self.db(lambda: self.store.update_environment(env_id, **fields))
        return self.env

    async def event(
        self,
        kind: str,
        message: str,
        *,
        deployment_id: int | None = None,
        revision: str | None = None,
        data: Mapping[str, Any] | None = None,
        actor: str = "system",
    ) -> None:
        env_id = self.env.id
        record = await self.db(
            lambda: self.store.add_event(
                env_id,
                kind,
                message,
                deployment_id=deployment_id,
                revision=revision,
                data=dict(data) if data is not None else None,
                actor=actor,
            )
        )
        log.info("%s %s", kind, message)
        for emit in list(self.subscribers):
            with contextlib.suppress(Exception):
                emit(record.to_json())

    # -- life ----------------------------------------------------------------------------------

    async def start(self) -> None:
        adopted = await self.supervisor.adopt()
        port = self.requested_port or self.env.router_port or 0
        self.router.listen_port = port
        try:
            await self.router.start()
        except ConfigError:
            holder = port_holder(port)
            who = f" by pid {holder[0]} ({holder[1]})" if holder else ""
            raise ConflictError(
                f"environment {self.name}: its address port {port} is taken{who}; free it, or set "
                f"environments.{self.name}.port in aicd.yml to another port"
            ) from None
        url = f"http://{self.host}:{self.router.port}"
        await self.update_env(
            router_port=self.router.port, url=url, agent_pid=os.getpid(), state_dir=str(self.state_dir)
        )
        running = set(self.supervisor.revisions())
        saved = {rev: int(w) for rev, w in (self.env.weights or {}).items() if rev in running}
        stable = self.env.stable_revision
        if stable in running and stable not in saved:
            saved[stable] = 100
        if saved:
            self.apply_weights(saved)
        if adopted:
            await self.event(
                "agent.started", f"agent restarted; found {len(adopted)} instance(s) again, serving at {url}"
            )
        await self._recover()
        for rev in running - set(self.weights):
            await self.supervisor.stop(rev)
        self._server = await control.serve(control.socket_path(self.state_dir), self.handle)
        (self.state_dir / AGENT_FILE).write_text(
            json.dumps({"pid": os.getpid(), "url": url, "socket": str(control.socket_path(self.state_dir))})
        )
        await self.update_env(status=self.status())

    async def _recover(self) -> None:
        """A rollout the previous agent left unfinished: back to stable."""
        env_id = self.env.id
        active = await self.db(lambda: self.store.active_deployment(env_id))
        if active is None:
            return
        stable = self.env.stable_revision
        if active.revision != stable:
            if active.revision in self.weights:
                self.apply_weights({stable: 100} if stable in self.weights else {})
            await self.stop_revision(active.revision)
        reason = "the environment agent stopped during the rollout; traffic is back on the stable revision"
        await self.db(
            lambda: self.store.set_deployment(active.id, status="failed", reason=reason, finished=True)
        )
        await self.update_env(canary_revision=None, weights=dict(self.weights))
        await self.event(
            "deployment.failed",
            f"deployment #{active.number} ({active.revision}): {reason}",
            deployment_id=active.id,
            revision=active.revision,
        )

    async def serve_forever(self) -> None:
        await self.stopped.wait()

    async def close(self, *, stop_services: bool) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(OSError):
                control.socket_path(self.state_dir).unlink()
        for task in self.retiring.values():
            task.cancel()
        if stop_services:
            self.apply_weights({})
            await self.router.stop(grace=5.0)
            await self.supervisor.shutdown()
            await self.update_env(status="stopped", weights={}, canary_revision=None, agent_pid=None)
        else:
            await self.router.stop(grace=5.0)
            await self.supervisor.detach()
            await self.update_env(agent_pid=None)
        self._db.shutdown(wait=True)

    # -- traffic -------------------------------------------------------------------------------

    def backends(self, revision: str) -> list[tuple[str, int]]:
        return [(self.host, info.port) for info in self.supervisor.instances(revision)]

    def apply_weights(self, weights: Mapping[str, int]) -> None:
        """One atomic switch of the router's table: revisions not named leave it (and drain)."""
        table = {rev: self.backends(rev) for rev in weights}
        self.router.set_backends(table, weights=dict(weights))
        self.weights = dict(weights)

    async def stop_revision(self, revision: str, status: str = "stopped") -> bool:
        """Take `revision` out of the router's table, let its requests finish, stop its processes,
        record it; whether it drained within DRAIN_TIMEOUT."""
        if revision in self.weights:
            self.apply_weights({r: w for r, w in self.weights.items() if r != revision})
            await self.update_env(weights=dict(self.weights))
        drained = await self.router.wait_drained(revision, DRAIN_TIMEOUT)
        with contextlib.suppress(NotFoundError):  # not running (any more)
            await self.supervisor.stop(revision)
        env_id = self.env.id
        stopped_at = time.time()
        await self.db(
            lambda: self.store.update_revision(env_id, revision, status=status, stopped_at=stopped_at)
        )
        return drained

    def status(self) -> str:
        if self.rollout is not None and not self.rollout.finished:
            return "paused" if self.rollout.paused else "deploying"
        stable = self.env.stable_revision
        if not stable or stable not in self.supervisor.revisions():
            return "idle"
        states = [i.state for i in self.supervisor.instances(stable)]
        ready = sum(1 for s in states if s == InstanceState.READY)
        return "healthy" if ready == len(states) else ("degraded" if ready else "down")

    def _on_instance(self, event: InstanceEvent) -> None:
        if event.state in (InstanceState.STARTING, InstanceState.READY) and "restart" not in event.reason:
            if event.state == InstanceState.READY and self.rollout is None:
                self._later(self.update_env(status=self.status()))
            return
        if self.rollout is not None and not self.rollout.finished:
            self.rollout.instance_event(event)
        if event.state in (InstanceState.CRASHED, InstanceState.CRASH_LOOP, InstanceState.UNHEALTHY):
            self._later(
                self.event(
                    f"instance.{event.state.value}",
                    f"{event.revision}.{event.index} (pid {event.pid}, port {event.port}): {event.reason}",
                    revision=event.revision,
                    data={"index": event.index, "pid": event.pid, "port": event.port},
                )
            )
            self._later(self.update_env(status=self.status()))

    def _later(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # -- control requests -----------------------------------------------------------------------

    async def handle(self, request: Json, emit: control.Emit) -> Json:
        op = request["op"]
        if op in ("ping", "status"):
            return await self.describe()
        if op == "metrics":
            return self.router.snapshot()
        if op == "stop":
            running = self.rollout
            if running is not None and not running.finished:  # abort it first: traffic back to stable
                actor = str(request.get("actor") or "local")
                running.failure_status, running.failure_actor = "aborted", actor
                running.failure = f"aborted: the environment was stopped by {actor}"
                running.resume.set()
                deadline = time.monotonic() + STOP_ABORT_TIMEOUT
                while not running.finished and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            asyncio.get_running_loop().call_later(0.05, self.stopped.set)
            self.stop_services = True
            return {"stopping": True}
        self.subscribers.add(emit)
        try:
            if op == "deploy":
                return await rollouts.deploy(self, request)
            if op == "promote":
                return await rollouts.promote(self, request)
            if op == "abort":
                return await rollouts.abort(self, request)
            if op == "rollback":
                return await rollouts.rollback(self, request)
        finally:
            self.subscribers.discard(emit)
        raise ConfigError(f"unknown operation {op!r}")

    async def describe(self) -> Json:
        env = await self.refresh()
        env_id = env.id
        active = await self.db(lambda: self.store.active_deployment(env_id))
        snap = self.router.snapshot()
        revisions = []
        for rev in self.supervisor.revisions():
            infos = self.supervisor.instances(rev)
            traffic = snap["revisions"].get(rev, {})
            revisions.append(
                {
                    "revision": rev,
                    "weight": self.weights.get(rev),
                    "role": "stable"
                    if rev == env.stable_revision
                    else ("canary" if rev == env.canary_revision else "standby"),
                    "instances": [
                        {
                            "index": i.index,
                            "state": i.state.value,
                            "pid": i.pid,
                            "port": i.port,
                            "restarts": i.restarts,
                            "log": str(i.log),
                        }
                        for i in infos
                    ],
                    "requests": traffic.get("requests", 0),
                    "errors": traffic.get("errors", 0),
                }
            )
        plan = self.plan()
        stable = env.stable_revision
        health_path = (
            self.supervisor.spec(stable).health_path if stable in self.supervisor.revisions() else None
        )
        return {
            "environment": env.to_json(),
            "status": self.status(),
            "health_path": health_path,
            "slo": dict(plan.slo) if plan is not None and plan.slo else None,
            "url": env.url,
            "weights": dict(self.weights),
            "revisions": revisions,
            "active_deployment": active.to_json() if active is not None else None,
            "agent_pid": os.getpid(),
        }

    def save_plan(self, plan: RolloutPlan) -> None:
        """The environment's latest plan (its SLO is what the monitor checks)."""
        path = self.state_dir / PLAN_FILE
        path.with_suffix(".tmp").write_text(json.dumps(plan.to_json()))
        path.with_suffix(".tmp").replace(path)

    def plan(self) -> RolloutPlan | None:
        try:
            return RolloutPlan.from_json(json.loads((self.state_dir / PLAN_FILE).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None


# -- the process ------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m aicd.deploy.agent")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--scope", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--predictions", default="", help="PATH:FIELD whose values the router counts")
    parser.add_argument("--router", default="", choices=("", *ROUTERS), help="aicd (default) or haproxy")
    parser.add_argument("--router-limits", default="", help="JSON: the router's request head limits")
    parser.add_argument("--feedback", default="", help="JSON: environments.<env>.feedback (join window)")
    return parser.parse_args(argv)


async def _amain(args: argparse.Namespace) -> int:
    field_count = None
    predictions = args.predictions
    if not predictions:  # started again (after a reboot): the last deployment's plan says
        with contextlib.suppress(OSError, ValueError, AttributeError):
            predictions = json.loads((args.state_dir / PLAN_FILE).read_text()).get("predictions") or ""
    router = args.router
    if not router:  # started again: the last deployment's plan says which router
        with contextlib.suppress(OSError, ValueError, AttributeError):
            router = json.loads((args.state_dir / PLAN_FILE).read_text()).get("router") or ""
    limits_text = args.router_limits
    if not limits_text:  # started again: the last deployment's plan says
        with contextlib.suppress(OSError, ValueError, AttributeError):
            limits_text = json.dumps(
                json.loads((args.state_dir / PLAN_FILE).read_text()).get("router_limits")
            )
    feedback_text = args.feedback
    if not feedback_text:  # started again: the last deployment's plan says
        with contextlib.suppress(OSError, ValueError, AttributeError):
            feedback_text = json.dumps(json.loads((args.state_dir / PLAN_FILE).read_text()).get("feedback"))
    feedback = None
    with contextlib.suppress(ValueError):
        loaded_feedback = json.loads(feedback_text) if feedback_text else None
        feedback = loaded_feedback if isinstance(loaded_feedback, dict) else None
    router_limits = None
    with contextlib.suppress(ValueError):
        loaded = json.loads(limits_text) if limits_text else None
        router_limits = loaded if isinstance(loaded, dict) else None
    if predictions:
        path, _, field_name = str(predictions).partition(":")
        field_count = FieldCount(path, field_name or "predictions")
    store = open_deploy_store(args.database_url)
    error_file = args.state_dir / ERROR_FILE
    with contextlib.suppress(FileNotFoundError):
        error_file.unlink()
    try:
        agent = Agent(
            args.state_dir,
            store,
            args.env,
            scope=args.scope,
            port=args.port,
            field_count=field_count,
            router=router or "aicd",
            router_limits=router_limits,
            feedback=feedback,
        )
    except ConflictError as exc:  # another agent holds this environment: it answers instead
        log.info("%s", exc)
        store.close()
        return EXIT_LOCKED
    except (AicdError, OSError) as exc:
        error_file.write_text(str(exc) + "\n")
        store.close()
        return 2
    try:
        await agent.start()
    except (AicdError, OSError) as exc:
        error_file.write_text(str(exc) + "\n")
        log.error("%s", exc)
        with contextlib.suppress(Exception):
            await agent.close(stop_services=False)
        store.close()
        return 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stopped.set)
    await agent.serve_forever()
    await agent.close(stop_services=agent.stop_services)
    store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    args.state_dir = args.state_dir.resolve()
    args.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.Formatter.converter = time.gmtime
    try:  # uvloop where installed: the router's data path runs in this loop
        return event_loop.run(_amain(args))
    except ConfigError as exc:  # AICD_EVENT_LOOP names a loop that cannot be had
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = ["DRAIN_TIMEOUT", "Agent", "main", "service_base_env"]
