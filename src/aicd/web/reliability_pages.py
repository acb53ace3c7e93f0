"""The reliability page: per environment MTTF, MTTR, MTBF, availability and error budget for a
chosen window, DORA's four keys with their levels (the API's /reliability route function, so the
same numbers as `aicd metrics`), and the incidents of the window on a timeline."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from aicd.core.access import Principal
from aicd.errors import ConfigError, NotFoundError
from aicd.reliability.figures import DEFAULT_SLO
from aicd.reliability.report import DEFAULT_SINCE
from aicd.server.deps import get_state
from aicd.server.routes import metrics as api_metrics
from aicd.server.state import ServerState
from aicd.store.deployments import DeployStore
from aicd.web import charts
from aicd.web.auth import User
from aicd.web.pages import WebRoute, page

router = APIRouter(route_class=WebRoute, include_in_schema=False)

DORA_KEYS = (
    ("deployment_frequency", "Deployment frequency"),
    ("lead_time", "Lead time for changes"),
    ("change_failure_rate", "Change failure rate"),
    ("time_to_restore", "Time to restore service"),
)
Text = Annotated[str, Query(max_length=100)]


def _incidents(state: ServerState, data: dict[str, Any]) -> charts.Timeline | None:
    """One lane per environment of the report: its incidents over the observed window (from the
    window's start, or the first deployment when that came later)."""
    store = DeployStore(state.database)
    until = float(data["until"])
    lanes = []
    starts = []
    for entry in data["environments"]:
        found = store.list_incidents(
            environment=entry["environment"], scope=entry["scope"], since=data["since"], until=until
        )
        project = entry.get("project")
        label = f"{project}/{entry['environment']}" if project else entry["environment"]
        lanes.append((label, [(i.opened_at, i.resolved_at, i.kind, f"{i.kind}: {i.title}") for i in found]))
        start = entry["reliability"]["window"].get("start")
        starts += [start] if start is not None else [i.opened_at for i in found]
    begin = min(starts) if starts else until - 86400.0
    return charts.timeline(min(begin, until - 60.0), until, lanes)


def _reliability(
    state: ServerState, principal: Principal, env: str | None, project: str | None, since: str, slo: float
) -> dict[str, Any]:
    data = api_metrics.reliability(state, principal, env, project, since, None, slo)
    return {"data": data, "timeline": _incidents(state, data)}


def _slo(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"objective {text!r}: a number between 0 and 1, e.g. 0.995") from None
    if not 0 < value < 1:
        raise ConfigError(f"objective {text!r}: a number between 0 and 1, e.g. 0.995")
    return value


@router.get("/reliability")
async def reliability_page(
    request: Request,
    user: User,
    since: Text = DEFAULT_SINCE,
    slo: Text = str(DEFAULT_SLO),
    project: Text = "",
    env: Text = "",
) -> Response:
    form = {"since": since, "slo": slo, "project": project, "env": env}
    try:
        context = await run_in_threadpool(
            _reliability,
            get_state(request),
            user.principal,
            env.strip() or None,
            project.strip() or None,
            since.strip() or DEFAULT_SINCE,
            _slo(slo.strip()),
        )
    except (ConfigError, NotFoundError) as exc:  # the form again, with what to correct
        return page(request, "reliability.html", user, 400, form=form, error=str(exc), dora_keys=DORA_KEYS)
    return page(request, "reliability.html", user, form=form, error=None, dora_keys=DORA_KEYS, **context)
