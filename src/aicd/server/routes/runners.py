"""Runners: the `aicd worker`s an admin registered (admin), and a worker's own check-in.

A runner token is shown once, when the runner is registered; the server keeps
its SHA-256. A worker checks in at POST /runners/verify with its token in the
`RUNNER-TOKEN` header (never an API token: a runner token acts for no user);
that is what makes a runner "online" for a minute.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from pydantic import BaseModel, Field

from aicd.core import runners as core
from aicd.core.access import Principal
from aicd.server.deps import IdPath, get_state, require_admin
from aicd.server.state import ServerState
from aicd.store.runners import RunnerRecord, RunnerStore

router = APIRouter(tags=["runners"])

State = Annotated[ServerState, Depends(get_state)]
Admin = Annotated[Principal, Depends(require_admin)]


class RunnerIn(BaseModel):
    tags: list[str] | str = Field(default_factory=list, description='Tags it serves: a list, or "gpu,cuda"')
    run_untagged: bool = Field(default=False, description="Also take jobs without tags")
    description: str = Field(default="", max_length=core.MAX_DESCRIPTION_LENGTH)


class RunnerOut(BaseModel):
    id: int
    description: str
    tags: list[str]
    run_untagged: bool
    paused: bool
    status: core.RunnerStatus = Field(description="online: seen within the last minute")
    contacted_at: float | None
    version: str | None
    host: str | None
    created_at: float
    created_by: str | None
    running_jobs: int = Field(default=0, description="Job attempts it runs now (on a server with a broker)")

    @classmethod
    def of(cls, record: RunnerRecord, now: float | None = None, running: int = 0) -> RunnerOut:
        return cls(
            id=record.id,
            description=record.description,
            tags=list(record.tags),
            run_untagged=record.run_untagged,
            paused=record.paused,
            status=core.status(record, now),
            contacted_at=record.contacted_at,
            version=record.version,
            host=record.host,
            created_at=record.created_at,
            created_by=record.created_by,
            running_jobs=running,
        )


class RunnerCreated(RunnerOut):
    token: str = Field(description="The runner token: shown this once only")


class CheckIn(BaseModel):
    version: str | None = Field(default=None, max_length=core.MAX_REPORTED_LENGTH)
    host: str | None = Field(default=None, max_length=core.MAX_REPORTED_LENGTH)


class CheckedIn(RunnerOut):
    queues: list[str] = Field(description="The broker queues this runner reads")


def _running(state: ServerState) -> dict[int, int]:
    hub = state.dispatcher.remote
    return hub.running_by_runner() if hub is not None else {}


def _store(state: ServerState) -> RunnerStore:
    return RunnerStore(state.database)


@router.post("/runners", response_model=RunnerCreated, status_code=201, summary="Register a runner (admin)")
def register_runner(body: RunnerIn, state: State, admin: Admin) -> RunnerCreated:
    record, token = core.register(
        _store(state),
        tags=body.tags,
        run_untagged=body.run_untagged,
        description=body.description,
        actor=admin.name,
    )
    return RunnerCreated(**RunnerOut.of(record).model_dump(), token=token)


@router.get("/runners", response_model=list[RunnerOut], summary="Every runner, with its status (admin)")
def list_runners(state: State, _admin: Admin) -> list[RunnerOut]:
    now = time.time()
    running = _running(state)
    return [RunnerOut.of(r, now, running.get(r.id, 0)) for r in _store(state).list()]


@router.get("/runners/{runner_id}", response_model=RunnerOut, summary="One runner (admin)")
def get_runner(runner_id: IdPath, state: State, _admin: Admin) -> RunnerOut:
    return RunnerOut.of(_store(state).get(runner_id), running=_running(state).get(runner_id, 0))


@router.post("/runners/{runner_id}/pause", response_model=RunnerOut, summary="Give it no new job (admin)")
def pause_runner(runner_id: IdPath, state: State, admin: Admin) -> RunnerOut:
    return RunnerOut.of(_store(state).set_paused(runner_id, True, actor=admin.name))


@router.post("/runners/{runner_id}/resume", response_model=RunnerOut, summary="Give it jobs again (admin)")
def resume_runner(runner_id: IdPath, state: State, admin: Admin) -> RunnerOut:
    return RunnerOut.of(_store(state).set_paused(runner_id, False, actor=admin.name))


@router.delete("/runners/{runner_id}", status_code=204, summary="Delete a runner: its token stops (admin)")
def delete_runner(runner_id: IdPath, state: State, admin: Admin) -> Response:
    _store(state).delete(runner_id, actor=admin.name)
    return Response(status_code=204)


@router.post("/runners/verify", response_model=CheckedIn, summary="A worker checks in with its runner token")
def verify_runner(
    state: State,
    runner_token: Annotated[str, Header(alias="RUNNER-TOKEN", description="The runner's token")],
    body: CheckIn | None = None,
) -> CheckedIn:
    body = body or CheckIn()
    record = core.authenticate(_store(state), runner_token, version=body.version, host=body.host)
    return CheckedIn(
        **RunnerOut.of(record).model_dump(), queues=core.queues_of(record, state.settings.queue_prefix)
    )
