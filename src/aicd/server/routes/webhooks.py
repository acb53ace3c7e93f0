"""Webhooks: POST /projects/{project}/hooks/{github|gitlab|gitea}.

No token: the project's webhook secret authenticates the delivery (a project
without one refuses webhooks). Bad or missing signature: 401, nothing recorded.
Malformed body: 422. A replay (same delivery id, or same signed body): 200
{"status": "duplicate"}, nothing created. A push: fetch the mirror once (in a
thread), submit the pipeline, answer with its id.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from aicd.errors import AicdError, AuthError, GitError, NotFoundError
from aicd.server.deps import get_state, project_ref
from aicd.server.state import ServerState
from aicd.store.projects_repo import ProjectRecord, ProjectStore
from aicd.triggers import mirror, webhooks
from aicd.triggers.webhooks import PushEvent

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("aicd.webhooks")

State = Annotated[ServerState, Depends(get_state)]


class WebhookOut(BaseModel):
    status: Literal["created", "duplicate", "ignored", "ping"]
    pipeline_id: int | None = None
    message: str | None = Field(default=None, description="Why nothing was created, when nothing was")


@router.post(
    "/projects/{project}/hooks/{provider}",
    response_model=WebhookOut,
    summary="Receive a push webhook from GitHub, GitLab or Gitea (authenticated by the project's secret)",
    responses={401: {"description": "Missing or wrong signature/token, or no webhook secret set"}},
)
async def receive(
    project: str, provider: Literal["github", "gitlab", "gitea"], request: Request, state: State
) -> WebhookOut:
    record, secret = await asyncio.to_thread(_project_and_secret, state, project)
    body = await _read_body(request)
    headers = dict(request.headers)
    webhooks.verify(provider, headers, body, secret)
    delivery = webhooks.parse(provider, headers, body)
    if delivery.kind == "ping":
        return WebhookOut(status="ping", message="pong: the secret matches")
    if delivery.kind == "ignored" or delivery.push is None:
        return WebhookOut(status="ignored", message=f"event {delivery.event_name!r} starts no pipeline")
    keys = [webhooks.body_key(body)] + ([delivery.delivery_id] if delivery.delivery_id else [])
    fresh = await asyncio.to_thread(state.projects.record_deliveries, record.id, provider, keys)
    if not fresh:
        return WebhookOut(status="duplicate", message="this delivery was received before")
    push = delivery.push
    actor = f"webhook:{provider}"
    pipeline_id: int | None = None
    try:
        async with state.poller.lock(record.id):
            if push.deleted:
                await asyncio.to_thread(_branch_deleted, state, actor, record, push, delivery.delivery_id)
                return WebhookOut(status="ignored", message=f"{push.ref} was deleted: no pipeline")
            await asyncio.to_thread(_fetch, state.settings.home, record, push.after)
            pipeline = await state.dispatcher.submit(
                record,
                ref=push.short_ref,
                sha=push.after,
                source="push",
                actor=actor,
                before_sha=push.before,
                user_login=push.user or None,
                user_name=push.user_name or None,
            )
            pipeline_id = pipeline.id
            await asyncio.to_thread(
                _after_submit, state, actor, record, provider, keys, push, delivery.delivery_id, pipeline.id
            )
    except BaseException:
        if pipeline_id is None:  # nothing was created: a redelivery must not count as a replay
            await asyncio.to_thread(state.projects.forget_deliveries, record.id, provider, keys)
        raise
    return WebhookOut(status="created", pipeline_id=pipeline_id)


async def _read_body(request: Request) -> bytes:
    """The raw body (what is signed), refused beyond MAX_BODY_BYTES before reading it all."""
    limit = webhooks.MAX_BODY_BYTES
    too_large = HTTPException(413, f"webhook body larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _project_and_secret(state: ServerState, name: str) -> tuple[ProjectRecord, str]:
    try:
        record = state.projects.get(project_ref(name))
    except NotFoundError:
        raise NotFoundError(f"no project {name!r}") from None
    encrypted = state.projects.webhook_secret_encrypted(record.id)
    if not encrypted:
        raise AuthError(
            f"project {record.name!r} has no webhook secret, so it accepts no webhooks: set one with "
            f"`aicd project update {record.name} --webhook-secret-env VAR` (or PATCH webhook_secret)"
        )
    return record, state.secrets.decrypt(encrypted)


def _fetch(home: Path, project: ProjectRecord, sha: str) -> None:
    path = mirror.sync_mirror(home, project)
    if not mirror.has_commit(path, sha):
        raise GitError(
            f"commit {sha} of the push is not in {mirror.redact(project.repo_url)} after fetching "
            "(pushed over since?)"
        )


def _branch_deleted(
    state: ServerState, actor: str, project: ProjectRecord, push: PushEvent, delivery_id: str | None
) -> None:
    state.projects.set_refs(project.id, {push.ref: None})
    _audit(state, actor, project, push, delivery_id, None)


def _after_submit(
    state: ServerState,
    actor: str,
    project: ProjectRecord,
    provider: str,
    keys: list[str],
    push: PushEvent,
    delivery_id: str | None,
    pipeline_id: int,
) -> None:
    """Record the delivery's pipeline, the ref seen, the audit entry. Failures are logged: the
    pipeline exists already."""
    store: ProjectStore = state.projects
    try:
        for key in keys:
            store.set_delivery_pipeline(project.id, provider, key, pipeline_id)
        if store.get_refs(project.id):
            store.set_ref(project.id, push.ref, push.after)
        else:  # as a first poll would: record every ref, so that polling later runs only what moves
            path = mirror.mirror_path(state.settings.home, project)
            refs: dict[str, str | None] = dict(mirror.list_refs(path))
            refs[push.ref] = push.after
            store.set_refs(project.id, refs)
    except AicdError as exc:
        log.warning("webhook of project %s: pipeline %d created, but: %s", project.name, pipeline_id, exc)
    _audit(state, actor, project, push, delivery_id, pipeline_id)


def _audit(
    state: ServerState,
    actor: str,
    project: ProjectRecord,
    push: PushEvent,
    delivery_id: str | None,
    pipeline_id: int | None,
) -> None:
    details: dict[str, object] = {"sha": push.after, "user": push.user, "delivery": delivery_id}
    if pipeline_id is not None:
        details["pipeline_id"] = pipeline_id
    try:
        state.accounts.audit(actor, "webhook.push", project_id=project.id, target=push.ref, details=details)
    except AicdError as exc:  # a missing audit line must not fail the delivery
        log.warning("cannot record the audit entry of a webhook: %s", exc)
