"""DeployStore: environments, their revisions, deployments, deploy events and incidents.

An environment is named per scope ("" for a local project, the project's path on
a server). Revisions ("r1", "r2", ...) and deployments (#1, #2, ...) are numbered
per environment without gaps, as model versions are: one write transaction bumps
the counter on the environment's row (``last_revision`` / ``last_deployment``)
and inserts the row that uses it; a failed insert rolls the counter back with it.

At most one deployment per environment is active (status in :data:`ACTIVE`).
``begin_deployment`` bumps the counter first, which takes the environment row's
lock (SQLite: the writer holds the database lock from BEGIN IMMEDIATE;
PostgreSQL: the UPDATE's row lock, so concurrent callers queue on it), and only
then looks for an active deployment: of several callers at once exactly one wins
and the others get a ConflictError.

Callers get frozen records with plain JSON-able fields (``to_json()``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, insert, or_, select, update
from sqlalchemy.engine import Connection, Row

from aicd.errors import ConfigError, ConflictError, NotFoundError
from aicd.store.owned import DatabaseStore, open_current
from aicd.store.schema import deploy_events, deployments, environments, incidents, revisions
from aicd.suggest import did_you_mean

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_R = TypeVar("_R", bound="DataclassInstance")

ACTIVE = ("running", "paused")  # deployment statuses that block a new deployment
ENVIRONMENT_STATUSES = ("idle", "deploying", "paused", "healthy", "degraded", "down", "stopped")
REVISION_STATUSES = ("starting", "running", "stopped", "failed")
STRATEGIES = ("recreate", "blue-green", "canary", "shadow", "experiment", "rollback")
DEPLOYMENT_STATUSES = (
    "running",
    "paused",
    "succeeded",
    "failed",
    "aborted",
    "rolled_back",
    "rejected",  # judged and turned down before it served users as the release (shadow, experiment)
)
INCIDENT_KINDS = ("down", "slo", "change_failure", "declared")
ENVIRONMENT_UPDATABLE = frozenset(
    {
        "status",
        "url",
        "router_port",
        "stable_revision",
        "canary_revision",
        "weights",
        "agent_pid",
        "state_dir",
        "tier",
    }
)
NAME_MAX = 100  # environments.name
SCOPE_MAX = 255  # environments.scope


@dataclass(frozen=True)
class EnvironmentRecord:
    id: int
    scope: str  # "" locally, the project's path on a server
    name: str
    tier: str | None
    status: str  # one of ENVIRONMENT_STATUSES
    url: str | None  # the router's address
    router_port: int | None
    stable_revision: str | None
    canary_revision: str | None
    weights: dict[str, int]  # revision -> weight
    agent_pid: int | None
    state_dir: str | None
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RevisionRecord:
    id: int
    environment: str  # the environment's name
    name: str  # "r1", "r2", ...
    number: int
    release_dir: str
    spec: dict[str, Any]  # ServiceSpec.to_json()
    commit_sha: str | None
    ref: str | None
    pipeline_id: str | None
    job_id: str | None
    model_version: str | None
    ports: list[int]
    status: str  # one of REVISION_STATUSES
    created_at: float
    stopped_at: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeploymentRecord:
    id: int
    environment: str
    number: int  # 1, 2, ... per environment
    revision: str
    previous_revision: str | None
    strategy: str  # one of STRATEGIES
    status: str  # one of DEPLOYMENT_STATUSES
    reason: str | None
    commit_sha: str | None
    commit_at: float | None  # commit time (DORA lead time)
    ref: str | None
    pipeline_id: str | None
    job_id: str | None
    pipeline_url: str | None
    actor: str
    started_at: float
    finished_at: float | None
    analysis: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EventRecord:
    id: int
    environment: str
    deployment_id: int | None
    at: float
    kind: str  # deployment.started, weight.set, instance.crashed, ...
    revision: str | None
    message: str
    data: dict[str, Any] | None
    actor: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IncidentRecord:
    id: int
    environment: str
    kind: str  # one of INCIDENT_KINDS
    title: str
    opened_at: float
    resolved_at: float | None  # None: still open
    deployment_id: int | None
    cause: str | None
    resolution: str | None
    data: dict[str, Any] | None
    opened_by: str
    resolved_by: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_ENV_NAME = environments.c.name.label("env_name")


def _joined(table: Any) -> Select[Any]:
    return select(table, _ENV_NAME).join(environments, environments.c.id == table.c.environment_id)


def _from_row(cls: type[_R], row: Row[Any], **fixed: Any) -> _R:
    """A record from a row whose columns bear its field names (`environment`: the joined env_name)."""
    values = row._mapping
    if "environment" in _names(cls):
        fixed.setdefault("environment", values["env_name"])
    return cls(**{name: fixed[name] if name in fixed else values[name] for name in _names(cls)})


def _names(cls: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _environment(row: Row[Any]) -> EnvironmentRecord:
    weights = {str(k): int(v) for k, v in (row.weights or {}).items()}
    return _from_row(EnvironmentRecord, row, weights=weights)


def _revision(row: Row[Any]) -> RevisionRecord:
    return _from_row(RevisionRecord, row, ports=[int(p) for p in row.ports or []])


def _deployment(row: Row[Any]) -> DeploymentRecord:
    return _from_row(DeploymentRecord, row)


def _event(row: Row[Any]) -> EventRecord:
    return _from_row(EventRecord, row)


def _incident(row: Row[Any]) -> IncidentRecord:
    return _from_row(IncidentRecord, row)


def open_deploy_store(url: str) -> DeployStore:
    """The deployment store in the database at a SQLAlchemy URL (created and migrated when needed)."""
    return DeployStore(open_current(url), owns_database=True)


class DeployStore(DatabaseStore):
    """Environments, revisions, deployments, events and incidents in one database (the run history's)."""

    # -- environments ---------------------------------------------------------------------------

    def ensure_environment(self, name: str, *, scope: str = "", tier: str | None = None) -> EnvironmentRecord:
        """The environment, created when absent (several callers at once make one row). A given
        `tier` replaces the one it had."""
        _check_name(name, scope)
        now = time.time()
        with self._write(f"create environment {name!r}") as conn:
            conn.execute(self._insert_environment_if_absent(scope, name, tier, now))
            where = and_(*_named(name, scope))
            row = conn.execute(select(environments).where(where)).one()
            if tier is not None and row.tier != tier:
                row = conn.execute(
                    update(environments)
                    .where(where)
                    .values(tier=tier, updated_at=now)
                    .returning(environments)
                ).one()
        return _environment(row)

    def _insert_environment_if_absent(self, scope: str, name: str, tier: str | None, now: float) -> Any:
        values = {"scope": scope, "name": name, "tier": tier, "created_at": now, "updated_at": now}
        if self._db.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(environments).values(values).on_conflict_do_nothing()
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(environments).values(values).on_conflict_do_nothing()

    def find_environment(self, name: str, *, scope: str = "") -> EnvironmentRecord | None:
        with self._read(f"read environment {name!r}") as conn:
            row = conn.execute(select(environments).where(*_named(name, scope))).first()
        return None if row is None else _environment(row)

    def get_environment(self, name: str, *, scope: str = "") -> EnvironmentRecord:
        """NotFoundError (with a hint) when there is none."""
        with self._read(f"read environment {name!r}") as conn:
            row = conn.execute(select(environments).where(*_named(name, scope))).first()
            if row is None:
                query = select(environments.c.name).where(environments.c.scope == scope)
                hint = did_you_mean(name, list(conn.execute(query).scalars()))
                raise NotFoundError(
                    f"no environment {name!r}{hint}; deploy to it first with `aicd deploy --env {name}`"
                )
        return _environment(row)

    def list_environments(self, *, scope: str | None = None) -> list[EnvironmentRecord]:
        """Environments of a scope (None: of every scope), by scope and name."""
        query = select(environments).order_by(environments.c.scope, environments.c.name)
        if scope is not None:
            query = query.where(environments.c.scope == scope)
        with self._read("list environments") as conn:
            rows = conn.execute(query).all()
        return [_environment(r) for r in rows]

    def update_environment(self, env_id: int, **fields: Any) -> EnvironmentRecord:
        """Set fields of ENVIRONMENT_UPDATABLE (ValueError for others) and updated_at."""
        unknown = sorted(set(fields) - ENVIRONMENT_UPDATABLE)
        if unknown:
            hint = did_you_mean(unknown[0], sorted(ENVIRONMENT_UPDATABLE))
            raise ValueError(f"cannot set environment field(s) {', '.join(unknown)}{hint}")
        if "status" in fields:
            _check("environment status", fields["status"], ENVIRONMENT_STATUSES)
        values = dict(fields)
        if values.get("weights") is not None:
            values["weights"] = {str(k): int(v) for k, v in values["weights"].items()}
        values["updated_at"] = time.time()
        with self._write(f"update environment {env_id}") as conn:
            row = conn.execute(
                update(environments).where(environments.c.id == env_id).values(values).returning(environments)
            ).first()
            if row is None:
                raise _no_environment_id(env_id)
        return _environment(row)

    # -- revisions ------------------------------------------------------------------------------

    def new_revision(
        self,
        env_id: int,
        *,
        release_dir: str,
        spec: Mapping[str, Any],
        commit_sha: str | None = None,
        ref: str | None = None,
        pipeline_id: str | int | None = None,
        job_id: str | int | None = None,
        model_version: str | None = None,
    ) -> RevisionRecord:
        """The environment's next revision (r1, r2, ... without gaps), in status 'starting'."""
        now = time.time()
        with self._write(f"add a revision to environment {env_id}") as conn:
            number = self._bump(conn, env_id, environments.c.last_revision)
            revision_id = conn.execute(
                insert(revisions)
                .values(
                    environment_id=env_id,
                    name=f"r{number}",
                    number=number,
                    release_dir=str(release_dir),
                    spec=dict(spec),
                    commit_sha=commit_sha,
                    ref=ref,
                    pipeline_id=_text(pipeline_id),
                    job_id=_text(job_id),
                    model_version=model_version,
                    ports=None,
                    status="starting",
                    created_at=now,
                )
                .returning(revisions.c.id)
            ).scalar_one()
            row = conn.execute(_joined(revisions).where(revisions.c.id == revision_id)).one()
        return _revision(row)

    def update_revision(
        self,
        env_id: int,
        name: str,
        *,
        status: str | None = None,
        ports: Sequence[int] | None = None,
        stopped_at: float | None = None,
    ) -> RevisionRecord:
        values: dict[str, Any] = {}
        if status is not None:
            values["status"] = _check("revision status", status, REVISION_STATUSES)
        if ports is not None:
            values["ports"] = [int(p) for p in ports]
        if stopped_at is not None:
            values["stopped_at"] = float(stopped_at)
        where = and_(revisions.c.environment_id == env_id, revisions.c.name == name)
        with self._write(f"update revision {name!r} of environment {env_id}") as conn:
            if values:
                conn.execute(update(revisions).where(where).values(values))
            row = conn.execute(_joined(revisions).where(where)).first()
            if row is None:
                raise self._no_revision(conn, env_id, name)
        return _revision(row)

    def get_revision(self, env_id: int, name: str) -> RevisionRecord:
        with self._read(f"read revision {name!r} of environment {env_id}") as conn:
            row = conn.execute(
                _joined(revisions).where(revisions.c.environment_id == env_id, revisions.c.name == name)
            ).first()
            if row is None:
                raise self._no_revision(conn, env_id, name)
        return _revision(row)

    def list_revisions(self, env_id: int) -> list[RevisionRecord]:
        """The environment's revisions, by number."""
        with self._read(f"list revisions of environment {env_id}") as conn:
            rows = conn.execute(
                _joined(revisions).where(revisions.c.environment_id == env_id).order_by(revisions.c.number)
            ).all()
            if not rows:
                self._env_name(conn, env_id)  # NotFoundError for an unknown environment
        return [_revision(r) for r in rows]

    # -- deployments ----------------------------------------------------------------------------

    def begin_deployment(
        self,
        env_id: int,
        *,
        revision: str,
        strategy: str,
        actor: str,
        previous_revision: str | None = None,
        commit_sha: str | None = None,
        commit_at: float | None = None,
        ref: str | None = None,
        pipeline_id: str | int | None = None,
        job_id: str | int | None = None,
        pipeline_url: str | None = None,
        status: str = "running",
    ) -> DeploymentRecord:
        """The environment's next deployment; ConflictError while another one is active."""
        _check("deployment strategy", strategy, STRATEGIES)
        _check("deployment status", status, DEPLOYMENT_STATUSES)
        now = time.time()
        with self._write(f"start a deployment of environment {env_id}") as conn:
            # The counter first: its UPDATE locks the environment's row until commit, so a
            # concurrent caller waits here and then sees this deployment below.
            number = self._bump(conn, env_id, environments.c.last_deployment)
            active = conn.execute(
                _joined(deployments)
                .where(deployments.c.environment_id == env_id, deployments.c.status.in_(ACTIVE))
                .order_by(deployments.c.number.desc())
                .limit(1)
            ).first()
            if active is not None:
                name = active.env_name
                raise ConflictError(
                    f"environment {name}: deployment #{active.number} ({active.revision}, {active.strategy}) "
                    f"is in progress ({active.status}); promote or abort it first: "
                    f"`aicd promote {name}` / `aicd abort {name}`"
                )
            deployment_id = conn.execute(
                insert(deployments)
                .values(
                    environment_id=env_id,
                    number=number,
                    revision=revision,
                    previous_revision=previous_revision,
                    strategy=strategy,
                    status=status,
                    commit_sha=commit_sha,
                    commit_at=commit_at,
                    ref=ref,
                    pipeline_id=_text(pipeline_id),
                    job_id=_text(job_id),
                    pipeline_url=pipeline_url,
                    actor=actor,
                    started_at=now,
                )
                .returning(deployments.c.id)
            ).scalar_one()
            row = conn.execute(_joined(deployments).where(deployments.c.id == deployment_id)).one()
        return _deployment(row)

    def set_deployment(
        self,
        dep_id: int,
        *,
        status: str | None = None,
        reason: str | None = None,
        analysis: Mapping[str, Any] | None = None,
        finished: bool = False,
    ) -> DeploymentRecord:
        """Set what is given; `finished` sets finished_at to now."""
        values: dict[str, Any] = {}
        if status is not None:
            values["status"] = _check("deployment status", status, DEPLOYMENT_STATUSES)
        if reason is not None:
            values["reason"] = reason
        if analysis is not None:
            values["analysis"] = dict(analysis)
        if finished:
            values["finished_at"] = time.time()
        with self._write(f"update deployment {dep_id}") as conn:
            if values:
                conn.execute(update(deployments).where(deployments.c.id == dep_id).values(values))
            row = conn.execute(_joined(deployments).where(deployments.c.id == dep_id)).first()
            if row is None:
                raise NotFoundError(f"no deployment with id {dep_id}")
        return _deployment(row)

    def active_deployment(self, env_id: int) -> DeploymentRecord | None:
        """The environment's running or paused deployment, if any."""
        with self._read(f"read the active deployment of environment {env_id}") as conn:
            row = conn.execute(
                _joined(deployments)
                .where(deployments.c.environment_id == env_id, deployments.c.status.in_(ACTIVE))
                .order_by(deployments.c.number.desc())
                .limit(1)
            ).first()
        return None if row is None else _deployment(row)

    def get_deployment(self, env_id: int, number: int) -> DeploymentRecord:
        with self._read(f"read deployment #{number} of environment {env_id}") as conn:
            row = conn.execute(
                _joined(deployments).where(
                    deployments.c.environment_id == env_id, deployments.c.number == number
                )
            ).first()
            if row is None:
                name, last = conn.execute(
                    select(environments.c.name, environments.c.last_deployment).where(
                        environments.c.id == env_id
                    )
                ).first() or (None, 0)
                if name is None:
                    raise _no_environment_id(env_id)
                have = f"#1 to #{last}" if last > 1 else ("#1" if last == 1 else "none yet")
                raise NotFoundError(f"environment {name!r} has no deployment #{number} (it has {have})")
        return _deployment(row)

    def list_deployments(
        self,
        *,
        environment: str | None = None,
        scope: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[DeploymentRecord]:
        """Deployments started in [since, until), newest first."""
        query = _joined(deployments).where(
            *_env_filter(environment, scope),
            *_range(deployments.c.started_at, since, until),
        )
        query = query.order_by(deployments.c.started_at.desc(), deployments.c.id.desc()).limit(limit)
        with self._read("list deployments") as conn:
            rows = conn.execute(query).all()
        return [_deployment(r) for r in rows]

    # -- events ---------------------------------------------------------------------------------

    def add_event(
        self,
        env_id: int,
        kind: str,
        message: str,
        *,
        deployment_id: int | None = None,
        revision: str | None = None,
        data: Mapping[str, Any] | None = None,
        actor: str = "system",
        at: float | None = None,
    ) -> EventRecord:
        when = time.time() if at is None else float(at)
        with self._write(f"record event {kind!r} of environment {env_id}") as conn:
            name = self._env_name(conn, env_id)
            event_id = conn.execute(
                insert(deploy_events)
                .values(
                    environment_id=env_id,
                    deployment_id=deployment_id,
                    at=when,
                    kind=kind,
                    revision=revision,
                    message=message,
                    data=None if data is None else dict(data),
                    actor=actor,
                )
                .returning(deploy_events.c.id)
            ).scalar_one()
        return EventRecord(
            id=int(event_id),
            environment=name,
            deployment_id=deployment_id,
            at=when,
            kind=kind,
            revision=revision,
            message=message,
            data=None if data is None else dict(data),
            actor=actor,
        )

    def list_events(
        self,
        *,
        environment: str | None = None,
        scope: str | None = None,
        deployment_id: int | None = None,
        since: float | None = None,
        limit: int | None = None,
        after_id: int | None = None,
    ) -> list[EventRecord]:
        """Events at or after `since` (and with an id above `after_id`, to follow new ones), oldest
        first; with `limit`, the last `limit` of them (as `tail` does)."""
        query = _joined(deploy_events).where(
            *_env_filter(environment, scope), *_range(deploy_events.c.at, since, None)
        )
        if deployment_id is not None:
            query = query.where(deploy_events.c.deployment_id == deployment_id)
        if after_id is not None:
            query = query.where(deploy_events.c.id > after_id)
        query = query.order_by(deploy_events.c.id.desc()).limit(limit)
        with self._read("list deploy events") as conn:
            rows = conn.execute(query).all()
        return [_event(r) for r in reversed(rows)]

    # -- incidents ------------------------------------------------------------------------------

    def open_incident(
        self,
        env_id: int,
        kind: str,
        title: str,
        *,
        opened_by: str,
        deployment_id: int | None = None,
        cause: str | None = None,
        data: Mapping[str, Any] | None = None,
        at: float | None = None,
    ) -> IncidentRecord:
        values = _incident_values(env_id, kind, title, opened_by, deployment_id, cause, data, at)
        with self._write(f"open an incident in environment {env_id}") as conn:
            self._env_name(conn, env_id)
            return self._insert_incident(conn, values)

    def open_incident_once(
        self,
        env_id: int,
        kind: str,
        title: str,
        *,
        opened_by: str,
        cause: str | None = None,
        data: Mapping[str, Any] | None = None,
        at: float | None = None,
    ) -> IncidentRecord | None:
        """As open_incident, unless one of `kind` is open in the environment already (None then).

        One transaction: the environment's row is locked first (PostgreSQL; SQLite writers take
        turns), so monitors on any number of hosts watching the same environment open it once.
        """
        values = _incident_values(env_id, kind, title, opened_by, None, cause, data, at)
        with self._write(f"open an incident in environment {env_id}") as conn:
            locked = conn.execute(
                update(environments)
                .where(environments.c.id == env_id)
                .values(updated_at=environments.c.updated_at)
                .returning(environments.c.id)
            ).first()
            if locked is None:
                raise _no_environment_id(env_id)
            already = conn.execute(
                select(incidents.c.id).where(
                    incidents.c.environment_id == env_id,
                    incidents.c.kind == kind,
                    incidents.c.resolved_at.is_(None),
                )
            ).first()
            if already is not None:
                return None
            return self._insert_incident(conn, values)

    @staticmethod
    def _insert_incident(conn: Connection, values: Mapping[str, Any]) -> IncidentRecord:
        incident_id = conn.execute(
            insert(incidents).values(dict(values)).returning(incidents.c.id)
        ).scalar_one()
        return _incident(conn.execute(_joined(incidents).where(incidents.c.id == incident_id)).one())

    def resolve_incident(
        self, incident_id: int, *, resolved_by: str, resolution: str | None = None, at: float | None = None
    ) -> IncidentRecord:
        """Close an open incident; ConflictError when it was resolved already."""
        when = time.time() if at is None else float(at)
        with self._write(f"resolve incident #{incident_id}") as conn:
            row = conn.execute(
                _joined(incidents).where(incidents.c.id == incident_id).with_for_update(of=incidents)
            ).first()
            if row is None:
                raise NotFoundError(f"no incident #{incident_id}")
            if row.resolved_at is not None:
                raise ConflictError(
                    f"incident #{incident_id} ({row.title}) was resolved already, at "
                    f"{_clock(row.resolved_at)} by {row.resolved_by}"
                )
            if when < row.opened_at:
                raise ValueError(
                    f"incident #{incident_id} cannot be resolved at {_clock(when)}, before it opened "
                    f"({_clock(row.opened_at)})"
                )
            conn.execute(
                update(incidents)
                .where(incidents.c.id == incident_id)
                .values(resolved_at=when, resolved_by=resolved_by, resolution=resolution)
            )
            row = conn.execute(_joined(incidents).where(incidents.c.id == incident_id)).one()
        return _incident(row)

    def open_incidents(self, env_id: int, kind: str | None = None) -> list[IncidentRecord]:
        """The environment's unresolved incidents (of one kind), oldest first."""
        query = _joined(incidents).where(
            incidents.c.environment_id == env_id, incidents.c.resolved_at.is_(None)
        )
        if kind is not None:
            query = query.where(incidents.c.kind == kind)
        with self._read(f"list open incidents of environment {env_id}") as conn:
            rows = conn.execute(query.order_by(incidents.c.opened_at, incidents.c.id)).all()
        return [_incident(r) for r in rows]

    def get_incident(self, incident_id: int) -> IncidentRecord:
        with self._read(f"read incident #{incident_id}") as conn:
            row = conn.execute(_joined(incidents).where(incidents.c.id == incident_id)).first()
        if row is None:
            raise NotFoundError(f"no incident #{incident_id}")
        return _incident(row)

    def list_incidents(
        self,
        *,
        environment: str | None = None,
        scope: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[IncidentRecord]:
        """Incidents that overlap or touch [since, until): opened before `until` and not resolved
        before `since`; oldest first. One resolved exactly at `since` is kept: it may join an
        episode that goes on in the window (aicd.reliability.figures merges touching incidents)."""
        query = _joined(incidents).where(*_env_filter(environment, scope))
        if until is not None:
            query = query.where(incidents.c.opened_at < until)
        if since is not None:
            query = query.where(or_(incidents.c.resolved_at.is_(None), incidents.c.resolved_at >= since))
        with self._read("list incidents") as conn:
            rows = conn.execute(query.order_by(incidents.c.opened_at, incidents.c.id)).all()
        return [_incident(r) for r in rows]

    # -- plumbing -------------------------------------------------------------------------------

    @staticmethod
    def _bump(conn: Connection, env_id: int, counter: Any) -> int:
        """Add one to a counter of the environment's row (locking it) and return the new value."""
        number = conn.execute(
            update(environments)
            .where(environments.c.id == env_id)
            .values({counter: counter + 1})
            .returning(counter)
        ).scalar_one_or_none()
        if number is None:
            raise _no_environment_id(env_id)
        return int(number)

    @staticmethod
    def _env_name(conn: Connection, env_id: int) -> str:
        name = conn.execute(
            select(environments.c.name).where(environments.c.id == env_id)
        ).scalar_one_or_none()
        if name is None:
            raise _no_environment_id(env_id)
        return str(name)

    def _no_revision(self, conn: Connection, env_id: int, name: str) -> NotFoundError:
        env_name = self._env_name(conn, env_id)
        names = list(
            conn.execute(
                select(revisions.c.name)
                .where(revisions.c.environment_id == env_id)
                .order_by(revisions.c.number)
            ).scalars()
        )
        known = ", ".join(names) if names else "none yet"
        hint = did_you_mean(name, names)
        return NotFoundError(
            f"environment {env_name!r} has no revision {name!r}{hint}; its revisions: {known}"
        )


def _incident_values(
    env_id: int,
    kind: str,
    title: str,
    opened_by: str,
    deployment_id: int | None,
    cause: str | None,
    data: Mapping[str, Any] | None,
    at: float | None,
) -> dict[str, Any]:
    return {
        "environment_id": env_id,
        "kind": _check("incident kind", kind, INCIDENT_KINDS),
        "title": title,
        "opened_at": time.time() if at is None else float(at),
        "deployment_id": deployment_id,
        "cause": cause,
        "data": None if data is None else dict(data),
        "opened_by": opened_by,
    }


def _named(name: str, scope: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return environments.c.scope == scope, environments.c.name == name


def _env_filter(environment: str | None, scope: str | None) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if environment is not None:
        out.append(environments.c.name == environment)
    if scope is not None:
        out.append(environments.c.scope == scope)
    return out


def _range(column: Any, since: float | None, until: float | None) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if since is not None:
        out.append(column >= since)
    if until is not None:
        out.append(column < until)
    return out


def _check(what: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(
            f"unknown {what} {value!r}{did_you_mean(value, allowed)}; one of: {', '.join(allowed)}"
        )
    return value


def _check_name(name: str, scope: str) -> None:
    if not name.strip():
        raise ConfigError("an environment needs a name, e.g. `aicd deploy --env staging`")
    if len(name) > NAME_MAX:
        raise ConfigError(f"environment name {name[:40]!r}... is too long: at most {NAME_MAX} characters")
    if len(scope) > SCOPE_MAX:
        raise ConfigError(f"environment scope {scope[:40]!r}... is too long: at most {SCOPE_MAX} characters")


def _no_environment_id(env_id: int) -> NotFoundError:
    return NotFoundError(f"no environment with id {env_id}")


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _text(value: str | int | None) -> str | None:
    return None if value is None else str(value)
