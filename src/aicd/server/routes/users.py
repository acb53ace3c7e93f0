"""Users, API tokens and project members.

Users: admins only (anyone can read themselves at GET /user). Tokens: admins,
or the user themselves; a token is shown once, when created. Members: maintainers.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from aicd.core.access import Principal, Role, hash_token, new_token
from aicd.errors import NotFoundError, PermissionDeniedError
from aicd.server.deps import (
    IdPath,
    ProjectAccess,
    get_state,
    get_user_principal,
    project_access,
    require_admin,
)
from aicd.server.state import ServerState
from aicd.store.accounts import TokenRecord, UserRecord

router = APIRouter()

State = Annotated[ServerState, Depends(get_state)]
Caller = Annotated[Principal, Depends(get_user_principal)]
Admin = Annotated[Principal, Depends(require_admin)]
Maintainer = Annotated[ProjectAccess, Depends(project_access(Role.MAINTAINER))]
RoleName = Literal["viewer", "developer", "maintainer"]


class UserOut(BaseModel):
    id: int
    name: str
    is_admin: bool
    created_at: float

    @classmethod
    def of(cls, user: UserRecord) -> UserOut:
        return cls(id=user.id, name=user.name, is_admin=user.is_admin, created_at=user.created_at)


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    is_admin: bool = False


class TokenIn(BaseModel):
    name: str = Field(default="token", min_length=1, max_length=200)
    expires_in_s: float | None = Field(default=None, gt=0, description="Lifetime in seconds; none: no expiry")


class TokenCreated(BaseModel):
    id: int
    name: str
    token: str = Field(description="The token itself: shown this once only")
    expires_at: float | None


class TokenOut(BaseModel):
    id: int
    user_id: int
    name: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked: bool

    @classmethod
    def of(cls, token: TokenRecord) -> TokenOut:
        return cls(
            id=token.id,
            user_id=token.user_id,
            name=token.name,
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked=token.revoked,
        )


class MemberIn(BaseModel):
    role: RoleName


class MemberOut(BaseModel):
    user_id: int
    name: str
    role: RoleName


def _self_or_admin(caller: Principal, user_id: int) -> None:
    if not caller.is_admin and caller.user_id != user_id:
        raise PermissionDeniedError("only an admin or the user themselves may do this")


# -- users ------------------------------------------------------------------------------------------


@router.get("/user", response_model=UserOut, summary="The caller's own user", tags=["users"])
def me(state: State, caller: Caller) -> UserOut:
    return UserOut.of(state.accounts.get_user(caller.user_id))


@router.get("/users", response_model=list[UserOut], summary="List users (admin)", tags=["users"])
def list_users(state: State, _admin: Admin) -> list[UserOut]:
    return [UserOut.of(user) for user in state.accounts.list_users()]


@router.post(
    "/users", response_model=UserOut, status_code=201, summary="Create a user (admin)", tags=["users"]
)
def create_user(body: UserIn, state: State, admin: Admin) -> UserOut:
    user = state.accounts.create_user(body.name, is_admin=body.is_admin)
    state.accounts.audit(admin.name, "user.create", target=user.name, details={"is_admin": user.is_admin})
    return UserOut.of(user)


@router.delete(
    "/users/{user_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a user, their tokens and roles (admin)",
    tags=["users"],
)
def delete_user(user_id: IdPath, state: State, admin: Admin) -> Response:
    user = state.accounts.delete_user(user_id)
    state.accounts.audit(admin.name, "user.delete", target=user.name)
    return Response(status_code=204)


# -- tokens -----------------------------------------------------------------------------------------


@router.post(
    "/users/{user_id}/tokens",
    response_model=TokenCreated,
    status_code=201,
    summary="Create an API token (admin, or the user themselves); the token is shown once",
    tags=["tokens"],
)
def create_token(user_id: IdPath, state: State, caller: Caller, body: TokenIn | None = None) -> TokenCreated:
    _self_or_admin(caller, user_id)
    body = body or TokenIn()
    user = state.accounts.get_user(user_id)
    token = new_token()
    expires_at = time.time() + body.expires_in_s if body.expires_in_s is not None else None
    record = state.accounts.create_token(user.id, body.name, hash_token(token), expires_at=expires_at)
    state.accounts.audit(
        caller.name, "token.create", target=user.name, details={"token_id": record.id, "name": record.name}
    )
    return TokenCreated(id=record.id, name=record.name, token=token, expires_at=record.expires_at)


@router.get(
    "/users/{user_id}/tokens",
    response_model=list[TokenOut],
    summary="List a user's API tokens, without the tokens (admin, or the user themselves)",
    tags=["tokens"],
)
def list_tokens(user_id: IdPath, state: State, caller: Caller) -> list[TokenOut]:
    _self_or_admin(caller, user_id)
    state.accounts.get_user(user_id)
    return [TokenOut.of(token) for token in state.accounts.list_tokens(user_id)]


@router.delete(
    "/tokens/{token_id}",
    response_model=TokenOut,
    summary="Revoke an API token (admin, or its owner)",
    tags=["tokens"],
)
def revoke_token(token_id: IdPath, state: State, caller: Caller) -> TokenOut:
    token = state.accounts.get_token(token_id)
    _self_or_admin(caller, token.user_id)
    revoked = state.accounts.revoke_token(token_id)
    state.accounts.audit(
        caller.name, "token.revoke", target=str(token_id), details={"user_id": token.user_id}
    )
    return TokenOut.of(revoked)


# -- members ----------------------------------------------------------------------------------------


@router.get(
    "/projects/{project}/members",
    response_model=list[MemberOut],
    summary="List a project's members and their roles (maintainer)",
    tags=["members"],
)
def list_members(access: Maintainer, state: State) -> list[MemberOut]:
    return [
        MemberOut(user_id=user.id, name=user.name, role=role)  # type: ignore[arg-type]
        for user, role in state.accounts.members(access.project.id)
    ]


@router.put(
    "/projects/{project}/members/{user_id}",
    response_model=MemberOut,
    summary="Give a user a role on the project, or change it (maintainer)",
    tags=["members"],
)
def set_member(user_id: IdPath, body: MemberIn, access: Maintainer, state: State) -> MemberOut:
    user = state.accounts.get_user(user_id)
    state.accounts.set_role(access.project.id, user.id, body.role)
    state.accounts.audit(
        access.principal.name,
        "member.set",
        project_id=access.project.id,
        target=user.name,
        details={"role": body.role},
    )
    return MemberOut(user_id=user.id, name=user.name, role=body.role)


@router.delete(
    "/projects/{project}/members/{user_id}",
    status_code=204,
    response_class=Response,
    summary="Remove a user's role on the project (maintainer)",
    tags=["members"],
)
def remove_member(user_id: IdPath, access: Maintainer, state: State) -> Response:
    user = state.accounts.get_user(user_id)
    if state.accounts.role_of(access.project.id, user.id) is None:
        raise NotFoundError(f"user {user.name!r} has no role on project {access.project.name!r}")
    state.accounts.remove_role(access.project.id, user.id)
    state.accounts.audit(
        access.principal.name, "member.remove", project_id=access.project.id, target=user.name
    )
    return Response(status_code=204)
