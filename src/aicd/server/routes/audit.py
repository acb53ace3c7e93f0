"""The audit log: per project (maintainer) and all of it (admin). Newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from aicd.core.access import Principal, Role
from aicd.server.deps import ProjectAccess, get_state, project_access, project_ref, require_admin
from aicd.server.state import ServerState
from aicd.store.accounts import AuditRecord

router = APIRouter(tags=["audit"])

State = Annotated[ServerState, Depends(get_state)]
Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many entries")]


class AuditEntry(BaseModel):
    id: int
    at: float
    actor: str
    action: str
    project_id: int | None
    target: str | None
    details: dict[str, object] | None

    @classmethod
    def of(cls, record: AuditRecord) -> AuditEntry:
        return cls(
            id=record.id,
            at=record.at,
            actor=record.actor,
            action=record.action,
            project_id=record.project_id,
            target=record.target,
            details=record.details,
        )


@router.get(
    "/projects/{project}/audit",
    response_model=list[AuditEntry],
    summary="The project's audit log, newest first (maintainer)",
)
def project_audit(
    access: Annotated[ProjectAccess, Depends(project_access(Role.MAINTAINER))],
    state: State,
    limit: Limit = 100,
) -> list[AuditEntry]:
    return [AuditEntry.of(r) for r in state.accounts.list_audit(project_id=access.project.id, limit=limit)]


@router.get("/audit", response_model=list[AuditEntry], summary="The whole audit log, newest first (admin)")
def all_audit(
    state: State,
    _admin: Annotated[Principal, Depends(require_admin)],
    project: Annotated[str | None, Query(description="Only this project (name or id)")] = None,
    limit: Limit = 100,
) -> list[AuditEntry]:
    project_id = state.projects.get(project_ref(project)).id if project else None
    return [AuditEntry.of(r) for r in state.accounts.list_audit(project_id=project_id, limit=limit)]
