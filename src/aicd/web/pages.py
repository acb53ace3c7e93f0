"""The UI's pages: sign-in, projects, a project, a pipeline (live graph), a job (live log).

Every page reads through the same stores and every action calls the API's own route function
(aicd.server.routes.*): the same role checks, core calls and audit entries as /api/v1.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from aicd.core.access import Role, hash_token
from aicd.core.pipeline_links import children_of, parent_of
from aicd.core.server_pipeline import IR_FILE, load_trigger
from aicd.core.test_report import build_report
from aicd.errors import AicdError, AuthError, NotFoundError
from aicd.pipeline.ir import Pipeline
from aicd.server.deps import IdPath, get_state
from aicd.server.errors import status_for
from aicd.server.routes import jobs as api_jobs
from aicd.server.routes import pipelines as api_pipelines
from aicd.server.state import ServerState
from aicd.store.deployments import DeployStore
from aicd.store.pipeline_queries import find_pipelines
from aicd.store.projects_repo import ProjectRecord
from aicd.store.records import JobRecord, PipelineRecord
from aicd.store.registry import RegistryStore
from aicd.web import ansi, graph
from aicd.web.auth import (
    CSRF_FIELD,
    CheckedUser,
    ProjectName,
    User,
    WebUser,
    access_to,
    may_run,
    sessions_of,
)
from aicd.web.sessions import COOKIE, SIGNIN_COOKIE, same_token

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
LIVE = frozenset({"created", "pending", "running"})
RECENT = 20
END_HOLD_S = 60.0
CHUNK = 1024 * 1024
MAX_LOG_BYTES = 1024 * 1024  # a longer log shows its last MiB (the whole one: the raw log link)


class WebRoute(APIRoute):
    """Errors as pages: not signed in -> the sign-in form; any AicdError -> its status, one message."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except AuthError as exc:
                return _to_signin(request, str(exc))
            except AicdError as exc:
                return _error_page(request, status_for(exc), str(exc))
            except RequestValidationError as exc:
                if request.method == "GET":  # a path or query no page has (e.g. a job id that is not one)
                    return _error_page(request, 404, "there is no such page")
                fields = ", ".join(str(e.get("loc", ("",))[-1]) for e in exc.errors())  # never the values
                return _error_page(request, 422, f"the form's fields are not valid ({fields}): correct them")
            except StarletteHTTPException as exc:
                return _error_page(request, exc.status_code, str(exc.detail))

        return route


router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _to_signin(request: Request, message: str) -> Response:
    """To the sign-in form, which comes back here after (a live fragment: to the page it is part of)."""
    if getattr(request.app.state, "local_ui", None) is not None:  # `aicd ui` has no sign-in form
        return _error_page(request, 401, "open the address `aicd ui` printed: it signs you in")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.headers.get("hx-request"):
        current = urlsplit(request.headers.get("hx-current-url", ""))
        target = _safe_next(current.path + (f"?{current.query}" if current.query else ""))
        return Response(status_code=200, headers={"HX-Redirect": f"/signin?next={quote(target, safe='')}"})
    url = f"/signin?next={quote(target, safe='')}" if request.method == "GET" else "/signin"
    return RedirectResponse(url, status_code=303)


def _error_page(request: Request, status: int, message: str) -> Response:
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message, "user": None}, status_code=status
    )


def _safe_next(target: str | None) -> str:
    """Only a path of this site (no scheme, no host, no `//`): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


# -- formatting (Jinja filters) ---------------------------------------------------------------------


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def fmt_metric(value: object) -> str:
    """A metric's value: 6 significant digits (0.977778, 45), as `aicd gate` prints them."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def pipeline_duration(p: PipelineRecord) -> float | None:
    if p.started_at is None:
        return None
    return (p.finished_at or time.time()) - p.started_at


def job_duration(j: JobRecord) -> float | None:
    if j.started_at is None:
        return None
    return (j.finished_at or time.time()) - j.started_at


templates.env.filters["duration"] = fmt_duration
templates.env.filters["when"] = fmt_time
templates.env.filters["metric"] = fmt_metric
templates.env.globals["pipeline_duration"] = pipeline_duration
templates.env.globals["job_duration"] = job_duration
templates.env.globals["mark"] = graph.mark
templates.env.globals["shorten"] = graph.shorten
templates.env.globals["CSRF_FIELD"] = CSRF_FIELD


def page(request: Request, name: str, user: WebUser | None, status: int = 200, **context: Any) -> Response:
    return templates.TemplateResponse(request, name, {"user": user, **context}, status_code=status)


# -- sign-in ----------------------------------------------------------------------------------------


@router.get("/signin")
async def signin_form(request: Request, next: str | None = None) -> Response:
    return _signin_page(request, _safe_next(next), None, 200)


def _signin_page(request: Request, target: str, error: str | None, status: int) -> Response:
    token = secrets.token_urlsafe(32)
    response = page(request, "signin.html", None, status, next=target, error=error, signin_csrf=token)
    response.set_cookie(
        SIGNIN_COOKIE, token, httponly=True, samesite="strict", secure=_https(request), path="/signin"
    )
    return response


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


@router.post("/signin")
async def signin(
    request: Request,
    token: Annotated[str, Form(max_length=1000)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    target = _safe_next(next)
    if not same_token(request.cookies.get(SIGNIN_COOKIE, ""), csrf):
        return _signin_page(request, target, "The form expired: please sign in again.", 403)
    token = token.strip()
    if not token:
        return _signin_page(request, target, "Paste an API token to sign in.", 401)
    token_hash = hash_token(token)
    user = await run_in_threadpool(get_state(request).accounts.user_for_token_hash, token_hash)
    if user is None:
        return _signin_page(request, target, "That token is invalid, expired or revoked.", 401)
    sessions = sessions_of(request)
    sessions.close(request.cookies.get(COOKIE))  # signing in again replaces the session
    session_id, _ = sessions.open(user.id, token_hash)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="lax", secure=_https(request), path="/")
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


@router.post("/signout")
async def signout(request: Request, _user: CheckedUser) -> Response:
    sessions_of(request).close(request.cookies.get(COOKIE))
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- projects ---------------------------------------------------------------------------------------


def _projects(state: ServerState, user: WebUser) -> list[dict[str, Any]]:
    records = state.projects.list()
    if not user.principal.is_admin:
        mine = state.accounts.roles_of(user.principal.user_id)
        records = [r for r in records if r.id in mine]
    rows = []
    for record in records:
        ref = None if record.local else record.default_branch  # local: the last pipeline of any ref
        last = find_pipelines(state.database, project_dir=record.key, ref=ref, limit=1)
        rows.append({"project": record, "last": last[0] if last else None})
    return rows


@router.get("/")
async def projects_page(request: Request, user: User) -> Response:
    rows = await run_in_threadpool(_projects, get_state(request), user)
    return page(request, "projects.html", user, rows=rows)


def _project_context(state: ServerState, project: ProjectRecord) -> dict[str, Any]:
    pipelines = find_pipelines(state.database, project_dir=project.key, limit=RECENT)
    refs = state.projects.get_refs(project.id)
    if project.local:  # no refs seen by a poller: those its recent pipelines ran on (`aicd run`)
        refs = {p.ref: p.sha for p in reversed(pipelines)}
    branches = []
    for ref, sha in sorted(refs.items()):
        name = ref.removeprefix("refs/heads/")
        last = find_pipelines(state.database, project_dir=project.key, ref=name, limit=1)
        branches.append({"ref": name, "sha": sha, "last": last[0] if last else None})
    environments = DeployStore(state.database).list_environments(scope=project.scope)
    owner = None if project.local else project.id  # a local home's models belong to no project
    models = [m for m in RegistryStore(state.database).list_models() if m.project_id == owner]
    return {"pipelines": pipelines, "branches": branches, "environments": environments, "models": models}


@router.get("/projects/{project}")
async def project_page(request: Request, project: ProjectName, user: User) -> Response:
    access = await access_to(request, project, user, Role.VIEWER)
    context = await run_in_threadpool(_project_context, get_state(request), access.project)
    return page(request, "project.html", user, access=access, can_act=may_run(access, user), **context)


@router.post("/projects/{project}/pipelines")
async def run_pipeline(
    request: Request, project: ProjectName, user: CheckedUser, ref: Annotated[str, Form(max_length=255)] = ""
) -> Response:
    access = await access_to(request, project, user, Role.DEVELOPER)
    body = api_pipelines.PipelineIn(ref=ref.strip() or access.project.default_branch)
    created = await api_pipelines.create_pipeline(body, access, get_state(request))
    return RedirectResponse(f"/projects/{quote(access.project.name)}/pipelines/{created.id}", status_code=303)


# -- a pipeline -------------------------------------------------------------------------------------


def _saved_ir(record: PipelineRecord) -> Pipeline | None:
    """The pipeline's saved IR (for stages and needs), None when there is none (it did not load)."""
    path = Path(record.run_dir) / IR_FILE
    try:
        stat = path.stat()
        return _parse_ir(str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError, TypeError, KeyError):
        return None


@functools.lru_cache(maxsize=32)
def _parse_ir(path: str, _mtime_ns: int, _size: int) -> Pipeline:
    """Parsed once per version of the file: a live page asks every 2 s."""
    return Pipeline.from_json(Path(path).read_text(encoding="utf-8"))


def _linked(state: ServerState, project: ProjectRecord, pipeline_id: int) -> PipelineRecord | None:
    """A linked pipeline of the same project, None when it is gone (the link is then not shown)."""
    try:
        return api_pipelines.pipeline_of(state, project, pipeline_id)
    except NotFoundError:
        return None


def _links(state: ServerState, project: ProjectRecord, record: PipelineRecord) -> dict[str, Any]:
    """Its parent and children as the API gives them (parent.json / children.json), with their rows."""
    run_dir = Path(record.run_dir)
    parent: dict[str, Any] | None = None
    link = parent_of(run_dir)
    if link is not None and (found := _linked(state, project, link.pipeline_id)) is not None:
        parent = {"link": link, "pipeline": found}
    children: list[dict[str, Any]] = []
    for link in children_of(run_dir):  # oldest first: a retried trigger job's newest child wins below
        if (found := _linked(state, project, link.pipeline_id)) is not None:
            children.append({"link": link, "pipeline": found})
    return {
        "parent": parent,
        "children": children,
        "child_of_job": {c["link"].job_id: c["pipeline"] for c in children},
    }


def _pipeline_context(state: ServerState, project: ProjectRecord, pipeline_id: int) -> dict[str, Any]:
    record = api_pipelines.pipeline_of(state, project, pipeline_id)
    jobs = state.runs.list_jobs(pipeline_id, include_retried=False)
    ir = _saved_ir(record)
    live = record.status in LIVE or state.dispatcher.is_active(pipeline_id)
    trigger = load_trigger(Path(record.run_dir))
    report = None if live else build_report(Path(record.run_dir), jobs)
    failures = []
    if report is not None:
        for suite in report.test_suites:
            for case in suite.test_cases:
                if case.status in ("failed", "error"):
                    failures.append({"suite": suite.name, "job_id": suite.job_id, "case": case})
    return {
        "pipeline": record,
        "jobs": jobs,
        "graph": graph.layout(jobs, ir),
        "live": live,
        "triggered_by": trigger.user_login or trigger.user_name,
        "report": report if report is not None and report.total_count else None,
        "failures": failures[:50],
        "with_artifacts": [j for j in jobs if j.artifacts_dir],
        "can_cancel": live,
        "can_retry": not live and any(j.status in ("failed", "canceled") for j in jobs),
        **_links(state, project, record),
    }


async def _pipeline(request: Request, project: str, pipeline_id: int, user: WebUser) -> dict[str, Any]:
    access = await access_to(request, project, user, Role.VIEWER)
    context = await run_in_threadpool(_pipeline_context, get_state(request), access.project, pipeline_id)
    return {"access": access, "can_act": may_run(access, user), **context}


@router.get("/projects/{project}/pipelines/{pipeline_id}")
async def pipeline_page(request: Request, project: ProjectName, pipeline_id: IdPath, user: User) -> Response:
    context = await _pipeline(request, project, pipeline_id, user)
    return page(request, "pipeline.html", user, **context)


@router.get("/projects/{project}/pipelines/{pipeline_id}/live")
async def pipeline_fragment(
    request: Request, project: ProjectName, pipeline_id: IdPath, user: User
) -> Response:
    context = await _pipeline(request, project, pipeline_id, user)
    return page(request, "_pipeline_live.html", user, **context)


@router.post("/projects/{project}/pipelines/{pipeline_id}/{action}")
async def pipeline_action(
    request: Request, project: ProjectName, pipeline_id: IdPath, action: str, user: CheckedUser
) -> Response:
    access = await access_to(request, project, user, Role.DEVELOPER)
    state = get_state(request)
    if action == "cancel":
        await api_pipelines.cancel_pipeline(pipeline_id, access, state)
    elif action == "retry":
        await api_pipelines.retry_pipeline(pipeline_id, access, state)
    else:
        return _error_page(request, 404, f"no pipeline action {action!r}")
    return RedirectResponse(
        f"/projects/{quote(access.project.name)}/pipelines/{pipeline_id}", status_code=303
    )


# -- a job ------------------------------------------------------------------------------------------


def _read_log(job: JobRecord, pipeline: PipelineRecord) -> tuple[str, int]:
    """The log's text (its last MAX_LOG_BYTES, from a line's start) and the number of its first line."""
    path = api_jobs._log_file(job, pipeline)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size <= MAX_LOG_BYTES:
                return handle.read().decode("utf-8", errors="replace"), 1
            skipped = 0
            while handle.tell() < size - MAX_LOG_BYTES:  # count the lines left out, a chunk at a time
                chunk = handle.read(min(CHUNK, size - MAX_LOG_BYTES - handle.tell()))
                skipped += chunk.count(b"\n")
            rest = handle.readline()  # the end of a line cut in the middle is left out too
            skipped += rest.endswith(b"\n")
            data = handle.read(MAX_LOG_BYTES)
    except FileNotFoundError:
        return "", 1
    return data.decode("utf-8", errors="replace"), skipped + 1


def _job_context(state: ServerState, project: ProjectRecord, job_id: int) -> dict[str, Any]:
    job, pipeline = api_jobs.job_of(state, project, job_id)
    live = job.status in LIVE and state.dispatcher.is_active(job.pipeline_id)
    context: dict[str, Any] = {"job": job, "pipeline": pipeline, "live": live, "log": None, "cut": False}
    if not live:
        text, first = _read_log(job, pipeline)
        context["log"] = ansi.render_log(ansi.split_lines(text), first)
        context["cut"] = first > 1
    attempts = [j for j in state.runs.list_jobs(job.pipeline_id, include_retried=True) if j.name == job.name]
    context["attempts"] = sorted(attempts, key=lambda j: j.attempt)
    return context


async def _job(request: Request, project: str, job_id: int, user: WebUser) -> dict[str, Any]:
    access = await access_to(request, project, user, Role.VIEWER)
    context = await run_in_threadpool(_job_context, get_state(request), access.project, job_id)
    return {"access": access, "can_act": may_run(access, user), **context}


@router.get("/projects/{project}/jobs/{job_id}")
async def job_page(request: Request, project: ProjectName, job_id: IdPath, user: User) -> Response:
    context = await _job(request, project, job_id, user)
    return page(request, "job.html", user, **context)


@router.get("/projects/{project}/jobs/{job_id}/live")
async def job_fragment(request: Request, project: ProjectName, job_id: IdPath, user: User) -> Response:
    context = await _job(request, project, job_id, user)
    return page(request, "_job_live.html", user, **context)


@router.get("/projects/{project}/jobs/{job_id}/log/events")
async def job_log_events(
    request: Request, project: ProjectName, job_id: IdPath, user: User, hold: bool = False
) -> Response:
    """The API's live log stream (routes.jobs._events), each line rendered to HTML.

    `hold`: after the `end` event, keep the stream open (up to END_HOLD_S) for the page to close:
    a browser's EventSource takes a stream the server ends for an error, and reconnects.
    """
    access = await access_to(request, project, user, Role.VIEWER)
    state = get_state(request)
    job, pipeline = await run_in_threadpool(api_jobs.job_of, state, access.project, job_id)
    last = request.headers.get("last-event-id", "")
    offset = int(last) if last.isascii() and last.isdigit() else 0
    first = (
        1
        if offset == 0
        else await asyncio.to_thread(_lines_before, api_jobs._log_file(job, pipeline), offset)
    )
    return StreamingResponse(
        _html_events(api_jobs._events(state, job, pipeline, offset), first, END_HOLD_S if hold else 0.0),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )


def _lines_before(path: Path, offset: int) -> int:
    try:
        with open(path, "rb") as handle:
            return handle.read(offset).count(b"\n") + 1
    except FileNotFoundError:
        return 1


async def _html_events(events: AsyncIterator[str], first_line: int, hold_s: float) -> AsyncIterator[str]:
    """`log` events (one line of text each) -> `log` events of one numbered HTML line; the rest as is."""
    lines = ansi.LiveLines(first_line)
    async for event in events:
        if not event.startswith("event: log\n"):
            yield event
            continue
        head, _, data = event.rstrip("\n").partition("\ndata: ")
        yield f"{head}\ndata: {lines.render(data)}\n\n"
    waited = 0.0
    while waited < hold_s:  # ends early when the page goes (the server cancels a disconnected stream)
        await asyncio.sleep(api_jobs.KEEPALIVE_S)
        waited += api_jobs.KEEPALIVE_S
        yield ": keepalive\n\n"


@router.get("/projects/{project}/jobs/{job_id}/artifacts")
async def job_artifacts(request: Request, project: ProjectName, job_id: IdPath, user: User) -> FileResponse:
    access = await access_to(request, project, user, Role.VIEWER)
    return await api_jobs.download_artifacts(job_id, access, get_state(request))


@router.get("/projects/{project}/jobs/{job_id}/raw")
async def job_raw_log(request: Request, project: ProjectName, job_id: IdPath, user: User) -> Response:
    access = await access_to(request, project, user, Role.VIEWER)
    text = await run_in_threadpool(api_jobs.get_log, job_id, access, get_state(request))
    # text/plain, never rendered as HTML (nosniff is set on every UI response)
    return Response(text.body, media_type="text/plain; charset=utf-8")


@router.post("/projects/{project}/jobs/{job_id}/{action}")
async def job_action(
    request: Request, project: ProjectName, job_id: IdPath, action: str, user: CheckedUser
) -> Response:
    access = await access_to(request, project, user, Role.DEVELOPER)
    state = get_state(request)
    if action == "cancel":
        job = await api_jobs.cancel_job(job_id, access, state)
    elif action == "retry":
        job = await api_jobs.retry_job(job_id, access, state)
    elif action == "play":
        job = await api_jobs.play_job(job_id, access, state)
    else:
        return _error_page(request, 404, f"no job action {action!r}")
    return RedirectResponse(f"/projects/{quote(access.project.name)}/jobs/{job.id}", status_code=303)
