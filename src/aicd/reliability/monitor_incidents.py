"""Incidents as people and the monitor open and close them: the store's rows plus an event each.

The CLI (`aicd incident`), the API (`/projects/{project}/incidents`) and the monitor all call
these, so an incident declared anywhere looks the same, and every opening and resolution is
also an event in the environment's history (`aicd env history NAME --events`):
``incident.opened`` and ``incident.resolved``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aicd.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from aicd.store.deployments import DeployStore, EnvironmentRecord, IncidentRecord

TITLE_MAX = 500
TEXT_MAX = 4000
MONITOR_ACTOR = "monitor"


def _text(value: str | None, what: str, limit: int, *, required: bool = False) -> str | None:
    if value is None or not value.strip():
        if required:
            raise ConfigError(f"an incident needs a {what}, e.g. --title 'predictions time out'")
        return None
    value = value.strip()
    if len(value) > limit:
        raise ConfigError(f"the incident's {what} is too long: at most {limit} characters")
    return value


def declare_incident(
    store: DeployStore,
    env: EnvironmentRecord,
    *,
    title: str,
    actor: str,
    cause: str | None = None,
) -> IncidentRecord:
    """Open a `declared` incident (a person says the service is failing); its time counts as downtime."""
    shown = _text(title, "title", TITLE_MAX, required=True)
    assert shown is not None
    record = store.open_incident(
        env.id, "declared", shown, opened_by=actor, cause=_text(cause, "cause", TEXT_MAX)
    )
    _opened_event(store, env.id, record, f"declared by {actor}")
    return record


def open_incident(
    store: DeployStore,
    env: EnvironmentRecord,
    kind: str,
    title: str,
    *,
    at: float,
    cause: str | None = None,
    data: Mapping[str, Any] | None = None,
    actor: str = MONITOR_ACTOR,
) -> IncidentRecord | None:
    """Open an incident of `kind` unless one of that kind is open already (None then): monitors
    watching the same environment, on this host or others, do not double it (one transaction)."""
    record = store.open_incident_once(env.id, kind, title, opened_by=actor, cause=cause, data=data, at=at)
    if record is not None:
        _opened_event(store, env.id, record, f"opened by {actor}", at=at)
    return record


def resolve_incident(
    store: DeployStore,
    incident_id: int,
    *,
    actor: str,
    scope: str,
    resolution: str | None = None,
    at: float | None = None,
) -> IncidentRecord:
    """Resolve an open incident of an environment of `scope` (ConflictError if it was already;
    an incident of another scope is NotFoundError, as if it did not exist)."""
    record = incident_of(store, incident_id, scope=scope)
    env_id = store.get_environment(record.environment, scope=scope).id
    when = max(time.time() if at is None else at, record.opened_at)
    resolved = store.resolve_incident(
        incident_id, resolved_by=actor, resolution=_text(resolution, "resolution", TEXT_MAX), at=when
    )
    took = when - record.opened_at
    store.add_event(
        env_id,
        "incident.resolved",
        f"incident #{record.id} ({record.kind}: {record.title}) resolved by {actor} after {took:.1f}s"
        + (f": {resolved.resolution}" if resolved.resolution else ""),
        deployment_id=record.deployment_id,
        data={"incident": record.id, "kind": record.kind, "duration_s": took},
        actor=actor,
        at=when,
    )
    return resolved


def incident_of(store: DeployStore, incident_id: int, *, scope: str | None = None) -> IncidentRecord:
    """The incident; with `scope`, only if its environment is of that scope."""
    record = store.get_incident(incident_id)
    if scope is not None and not any(
        i.id == incident_id for i in store.list_incidents(environment=record.environment, scope=scope)
    ):
        raise NotFoundError(f"no incident #{incident_id}")
    return record


def list_incidents(
    store: DeployStore,
    *,
    scope: str | None,
    environment: str | None = None,
    only_open: bool = False,
    limit: int | None = None,
) -> list[IncidentRecord]:
    """Incidents, newest first (`limit`: the newest that many); `only_open`: unresolved ones."""
    if environment is not None:
        store.get_environment(environment, scope=scope or "")  # NotFoundError with a hint
    records = store.list_incidents(environment=environment, scope=scope)
    if only_open:
        records = [r for r in records if r.resolved_at is None]
    records.reverse()
    return records[:limit] if limit is not None else records


def _opened_event(
    store: DeployStore, env_id: int, record: IncidentRecord, how: str, *, at: float | None = None
) -> None:
    store.add_event(
        env_id,
        "incident.opened",
        f"incident #{record.id} ({record.kind}) {how}: {record.title}",
        deployment_id=record.deployment_id,
        data={"incident": record.id, "kind": record.kind},
        actor=record.opened_by,
        at=record.opened_at if at is None else at,
    )


__all__ = [
    "MONITOR_ACTOR",
    "declare_incident",
    "incident_of",
    "list_incidents",
    "open_incident",
    "resolve_incident",
]
