"""Webhooks: POST /projects/{project}/hooks/{github|gitlab|gitea}.

No token: the project's webhook secret authenticates the delivery (a project
without one refuses webhooks). Bad or missing signature, unknown project, no
secret: the same 401, nothing recorded. The body is refused (413) beyond the
server's limit (`webhook_max_body_bytes`) from its Content-Length, or as soon as
its stream grows past it.
Malformed body: 422. A replay (same delivery id, or same signed body): 200
{"status": "duplicate"}, nothing created. A push: fetch the mirror once (in a
thread), submit the pipeline, answer with its id.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
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
    responses={
        401: {"description": "Unknown project, no webhook secret set, or a missing or wrong signature/token"},
        413: {"description": "Body larger than the server's webhook_max_body_bytes"},
    },
)
async def receive(
    project: str, provider: Literal["github", "gitlab", "gitea"], request: Request, state: State
) -> WebhookOut:
    found = await asyncio.to_thread(_project_and_secret, state, project)
    limit = state.settings.webhook_max_body_bytes
    _check_declared_size(request, limit)
    headers = dict(request.headers)
    # An unknown project, one without a secret and a wrong signature get the same answer: a
    # caller without the secret learns nothing, not even whether the project exists.
    secret = found[1] if found is not None else _UNGUESSABLE
    if provider == "gitlab":  # the token is a header: checked before the body is read
        _verify(provider, headers, b"", secret, project, found)
    body = await _read_body(request, limit)
    if provider != "gitlab":
        _verify(provider, headers, body, secret, project, found)
    assert found is not None
    record = found[0]
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
            await asyncio.to_thread(_fetch, state.settings.home, record, push)
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


REFUSED = (
    "webhook refused: no such project, the project has no webhook secret, or the signature "
    "(X-Hub-Signature-256, X-Gitea-Signature) or token (X-Gitlab-Token) does not match its secret"
)
_UNGUESSABLE = secrets.token_hex(32)  # what an unknown project's signature is checked against


def _verify(
    provider: webhooks.Provider,
    headers: dict[str, str],
    body: bytes,
    secret: str,
    project: str,
    found: tuple[ProjectRecord, str] | None,
) -> None:
    """AuthError(REFUSED) unless the project exists, has a secret, and the delivery carries it;
    the precise reason goes to the server's log only."""
    try:
        webhooks.verify(provider, headers, body, secret)
    except AuthError as exc:
        why = str(exc)
    else:
        if found is not None:
            return
        why = "unknown project or no webhook secret"
    log.warning("webhook for project %s refused: %s", ascii(project[:100]), why)
    raise AuthError(REFUSED)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"webhook body larger than {limit} bytes (the server's limit)")


def _check_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length", "").strip()
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body (what is signed), streamed and refused as soon as it grows beyond `limit`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _project_and_secret(state: ServerState, name: str) -> tuple[ProjectRecord, str] | None:
    """The project and its webhook secret; None if there is no such project or it has no secret."""
    try:
        record = state.projects.get(project_ref(name))
    except NotFoundError:
        return None
    encrypted = state.projects.webhook_secret_encrypted(record.id)
    if not encrypted:
        return None
    return record, state.secrets.decrypt(encrypted)


def _fetch(home: Path, project: ProjectRecord, push: PushEvent) -> None:
    """Fetch the mirror; the pushed commit must be on the pushed ref (as the repository has it now)."""
    path = mirror.sync_mirror(home, project)
    sha = push.after
    if not mirror.has_commit(path, sha):
        raise GitError(
            f"commit {sha} of the push is not in {mirror.redact(project.repo_url)} after fetching "
            "(pushed over since?)"
        )
    if not mirror.is_reachable(path, sha, push.ref):
        raise GitError(
            f"commit {sha} of the push is not on {push.ref} in {mirror.redact(project.repo_url)} "
            "after fetching (pushed over since?): no pipeline"
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
