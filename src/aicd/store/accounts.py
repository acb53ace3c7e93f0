"""AccountStore: users, API tokens (hashes only), project roles and the audit log."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Row

from aicd.errors import ConfigError, ConflictError, NotFoundError
from aicd.store.db import Database
from aicd.store.schema import api_tokens, audit_log, memberships, users
from aicd.store.schema import projects as project_table

ROLES = ("viewer", "developer", "maintainer")
LAST_USED_RESOLUTION_S = 30.0  # last_used_at is refreshed at most this often (one write per request is a lot)


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    is_admin: bool
    created_at: float


@dataclass(frozen=True)
class TokenRecord:
    id: int
    user_id: int
    name: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked: bool


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: float
    actor: str
    action: str
    project_id: int | None
    target: str | None
    details: dict[str, object] | None


_USER_COLUMNS = (users.c.id, users.c.name, users.c.is_admin, users.c.created_at)
_TOKEN_COLUMNS = (
    api_tokens.c.id,
    api_tokens.c.user_id,
    api_tokens.c.name,
    api_tokens.c.created_at,
    api_tokens.c.expires_at,
    api_tokens.c.last_used_at,
    api_tokens.c.revoked,
)
_AUDIT_COLUMNS = (
    audit_log.c.id,
    audit_log.c.at,
    audit_log.c.actor,
    audit_log.c.action,
    audit_log.c.project_id,
    audit_log.c.target,
    audit_log.c.details,
)


def _user(row: Row[*tuple[Any, ...]]) -> UserRecord:
    return UserRecord(id=int(row.id), name=row.name, is_admin=bool(row.is_admin), created_at=row.created_at)


def _token(row: Row[*tuple[Any, ...]]) -> TokenRecord:
    return TokenRecord(
        id=int(row.id),
        user_id=int(row.user_id),
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked=bool(row.revoked),
    )


def _audit(row: Row[*tuple[Any, ...]]) -> AuditRecord:
    return AuditRecord(
        id=int(row.id),
        at=row.at,
        actor=row.actor,
        action=row.action,
        project_id=None if row.project_id is None else int(row.project_id),
        target=row.target,
        details=dict(row.details) if row.details is not None else None,
    )


class AccountStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def ping(self) -> None:
        """One trivial query: StoreError when the database cannot be reached."""
        with self._read("reach the database") as conn:
            conn.execute(select(1)).scalar_one()

    # -- users -----------------------------------------------------------------

    def create_user(self, name: str, is_admin: bool = False) -> UserRecord:
        name = name.strip()
        if not name:
            raise ConfigError("a user needs a name")
        with self._write(f"create user {name!r}", conflict=f"user {name!r} already exists") as conn:
            if conn.execute(select(users.c.id).where(users.c.name == name)).first() is not None:
                raise ConflictError(f"user {name!r} already exists")
            row = conn.execute(
                insert(users)
                .values(name=name, is_admin=is_admin, created_at=time.time())
                .returning(*_USER_COLUMNS)
            ).one()
        return _user(row)

    def get_user(self, user_id: int) -> UserRecord:
        with self._read("read a user") as conn:
            row = conn.execute(select(*_USER_COLUMNS).where(users.c.id == user_id)).first()
        if row is None:
            raise NotFoundError(f"no user with id {user_id}")
        return _user(row)

    def get_user_by_name(self, name: str) -> UserRecord:
        with self._read("read a user") as conn:
            row = conn.execute(select(*_USER_COLUMNS).where(users.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no user named {name!r}")
        return _user(row)

    def list_users(self) -> list[UserRecord]:
        with self._read("list users") as conn:
            rows = conn.execute(select(*_USER_COLUMNS).order_by(users.c.id)).all()
        return [_user(row) for row in rows]

    def count_users(self) -> int:
        with self._read("count users") as conn:
            return int(conn.execute(select(func.count()).select_from(users)).scalar_one())

    def delete_user(self, user_id: int) -> UserRecord:
        """Delete a user with their tokens and roles. The last admin cannot be deleted."""
        with self._write("delete a user") as conn:
            row = conn.execute(select(*_USER_COLUMNS).where(users.c.id == user_id)).first()
            if row is None:
                raise NotFoundError(f"no user with id {user_id}")
            user = _user(row)
            if user.is_admin:
                admins = conn.execute(
                    select(func.count()).select_from(users).where(users.c.is_admin.is_(True))
                ).scalar_one()
                if int(admins) <= 1:
                    raise ConflictError(f"user {user.name!r} is the last admin: make another admin first")
            conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
            conn.execute(delete(memberships).where(memberships.c.user_id == user_id))
            conn.execute(delete(users).where(users.c.id == user_id))
        return user

    # -- tokens ----------------------------------------------------------------

    def create_token(
        self, user_id: int, name: str, token_hash: str, expires_at: float | None = None
    ) -> TokenRecord:
        with self._write("create a token", conflict="token already exists") as conn:
            if conn.execute(select(users.c.id).where(users.c.id == user_id)).first() is None:
                raise NotFoundError(f"no user with id {user_id}")
            row = conn.execute(
                insert(api_tokens)
                .values(
                    user_id=user_id,
                    name=name,
                    token_hash=token_hash,
                    created_at=time.time(),
                    expires_at=expires_at,
                    revoked=False,
                )
                .returning(*_TOKEN_COLUMNS)
            ).one()
        return _token(row)

    def get_token(self, token_id: int) -> TokenRecord:
        with self._read("read a token") as conn:
            row = conn.execute(select(*_TOKEN_COLUMNS).where(api_tokens.c.id == token_id)).first()
        if row is None:
            raise NotFoundError(f"no token with id {token_id}")
        return _token(row)

    def user_for_token_hash(self, token_hash: str) -> UserRecord | None:
        """The owner of a live token (not revoked, not expired), or None; notes when it was used."""
        now = time.time()
        query = (
            select(*_USER_COLUMNS, api_tokens.c.id.label("token_id"), api_tokens.c.last_used_at)
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(api_tokens.c.token_hash == token_hash, api_tokens.c.revoked.is_(False))
            .where((api_tokens.c.expires_at.is_(None)) | (api_tokens.c.expires_at > now))
        )
        with self._read("check a token") as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION_S:
            with self._write("note a token's use") as conn:
                conn.execute(
                    update(api_tokens).where(api_tokens.c.id == row.token_id).values(last_used_at=now)
                )
        return _user(row)

    def revoke_token(self, token_id: int) -> TokenRecord:
        with self._write("revoke a token") as conn:
            row = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id)
                .values(revoked=True)
                .returning(*_TOKEN_COLUMNS)
            ).first()
        if row is None:
            raise NotFoundError(f"no token with id {token_id}")
        return _token(row)

    def list_tokens(self, user_id: int) -> list[TokenRecord]:
        with self._read("list tokens") as conn:
            rows = conn.execute(
                select(*_TOKEN_COLUMNS).where(api_tokens.c.user_id == user_id).order_by(api_tokens.c.id)
            ).all()
        return [_token(row) for row in rows]

    # -- roles -----------------------------------------------------------------

    def set_role(self, project_id: int, user_id: int, role: str) -> None:
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
        with self._write("set a role") as conn:
            if conn.execute(select(users.c.id).where(users.c.id == user_id)).first() is None:
                raise NotFoundError(f"no user with id {user_id}")
            if (
                conn.execute(select(project_table.c.id).where(project_table.c.id == project_id)).first()
                is None
            ):
                raise NotFoundError(f"no project with id {project_id}")
            where = (memberships.c.project_id == project_id) & (memberships.c.user_id == user_id)
            if conn.execute(update(memberships).where(where).values(role=role)).rowcount == 0:
                conn.execute(insert(memberships).values(project_id=project_id, user_id=user_id, role=role))

    def remove_role(self, project_id: int, user_id: int) -> None:
        with self._write("remove a role") as conn:
            result = conn.execute(
                delete(memberships).where(
                    (memberships.c.project_id == project_id) & (memberships.c.user_id == user_id)
                )
            )
        if result.rowcount == 0:
            raise NotFoundError(f"user {user_id} has no role on project {project_id}")

    def role_of(self, project_id: int, user_id: int) -> str | None:
        with self._read("read a role") as conn:
            role = conn.execute(
                select(memberships.c.role).where(
                    (memberships.c.project_id == project_id) & (memberships.c.user_id == user_id)
                )
            ).scalar_one_or_none()
        return None if role is None else str(role)

    def roles_of(self, user_id: int) -> dict[int, str]:
        """project id -> role, for every project the user has a role on."""
        with self._read("read roles") as conn:
            rows = conn.execute(
                select(memberships.c.project_id, memberships.c.role).where(memberships.c.user_id == user_id)
            ).all()
        return {int(row.project_id): str(row.role) for row in rows}

    def members(self, project_id: int) -> list[tuple[UserRecord, str]]:
        with self._read("list members") as conn:
            rows = conn.execute(
                select(*_USER_COLUMNS, memberships.c.role)
                .join(memberships, memberships.c.user_id == users.c.id)
                .where(memberships.c.project_id == project_id)
                .order_by(users.c.name)
            ).all()
        return [(_user(row), str(row.role)) for row in rows]

    # -- audit -----------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        *,
        project_id: int | None = None,
        target: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        with self._write("record an audit entry") as conn:
            conn.execute(
                insert(audit_log).values(
                    at=time.time(),
                    actor=actor,
                    action=action,
                    project_id=project_id,
                    target=target,
                    details=dict(details) if details is not None else None,
                )
            )

    def list_audit(self, *, project_id: int | None = None, limit: int = 100) -> list[AuditRecord]:
        """Newest first."""
        query = select(*_AUDIT_COLUMNS).order_by(audit_log.c.id.desc()).limit(max(1, limit))
        if project_id is not None:
            query = query.where(audit_log.c.project_id == project_id)
        with self._read("read the audit log") as conn:
            rows = conn.execute(query).all()
        return [_audit(row) for row in rows]

    # -- plumbing --------------------------------------------------------------

    def _write(self, action: str, *, conflict: str | None = None) -> AbstractContextManager[Connection]:
        return self._db.write(action, conflict=conflict)

    def _read(self, action: str) -> AbstractContextManager[Connection]:
        return self._db.read(action)
