"""Reliability and DORA figures: JSON at /reliability, Prometheus' text format at /metrics.

Both need a valid token and show the environments (and, in /metrics, the pipelines and jobs)
of the projects the caller has a role on; an admin sees every one. An environment belongs to
the project whose path is its scope (AICD_ENV_SCOPE in the project's jobs). The figures are
`aicd.reliability.report`'s, so `aicd metrics --json` for the same window gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from aicd.core.access import Principal
from aicd.errors import NotFoundError
from aicd.reliability.figures import DEFAULT_SLO
from aicd.reliability.report import DEFAULT_SINCE, MetricsReport, build_report, parse_since, parse_time
from aicd.server.deps import get_principal, get_state, roles_by_project
from aicd.server.state import ServerState
from aicd.suggest import did_you_mean

router = APIRouter(tags=["reliability"])

State = Annotated[ServerState, Depends(get_state)]
Caller = Annotated[Principal, Depends(get_principal)]
Env = Annotated[str | None, Query(max_length=100, description="Only environments of this name")]
Project = Annotated[str | None, Query(max_length=255, description="Only this project's environments")]
Since = Annotated[
    str,
    Query(
        max_length=100, description="Window start: a duration back from `until` (30d, 12h), a date, or 'all'"
    ),
]
Until = Annotated[
    str | None, Query(max_length=100, description="Window end: Unix seconds or ISO 8601 (default now)")
]
Slo = Annotated[float, Query(gt=0, lt=1, description="Availability objective, e.g. 0.995")]


@dataclass(frozen=True)
class _Visible:
    """What the caller may see: scopes (None: all), and project names by scope and by id."""

    scopes: set[str] | None
    by_scope: dict[str, str]
    by_id: dict[int, str]


def _visible(state: ServerState, principal: Principal, project: str | None) -> _Visible:
    projects = state.projects.list()
    roles = roles_by_project(state, principal)
    if roles is not None:
        projects = [p for p in projects if p.id in roles]
    if project is not None:
        chosen = [p for p in projects if p.name == project or str(p.id) == project]
        if not chosen:
            raise NotFoundError(f"no project {project!r}{did_you_mean(project, [p.name for p in projects])}")
        projects = chosen
    scopes = None if principal.is_admin and project is None else {p.scope for p in projects}
    return _Visible(scopes, {p.scope: p.name for p in projects}, {p.id: p.name for p in projects})


def _report(
    state: ServerState,
    visible: _Visible,
    *,
    env: str | None,
    since: str,
    until: str | None,
    slo: float,
) -> MetricsReport:
    from aicd.store.deployments import DeployStore

    end = parse_time(until)
    start = parse_since(since, end)
    store = DeployStore(state.database)
    environments = [
        e for e in store.list_environments(scope=None) if visible.scopes is None or e.scope in visible.scopes
    ]
    if env is not None:
        named = [e for e in environments if e.name == env]
        if not named:
            known = sorted({e.name for e in environments})
            raise NotFoundError(f"no environment {env!r}{did_you_mean(env, known)}")
        environments = named
    return build_report(store, environments, since=start, until=end, slo_target=slo)


@router.get(
    "/reliability",
    summary="MTTF, MTTR, MTBF, availability, error budget and DORA's four keys per environment",
)
def reliability(
    state: State,
    principal: Caller,
    env: Env = None,
    project: Project = None,
    since: Since = DEFAULT_SINCE,
    until: Until = None,
    slo: Slo = DEFAULT_SLO,
) -> dict[str, Any]:
    visible = _visible(state, principal, project)
    data = _report(state, visible, env=env, since=since, until=until, slo=slo).to_json()
    for entry in data["environments"]:
        entry["project"] = visible.by_scope.get(entry["scope"])
    return data


@router.get(
    "/metrics",
    summary="The same figures, and pipeline and job counts and durations, in Prometheus' text format",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def prometheus_metrics(
    state: State,
    principal: Caller,
    env: Env = None,
    project: Project = None,
    since: Since = DEFAULT_SINCE,
    until: Until = None,
    slo: Slo = DEFAULT_SLO,
) -> Response:
    from aicd.reliability.prometheus import CONTENT_TYPE, MetricsPage, render
    from aicd.reliability.run_stats import job_stats, pipeline_stats

    visible = _visible(state, principal, project)
    report = _report(state, visible, env=env, since=since, until=until, slo=slo)
    ids = None if visible.scopes is None else set(visible.by_id)
    page = MetricsPage(
        report=report,
        pipelines=[s for s in pipeline_stats(state.database) if ids is None or s.project_id in ids],
        jobs=[s for s in job_stats(state.database) if ids is None or s.project_id in ids],
        project_by_scope=visible.by_scope,
        project_by_id=visible.by_id,
    )
    return Response(content=render(page), media_type=CONTENT_TYPE)
