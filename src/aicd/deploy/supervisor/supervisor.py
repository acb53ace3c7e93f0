"""The local supervisor: runs each revision's instances, keeps them up, finds them again.

    supervisor = Supervisor(state_dir, on_event=print)
    await supervisor.adopt()                         # instances a previous supervisor left running
    infos = await supervisor.start("r3", release_dir, spec)   # all healthy, or DeployError
    ...
    await supervisor.stop("r2")
    await supervisor.detach()                        # or shutdown(): stop everything

- Each instance is one process group (its own session), started in the release
  directory with the spec's env and `<port_variable>=<port>`; stdout and stderr
  are appended to `<state dir>/logs/<revision>.<index>.log`.
- `start` returns once every instance answers 200 on the health path; when one
  exits first or the readiness timeout passes, all of this revision's processes
  are killed and DeployError says why (with the end of the log). Nothing else is
  touched.
- Running instances are probed every `liveness_interval`; `liveness_failures`
  failures in a row make them `unhealthy` (and `ready` again on recovery).
- A crashed instance is restarted after an exponential backoff (RestartPolicy);
  `crash_limit` crashes within `crash_window` seconds is a `crash_loop`: the
  instance is left down and the event tells the owner (who rolls back).
- The state file (see supervisor_state) records pid + start time, port,
  revision and spec: a new supervisor adopts instances still running (the same
  process, not a reused pid), watching them through a pidfd, and restarts the
  ones that are gone.
- Events go to `on_event` (a plain function, called on the event loop; it must
  not block). An exception in it is logged and does not stop supervision.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from aicd.deploy.health import probe
from aicd.deploy.ports import HOST, allocate_port, check_port_free
from aicd.deploy.spec import ServiceSpec
from aicd.deploy.supervisor.instance import FAILED_START_GRACE, PROBE_TIMEOUT, Instance
from aicd.deploy.supervisor.model import (
    EventCallback,
    InstanceEvent,
    InstanceInfo,
    InstanceState,
    RestartPolicy,
)
from aicd.deploy.supervisor.proc import ProcessId, is_running
from aicd.deploy.supervisor.state import (
    STATE_FILE,
    InstanceRecord,
    RevisionRecord,
    StateLock,
    read_state,
    write_state,
)
from aicd.errors import ConfigError, ConflictError, DeployError, NotFoundError
from aicd.pipeline.variables import masker

__all__ = [
    "InstanceEvent",
    "InstanceInfo",
    "InstanceState",
    "RestartPolicy",
    "Supervisor",
]

log = logging.getLogger(__name__)
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_DOWN = (InstanceState.CRASH_LOOP, InstanceState.STOPPED)


class _Revision:
    def __init__(self, name: str, release_dir: Path, spec: ServiceSpec, env: Mapping[str, str]) -> None:
        self.name = name
        self.release_dir = release_dir
        self.spec = spec
        self.env = dict(env)
        self.instances: list[Instance] = []


class Supervisor:
    """Runs and watches the instances of an environment's revisions (one per state directory)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        on_event: EventCallback | None = None,
        policy: RestartPolicy | None = None,
        host: str = HOST,
        base_env: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.state_dir = Path(state_dir)
        self.log_dir = self.state_dir / "logs"
        self.state_file = self.state_dir / STATE_FILE
        self.host = host
        self.policy = policy or RestartPolicy()
        self.base_env: Mapping[str, str] = dict(os.environ if base_env is None else base_env)
        self.mask = masker(secrets)
        self._on_event = on_event
        self._revisions: dict[str, _Revision] = {}
        self._lock = StateLock(self.state_dir)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock.acquire()
        except OSError as exc:
            raise ConfigError(
                f"{self.state_dir}: cannot be the supervisor's state directory: {exc.strerror or exc}"
            ) from None

    # --- queries ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Shut down or detached: it supervises nothing any more."""
        return not self._lock.held

    def revisions(self) -> list[str]:
        return list(self._revisions)

    def instances(self, revision: str | None = None) -> list[InstanceInfo]:
        """Snapshots of the instances of `revision` (all revisions when None)."""
        if revision is not None:
            return [i.info() for i in self._revision(revision).instances]
        return [i.info() for r in self._revisions.values() for i in r.instances]

    def spec(self, revision: str) -> ServiceSpec:
        return self._revision(revision).spec

    def ports_in_use(self) -> set[int]:
        return {i.port for r in self._revisions.values() for i in r.instances}

    async def wait_for(
        self, revision: str, states: Iterable[InstanceState], timeout: float
    ) -> list[InstanceInfo]:
        """Wait until every instance of `revision` is in one of `states`; DeployError after `timeout`."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            infos = self.instances(revision)
            if all(i.state in wanted for i in infos):
                return infos
            if time.monotonic() >= deadline:
                now = ", ".join(f"{i.revision}.{i.index} {i.state}" for i in infos)
                raise DeployError(
                    f"revision {revision}: not {'/'.join(sorted(wanted))} within {timeout:g}s ({now})"
                )
            await asyncio.sleep(0.02)

    # --- starting and stopping -------------------------------------------------------

    async def start(
        self,
        revision: str,
        release_dir: Path,
        spec: ServiceSpec,
        *,
        ports: Sequence[int] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> list[InstanceInfo]:
        """Start `spec.instances` instances of `revision` and wait until all are healthy.

        DeployError (all of this revision's processes killed) when one exits or
        is not healthy within `spec.readiness_timeout`; NotFoundError for a
        missing release directory; ConflictError for a port in use or a
        revision already running.
        """
        self._check_open()
        if not isinstance(revision, str) or not _REVISION.match(revision):
            raise ConfigError(
                f"revision {revision!r}: a revision name is 1-64 letters, digits, '.', '_' or '-' (e.g. r3)"
            )
        if revision in self._revisions:
            raise ConflictError(f"revision {revision} is already running here; stop it first")
        release = Path(release_dir)
        if not release.is_dir():
            what = "is not a directory" if release.exists() else "does not exist"
            raise NotFoundError(
                f"release directory {release} {what}: give the directory holding revision {revision}'s "
                "files (the pipeline's artifacts)"
            )
        env = dict(env or {})
        for key in env:
            if key == spec.port_variable:
                raise ConfigError(f"env: {key} is set by aicd to each instance's port; leave it out")
        chosen = self._ports(spec, ports)
        entry = _Revision(revision, release.resolve(), spec, env)
        self._revisions[revision] = entry
        for index, port in enumerate(chosen):
            entry.instances.append(
                Instance(
                    self,
                    revision,
                    index,
                    entry.release_dir,
                    spec,
                    env,
                    port,
                    ports is not None,
                    self.log_dir / f"{revision}.{index}.log",
                )
            )
        try:
            deadline = time.monotonic() + spec.readiness_timeout
            for instance in entry.instances:
                instance.launch()
                self.changed(instance, InstanceState.STARTING, "started")
            waits = [asyncio.ensure_future(i.wait_ready(deadline)) for i in entry.instances]
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for waiting in waits:
                    waiting.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
            for waited in done:
                error = None if waited.cancelled() else waited.exception()
                if error is not None:
                    raise error
        except BaseException as exc:
            await self._abandon(entry, exc)
            raise
        for instance in entry.instances:
            instance.mark_ready("healthy")
            instance.supervise(running=True)
        return self.instances(revision)

    async def stop(self, revision: str, *, grace: float | None = None) -> None:
        """Stop every instance of `revision` (stop signal, SIGKILL after the spec's grace)."""
        entry = self._revision(revision)
        await asyncio.gather(*(i.stop(grace) for i in entry.instances))
        for instance in entry.instances:
            self.changed(instance, InstanceState.STOPPED, "stopped")
        self._revisions.pop(revision, None)
        self._save()

    async def shutdown(self) -> None:
        """Stop every revision, then give up the state directory."""
        for revision in list(self._revisions):
            await self.stop(revision)
        self._lock.release()

    async def detach(self) -> None:
        """Stop supervising but leave the processes running, for a later `adopt` (by a new supervisor)."""
        for entry in self._revisions.values():
            await asyncio.gather(*(i.detach() for i in entry.instances))
        self._save()
        self._revisions.clear()
        self._lock.release()

    # --- adoption --------------------------------------------------------------------

    async def adopt(self) -> list[InstanceInfo]:
        """Take over the instances the state file records: keep running ones, restart gone ones."""
        self._check_open()
        if self._revisions:
            raise ConflictError("adopt() finds earlier instances; call it before starting any revision")
        records = read_state(self.state_file)
        try:
            specs = [ServiceSpec.from_json(record.spec) for record in records]
        except ConfigError as exc:
            raise ConfigError(
                f"{self.state_file}: {exc}; delete the file once the processes are stopped"
            ) from None
        for record, spec in zip(records, specs, strict=True):
            entry = _Revision(record.revision, Path(record.release_dir), spec, record.env)
            self._revisions[record.revision] = entry
            for item in record.instances:
                instance = Instance(
                    self,
                    record.revision,
                    item.index,
                    entry.release_dir,
                    spec,
                    record.env,
                    item.port,
                    item.port_fixed,
                    self.log_dir / f"{record.revision}.{item.index}.log",
                )
                instance.restarts = item.restarts
                entry.instances.append(instance)
        await asyncio.gather(
            *(
                self._adopt_one(i, rec)
                for r, entry in zip(records, self._revisions.values(), strict=True)
                for i, rec in zip(entry.instances, r.instances, strict=True)
            )
        )
        self._save()
        return self.instances()

    async def _adopt_one(self, instance: Instance, record: InstanceRecord) -> None:
        if record.state == InstanceState.CRASH_LOOP:
            self.changed(
                instance, InstanceState.CRASH_LOOP, "was in a crash loop before the supervisor restarted"
            )
            return
        proc = ProcessId(record.pid, record.start_time) if record.pid and record.start_time else None
        if proc is None or not is_running(proc):
            if proc is not None:  # what its group left behind (a reused pid is never signalled)
                instance.proc = proc
                await instance.kill(FAILED_START_GRACE)
            self.changed(instance, InstanceState.CRASHED, "gone while no supervisor watched it; restarting")
            instance.supervise(running=False)
            return
        instance.proc = proc
        instance.adopted = True
        result = await probe(self.host, instance.port, instance.spec.health_path, PROBE_TIMEOUT)
        if result.ok:
            instance.mark_ready(f"adopted pid {proc.pid}: healthy")
        else:
            self.changed(instance, InstanceState.UNHEALTHY, f"adopted pid {proc.pid}: {result.error}")
        instance.supervise(running=True)

    # --- the owner side of Instance -------------------------------------------------

    def changed(self, instance: Instance, state: InstanceState, reason: str) -> None:
        """Record a state change of `instance`, save the state file, tell `on_event`."""
        instance.state = state
        event = InstanceEvent(
            revision=instance.revision,
            index=instance.index,
            state=state,
            reason=self.mask(reason),
            pid=instance.proc.pid if instance.proc else None,
            port=instance.port,
            at=time.time(),
        )
        if instance.revision in self._revisions and state is not InstanceState.STOPPED:
            self._save()
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("supervisor: the event callback failed on %s", event)

    # --- helpers ---------------------------------------------------------------------

    def _revision(self, revision: str) -> _Revision:
        try:
            return self._revisions[revision]
        except KeyError:
            running = ", ".join(self._revisions) or "none"
            raise NotFoundError(f"revision {revision!r} is not running here (running: {running})") from None

    def _check_open(self) -> None:
        if self.closed:
            raise ConflictError("this supervisor was shut down or detached; make a new one")

    def _ports(self, spec: ServiceSpec, ports: Sequence[int] | None) -> list[int]:
        if ports is None:
            taken = self.ports_in_use()
            out: list[int] = []
            for _ in range(spec.instances):
                port = allocate_port(self.host, exclude=taken)
                taken.add(port)
                out.append(port)
            return out
        wanted = list(ports)
        if len(wanted) != spec.instances:
            raise ConfigError(
                f"{len(wanted)} ports given for {spec.instances} instances; give one per instance"
            )
        if len(set(wanted)) != len(wanted):
            raise ConfigError(f"ports {wanted}: each instance needs its own port")
        mine = self.ports_in_use()
        for port in wanted:
            if port in mine:
                raise ConflictError(f"port {port} is already used by a running instance here; choose another")
            check_port_free(port, self.host)
        return wanted

    async def _abandon(self, entry: _Revision, why: BaseException) -> None:
        """A start that failed: kill what it launched, forget the revision."""
        await asyncio.gather(*(i.stop(FAILED_START_GRACE) for i in entry.instances))
        self._revisions.pop(entry.name, None)
        reason = f"start failed: {why}" if isinstance(why, Exception) else "start canceled"
        for instance in entry.instances:
            self.changed(instance, InstanceState.STOPPED, reason.split("\n", 1)[0])
        self._save()

    def _save(self) -> None:
        records = [
            RevisionRecord(
                revision=entry.name,
                release_dir=str(entry.release_dir),
                spec=entry.spec.to_json(),
                env=entry.env,
                instances=[
                    InstanceRecord(
                        index=i.index,
                        pid=i.proc.pid if i.proc else None,
                        start_time=i.proc.start_time if i.proc else None,
                        port=i.port,
                        port_fixed=i.port_fixed,
                        state=str(i.state),
                        restarts=i.restarts,
                        command=entry.spec.command_text,
                    )
                    for i in entry.instances
                ],
            )
            for entry in self._revisions.values()
        ]
        try:
            write_state(self.state_file, records)
        except OSError as exc:
            log.error("supervisor: cannot write %s: %s", self.state_file, exc)
