"""aicd's judge for Argo Rollouts (``web`` metric provider) and Flagger (webhooks); see docs/integrations.md.

- ``POST /integrations/argo-rollouts/judge``: baseline and canary samples in the body; the judge's
  report as JSON (always 200 for a judgement: the AnalysisTemplate's ``successCondition`` decides).
- ``POST /integrations/flagger/{hook}``: Flagger's webhook body; 200 to go on, 412 to halt (for
  ``rollback``: 200 to roll back). Flagger cannot send headers, so the token may come in
  ``metadata.token`` (as in Flagger's own docs); an Authorization header works too.
- ``PUT``/``GET``/``DELETE /integrations/flagger/canaries/{namespace}/{name}``: the samples a
  canary's hooks judge when their metadata names none (kept in the server's memory, per user).

Every route needs a valid API token; the judging is :mod:`aicd.delivery.integrations`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from aicd.core.access import Principal, hash_token
from aicd.delivery.integrations import (
    FLAGGER_HOOKS,
    argo_answer,
    flagger_decision,
    flagger_request,
    judge_request,
)
from aicd.errors import AuthError, NotFoundError
from aicd.server.deps import get_principal, get_state

router = APIRouter(tags=["integrations"])

Caller = Annotated[Principal, Depends(get_principal)]
MAX_CANARIES = 1000  # configured canaries kept in memory (the least recently used go first)
NAME = Path(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
HookName = Literal[
    "confirm-rollout", "pre-rollout", "rollout", "confirm-promotion", "post-rollout", "rollback"
]
assert set(HookName.__args__) == set(FLAGGER_HOOKS)  # type: ignore[attr-defined]

SAMPLES_DOC = 'metric -> list of numbers, and optionally "predictions": class -> count (as a sample file)'


class JudgeIn(BaseModel):
    baseline: dict[str, Any] = Field(description=f"The stable revision's samples: {SAMPLES_DOC}")
    canary: dict[str, Any] = Field(description=f"The canary's samples: {SAMPLES_DOC}")
    metrics: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Metric specs as `aicd judge --metric`, e.g. latency_ms:increase:critical",
    )
    analysis: dict[str, Any] | None = Field(None, description="An aicd.yml analysis: section")
    pass_threshold: float | None = Field(None, ge=0, le=100)
    marginal_threshold: float | None = Field(None, ge=0, le=100)


class FlaggerHookIn(BaseModel):
    """Flagger's webhook payload (docs.flagger.app, usage/webhooks)."""

    name: str = Field(max_length=253, description="The canary's name")
    namespace: str = Field(max_length=253, description="The canary's namespace")
    phase: str = Field("", max_length=64, description="Initialized, Waiting, Progressing, Promoting, ...")
    checksum: str | None = Field(None, max_length=256, description="The canary's revision checksum")
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="token, baseline and canary (JSON strings of samples), metrics, pass_threshold, ...",
    )


class JudgeOut(BaseModel):
    verdict: str = Field(description="pass, marginal or fail")
    passed: bool
    reason: str
    score: float | str | None = Field(description="0-100")
    judge_verdict: str
    pass_threshold: float
    marginal_threshold: float
    classification: dict[str, str] = Field(description="Per metric: Pass, High, Low, Nodata, ...")
    metrics: list[dict[str, Any]]
    groups: dict[str, Any]
    drift: dict[str, Any] | None
    notes: list[str]


class HookOut(BaseModel):
    hook: str
    go: bool = Field(description="Answered 2xx (go on; for rollback: roll back)")
    message: str
    verdict: str | None = None
    score: float | str | None = None
    classification: dict[str, str] | None = None
    reason: str | None = None

    model_config = {"extra": "allow"}


class CanaryOut(BaseModel):
    namespace: str
    name: str
    configuration: dict[str, Any]


@router.post(
    "/integrations/argo-rollouts/judge",
    response_model=JudgeOut,
    summary="Judge a canary for Argo Rollouts' web metric provider",
)
async def argo_judge(body: JudgeIn, _caller: Caller) -> dict[str, Any]:
    request = judge_request(body.model_dump())
    judgement = await run_in_threadpool(request.judge)
    return argo_answer(judgement)


def _canaries(request: Request) -> OrderedDict[tuple[int, str, str], dict[str, Any]]:
    store = getattr(request.app.state, "aicd_flagger_canaries", None)
    if store is None:
        store = OrderedDict()
        request.app.state.aicd_flagger_canaries = store
    assert isinstance(store, OrderedDict)
    return store


async def _hook_caller(request: Request, metadata: dict[str, str]) -> Principal:
    """From the Authorization header, else from metadata.token (Flagger sends no headers of its own)."""
    header = request.headers.get("authorization") or ""
    scheme, _, credentials = header.partition(" ")
    if header and scheme.lower() != "bearer":
        raise AuthError("unsupported Authorization header: send 'Authorization: Bearer <token>'")
    token = (credentials or request.headers.get("private-token") or metadata.get("token") or "").strip()
    if not token:
        raise AuthError(
            "authentication required: put an API token in the webhook's metadata (token: ...) or send "
            "'Authorization: Bearer <token>'"
        )
    user = await run_in_threadpool(get_state(request).accounts.user_for_token_hash, hash_token(token))
    if user is None:
        raise AuthError("invalid, expired or revoked token")
    return Principal(user_id=user.id, name=user.name, is_admin=user.is_admin)


@router.post(
    "/integrations/flagger/{hook}",
    response_model=HookOut,
    responses={412: {"model": HookOut, "description": "Halt (for rollback: do not roll back)"}},
    summary="A Flagger webhook: 200 goes on, 412 halts",
)
async def flagger_hook(
    request: Request,
    hook: Annotated[HookName, Path(description="The webhook's type in the Canary")],
    body: Annotated[FlaggerHookIn, Body()],
) -> JSONResponse:
    caller = await _hook_caller(request, body.metadata)
    configured = _canaries(request).get((caller.user_id, body.namespace, body.name))
    judge = flagger_request(body.metadata, configured)
    decision = await run_in_threadpool(flagger_decision, hook, judge)
    return JSONResponse(decision.to_json(hook), status_code=200 if decision.go else 412)


@router.put(
    "/integrations/flagger/canaries/{namespace}/{name}",
    response_model=CanaryOut,
    summary="The samples a Flagger canary's hooks judge when their metadata names none",
)
async def put_canary(
    request: Request,
    namespace: Annotated[str, NAME],
    name: Annotated[str, NAME],
    body: JudgeIn,
    caller: Caller,
) -> dict[str, Any]:
    configuration = body.model_dump()
    judge_request(configuration)  # checked now, not at the first hook
    store = _canaries(request)
    key = (caller.user_id, namespace, name)
    store[key] = configuration
    store.move_to_end(key)
    while len(store) > MAX_CANARIES:
        store.popitem(last=False)
    return {"namespace": namespace, "name": name, "configuration": configuration}


@router.get("/integrations/flagger/canaries/{namespace}/{name}", response_model=CanaryOut)
async def get_canary(
    request: Request, namespace: Annotated[str, NAME], name: Annotated[str, NAME], caller: Caller
) -> dict[str, Any]:
    configuration = _canaries(request).get((caller.user_id, namespace, name))
    if configuration is None:
        raise NotFoundError(f"no samples configured for canary {namespace}/{name}")
    return {"namespace": namespace, "name": name, "configuration": configuration}


@router.delete("/integrations/flagger/canaries/{namespace}/{name}", status_code=204)
async def delete_canary(
    request: Request, namespace: Annotated[str, NAME], name: Annotated[str, NAME], caller: Caller
) -> None:
    if _canaries(request).pop((caller.user_id, namespace, name), None) is None:
        raise NotFoundError(f"no samples configured for canary {namespace}/{name}")
