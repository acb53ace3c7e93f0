"""From the deployment store to the figures: one report per environment and window.

The only module of aicd.reliability that reads the store; `aicd metrics`,
`GET /api/v1/reliability` and `/api/v1/metrics` all draw the same
`MetricsReport`, so their numbers agree for the same window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aicd.errors import ConfigError
from aicd.reliability.dora import DoraFigures, compute_dora
from aicd.reliability.figures import DEFAULT_SLO, ReliabilityFigures, check_slo, compute_reliability
from aicd.reliability.inputs import SUCCEEDED, Deployment, Incident
from aicd.reliability.window import observe

if TYPE_CHECKING:
    from aicd.store.deployments import DeployStore, EnvironmentRecord

DEFAULT_SINCE = "30d"
FUTURE_SLACK_S = 86400.0  # --until may be a little ahead of this clock, not more


@dataclass(frozen=True)
class EnvironmentReport:
    environment: str
    scope: str  # "" locally; the project's path on a server
    reliability: ReliabilityFigures
    dora: DoraFigures

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "scope": self.scope,
            "reliability": self.reliability.to_json(),
            "dora": self.dora.to_json(),
        }


@dataclass(frozen=True)
class MetricsReport:
    since: float | None
    until: float
    slo_target: float
    environments: tuple[EnvironmentReport, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "slo_target": self.slo_target,
            "environments": [report.to_json() for report in self.environments],
        }


def parse_since(text: str | None, until: float) -> float | None:
    """`--since`: a duration back from `until` ("30d", "12h", "2w"), a date or time (ISO 8601,
    UTC unless it says otherwise), or "all" (None: everything recorded)."""
    from aicd.pipeline.durations import DurationError, parse_duration

    if text is None or not text.strip():
        text = DEFAULT_SINCE
    text = text.strip()
    if text.lower() == "all":
        return None
    try:
        back = parse_duration(text)
    except DurationError:
        pass
    else:
        if not math.isfinite(until - back):
            raise ConfigError(f"--since {text!r}: that is too long ago")
        return until - back
    try:
        return parse_time(text)
    except ConfigError:
        raise ConfigError(
            f"--since {text!r}: give a duration back from now (30d, 12h, 2w), a date (2024-05-01), or 'all'"
        ) from None


def parse_time(text: str | None) -> float:
    """`--until`: Unix seconds or an ISO 8601 date or time (UTC unless it says otherwise); None: now."""
    now = time.time()
    if text is None or not text.strip():
        return now
    text = text.strip()
    try:
        at = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(
                f"{text!r} is not a time: give Unix seconds or an ISO 8601 date or time (2024-05-01T12:00)"
            ) from None
        at = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(at) or at < 0:
        raise ConfigError(f"{text!r} is not a time after 1970-01-01")
    if at > now + FUTURE_SLACK_S:
        raise ConfigError(f"{text!r} is in the future: figures are of what was recorded, up to now at most")
    return at


def select_environments(
    store: DeployStore, *, environment: str | None = None, scope: str | None = ""
) -> list[EnvironmentRecord]:
    """One environment by name (NotFoundError with suggestions), or all of the scope (None: every scope)."""
    if environment is not None:
        return [store.get_environment(environment, scope=scope or "")]
    return store.list_environments(scope=scope)


def environment_report(
    store: DeployStore,
    env: EnvironmentRecord,
    *,
    since: float | None,
    until: float,
    slo_target: float = DEFAULT_SLO,
) -> EnvironmentReport:
    """The figures of one environment over `[since, until)`, from what the store recorded."""
    records = store.list_deployments(environment=env.name, scope=env.scope, until=until)
    deployments = [
        Deployment(
            at=record.finished_at,
            status=record.status,
            commit_at=record.commit_at,
            id=record.id,
        )
        for record in records
        if record.finished_at is not None
    ]
    served = [d.at for d in deployments if d.status == SUCCEEDED]
    window = observe(since=since, until=until, service_start=min(served) if served else None)
    incidents = [
        Incident(
            opened_at=record.opened_at,
            resolved_at=record.resolved_at,
            kind=record.kind,
            deployment_id=record.deployment_id,
        )
        for record in store.list_incidents(environment=env.name, scope=env.scope, since=since, until=until)
    ]
    return EnvironmentReport(
        environment=env.name,
        scope=env.scope,
        reliability=compute_reliability(incidents, window, slo_target=slo_target),
        dora=compute_dora(deployments, incidents, window),
    )


def build_report(
    store: DeployStore,
    environments: Sequence[EnvironmentRecord],
    *,
    since: float | None,
    until: float,
    slo_target: float = DEFAULT_SLO,
) -> MetricsReport:
    """The report of each environment given, over one window."""
    check_slo(slo_target)
    if since is not None and since > until:
        raise ConfigError("the window starts after it ends: --since must be before --until")
    reports = tuple(
        environment_report(store, env, since=since, until=until, slo_target=slo_target)
        for env in environments
    )
    return MetricsReport(since=since, until=until, slo_target=slo_target, environments=reports)
