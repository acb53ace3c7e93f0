"""An environment's page: its revisions and live traffic weights, the rollout in progress (its
steps and where it is), a deployment's canary analysis per metric (verdict, effect size, a chart
of stable against canary) and drift check, the deployment history with reasons; promote, abort
and roll back for developers, through the API's own route function (routes.environments)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from aicd.core.access import Role
from aicd.deploy.plan import RolloutPlan
from aicd.errors import NotFoundError
from aicd.server.deps import get_state
from aicd.server.routes import environments as api_env
from aicd.server.state import ServerState
from aicd.store.deployments import DeploymentRecord, DeployStore, EnvironmentRecord
from aicd.store.projects_repo import ProjectRecord
from aicd.web import charts
from aicd.web.auth import CheckedUser, ProjectName, User, access_to
from aicd.web.pages import WebRoute, page

router = APIRouter(route_class=WebRoute, include_in_schema=False)

PLAN_FILE = "plan.json"  # aicd.deploy.agent.PLAN_FILE (not imported: the agent module is heavy)
HISTORY = 30
ACTIVE = frozenset({"running", "paused"})
Deployment = Annotated[int | None, Query(ge=1, le=2**31)]


def _plan(env: EnvironmentRecord) -> RolloutPlan | None:
    if not env.state_dir:
        return None
    try:
        return RolloutPlan.from_json(json.loads((Path(env.state_dir) / PLAN_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _steps(
    store: DeployStore, env: EnvironmentRecord, active: DeploymentRecord | None
) -> list[dict[str, Any]]:
    """The active canary's steps, each done, current or to come (from its `step` events)."""
    plan = _plan(env)
    if active is None or plan is None or not plan.steps:
        return []
    events = store.list_events(environment=env.name, scope=env.scope, deployment_id=active.id, limit=200)
    reached = sum(1 for e in events if e.kind == "step")
    rows = []
    for index, step in enumerate(plan.steps):
        state = "done" if index < reached - 1 else "current" if index == reached - 1 else "next"
        rows.append({"number": index + 1, "text": step.describe(), "state": state})
    return rows


def analysis_view(analysis: dict[str, Any] | None) -> dict[str, Any] | None:
    """A deployment's stored analysis report, arranged for the page: the judge's metrics with a
    chart of stable against canary medians, the threshold checks, the drift check and its chart."""
    if not analysis or ("judge" not in analysis and "thresholds" not in analysis):
        return None
    judge = analysis.get("judge") or {}
    metrics = judge.get("metrics") or []
    chart = charts.pairs(
        [
            (str(m.get("name")), (m.get("stable") or {}).get("median"), (m.get("canary") or {}).get("median"))
            for m in metrics
        ]
    )
    drift = analysis.get("drift")
    classes = (drift or {}).get("classes") or {}
    mix = charts.pairs([(str(k), v.get("stable"), v.get("canary")) for k, v in sorted(classes.items())])
    return {
        "report": analysis,
        "judge": judge or None,
        "metrics": metrics,
        "chart": chart,
        "thresholds": (analysis.get("thresholds") or {}).get("metrics") or [],
        "drift": drift,
        "mix": mix,
    }


def _env_context(state: ServerState, project: ProjectRecord, name: str, number: int | None) -> dict[str, Any]:
    store = DeployStore(state.database)
    env = store.get_environment(name, scope=project.scope)
    deployments = store.list_deployments(environment=env.name, scope=env.scope, limit=HISTORY)
    active = store.active_deployment(env.id)
    if number is not None:
        shown: DeploymentRecord | None = store.get_deployment(env.id, number)
    else:
        shown = next((d for d in deployments if d.analysis and "judge" in d.analysis), None)
    revisions = sorted(store.list_revisions(env.id), key=lambda r: r.number, reverse=True)
    tried = (
        shown
        if shown is not None and number is not None
        else next((d for d in deployments if d.analysis and "experiment" in d.analysis), None)
    )
    return {
        "env": env,
        "revisions": revisions,
        "deployments": deployments,
        "active": active,
        "steps": _steps(store, env, active),
        "shown": shown,
        "analysis": analysis_view(shown.analysis if shown else None),
        "experiment": (tried.analysis or {}).get("experiment") if tried is not None else None,
        "tried": tried,
        "fmt": charts.fmt,
    }


@router.get("/projects/{project}/environments/{env:path}")
async def environment_page(
    request: Request,
    project: ProjectName,
    env: str,
    user: User,
    deployment: Deployment = None,
    live: Annotated[bool, Query()] = False,
) -> Response:
    """The page; `?live=1`: its live part alone (status, traffic, the rollout's steps, the buttons),
    which the page asks for every 2 s while a rollout is in progress."""
    access = await access_to(request, project, user, Role.VIEWER)
    context = await run_in_threadpool(_env_context, get_state(request), access.project, env, deployment)
    active = context["active"]
    can_act = access.role >= Role.DEVELOPER
    return page(
        request,
        "_environment_live.html" if live else "environment.html",
        user,
        access=access,
        can_act=can_act,
        can_promote=can_act and active is not None,
        can_rollback=can_act and active is None and context["env"].stable_revision is not None,
        **context,
    )


@router.post("/projects/{project}/environments/{env:path}/{action}")
async def environment_action(
    request: Request,
    project: ProjectName,
    env: str,
    action: str,
    user: CheckedUser,
    full: Annotated[bool, Form()] = False,
    to: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    access = await access_to(request, project, user, Role.DEVELOPER)
    if action not in api_env.ACTIONS:
        raise NotFoundError(f"no environment action {action!r}: promote, abort or rollback")
    body = api_env.ActionIn(full=full, to=to.strip() or None)
    await api_env.act_on_environment(access, get_state(request), env, action, body)  # type: ignore[arg-type]
    return RedirectResponse(
        f"/projects/{quote(access.project.name)}/environments/{quote(env)}", status_code=303
    )
