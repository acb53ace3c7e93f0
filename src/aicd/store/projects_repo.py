"""ProjectStore: the server's projects, their variables, refs seen and webhook deliveries.

Server projects are rows of ``projects`` with a name; their ``path`` is
``server:<name>`` (what RunStore calls ``project_dir``), so pipelines count
their iids on the same row. Secrets arrive here already encrypted; this module
never sees a plain secret.

Rows without a name are the projects `aicd run` made in a local home (their path is the
project's folder). A store opened with ``local=True`` (the UI of a local home, `aicd ui`) lists
and finds those too, read-only, named after their folder (``local_name``).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sqlalchemy import ColumnElement, Insert, delete, insert, select, update
from sqlalchemy.engine import Connection

from aicd.errors import ConflictError, NotFoundError
from aicd.store.db import Database
from aicd.store.records import MAX_ID, parse_id
from aicd.store.schema import project_refs, project_variables, projects, webhook_deliveries

SERVER_PREFIX = "server:"
UPDATABLE = frozenset({"repo_url", "default_branch", "pipeline_file", "poll_interval_s", "webhook_secret"})


@dataclass(frozen=True)
class ProjectRecord:
    id: int
    name: str
    key: str  # projects.path: "server:<name>" (RunStore's project_dir)
    repo_url: str
    default_branch: str
    pipeline_file: str
    poll_interval_s: float | None  # None: not polled
    has_webhook_secret: bool
    created_at: float
    local: bool = False  # a project of a local home (`aicd run`), not a server's

    @property
    def scope(self) -> str:
        """The deployment store's scope of its environments: the name on a server, "" locally."""
        return "" if self.local else self.name


@dataclass(frozen=True)
class VariableRecord:
    id: int
    project_id: int
    key: str
    value_encrypted: str  # never leaves the server: decrypt with state.secrets
    masked: bool
    protected: bool
    file: bool
    created_at: float
    updated_at: float


def project_key(name: str) -> str:
    return f"{SERVER_PREFIX}{name}"


_PROJECT_COLUMNS = (
    projects.c.id,
    projects.c.name,
    projects.c.path,
    projects.c.repo_url,
    projects.c.default_branch,
    projects.c.pipeline_file,
    projects.c.poll_interval_s,
    projects.c.webhook_secret.is_not(None),
    projects.c.created_at,
)
_VARIABLE_COLUMNS = (
    project_variables.c.id,
    project_variables.c.project_id,
    project_variables.c.key,
    project_variables.c.value_encrypted,
    project_variables.c.masked,
    project_variables.c.protected,
    project_variables.c.file,
    project_variables.c.created_at,
    project_variables.c.updated_at,
)


def _project(row: Any) -> ProjectRecord:
    return ProjectRecord(
        id=int(row[0]),
        name=row[1],
        key=row[2],
        repo_url=row[3] or "",
        default_branch=row[4] or "main",
        pipeline_file=row[5] or ".gitlab-ci.yml",
        poll_interval_s=row[6],
        has_webhook_secret=bool(row[7]),
        created_at=row[8],
    )


def local_name(path: str, taken: set[str]) -> str:
    """A local project's name: its folder's name (``-2``, ``-3``... after it when that is taken)."""
    base = PurePath(path).name or "project"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def _local_projects(rows: Sequence[Any], taken: set[str]) -> builtins.list[ProjectRecord]:
    """Rows without a name (made by `aicd run`), named after their folder (a name not in `taken`)."""
    taken = set(taken)
    records = []
    for row in sorted(rows, key=lambda r: int(r[0])):
        name = local_name(row[1], taken)
        taken.add(name)
        records.append(
            ProjectRecord(
                id=int(row[0]),
                name=name,
                key=row[1],
                repo_url=row[1],
                default_branch=row[2] or "main",
                pipeline_file=".gitlab-ci.yml",
                poll_interval_s=None,
                has_webhook_secret=False,
                created_at=row[3] or 0.0,
                local=True,
            )
        )
    return records


def _variable(row: Any) -> VariableRecord:
    return VariableRecord(
        id=int(row[0]),
        project_id=int(row[1]),
        key=row[2],
        value_encrypted=row[3],
        masked=bool(row[4]),
        protected=bool(row[5]),
        file=bool(row[6]),
        created_at=row[7],
        updated_at=row[8],
    )


class ProjectStore:
    def __init__(self, database: Database, *, local: bool = False) -> None:
        self._db = database
        self._local = local  # also the local home's projects (read-only): `aicd ui`

    # -- projects -------------------------------------------------------------

    def create(
        self,
        name: str,
        repo_url: str,
        default_branch: str,
        pipeline_file: str,
        poll_interval_s: float | None,
        webhook_secret_encrypted: str | None,
    ) -> ProjectRecord:
        """A new server project. ConflictError when the name is taken."""
        values = {
            "path": project_key(name),
            "name": name,
            "repo_url": repo_url,
            "default_branch": default_branch,
            "pipeline_file": pipeline_file,
            "poll_interval_s": poll_interval_s,
            "webhook_secret": webhook_secret_encrypted,
            "last_pipeline_iid": 0,
            "created_at": time.time(),
        }
        taken_message = f"a project named {name!r} already exists"
        with self._write(f"create project {name!r}", conflict=taken_message) as conn:
            taken = conn.execute(
                select(projects.c.id).where((projects.c.name == name) | (projects.c.path == values["path"]))
            ).first()
            if taken is not None:
                raise ConflictError(taken_message)
            new_id = conn.execute(insert(projects).values(values).returning(projects.c.id)).scalar_one()
            row = conn.execute(select(*_PROJECT_COLUMNS).where(projects.c.id == new_id)).one()
        return _project(row)

    def get(self, id_or_name: str | int) -> ProjectRecord:
        """By name, or by id (an int, or a string of digits that names no project). NotFoundError."""
        if self._local:
            return self._get_local(id_or_name)
        with self._read("read a project") as conn:
            row = None
            if isinstance(id_or_name, str):
                row = conn.execute(select(*_PROJECT_COLUMNS).where(projects.c.name == id_or_name)).first()
            number = id_or_name if isinstance(id_or_name, int) else parse_id(id_or_name)
            if row is None and number is not None and 1 <= number <= MAX_ID:
                row = conn.execute(
                    select(*_PROJECT_COLUMNS).where(projects.c.id == number, projects.c.name.is_not(None))
                ).first()
        if row is None:
            raise NotFoundError(f"project {id_or_name!r} does not exist")
        return _project(row)

    def list(self) -> list[ProjectRecord]:
        """Every server project, by name (and, opened with local=True, the local ones)."""
        query = select(*_PROJECT_COLUMNS).where(projects.c.name.is_not(None)).order_by(projects.c.name)
        columns = (projects.c.id, projects.c.path, projects.c.default_branch, projects.c.created_at)
        unnamed = projects.c.name.is_(None) & projects.c.path.not_like(f"{SERVER_PREFIX}%")
        local = select(*columns).where(unnamed)
        with self._read("list projects") as conn:
            found = [_project(row) for row in conn.execute(query)]
            rows = conn.execute(local).all() if self._local else []
        if rows:
            found = sorted(found + _local_projects(rows, {r.name for r in found}), key=lambda r: r.name)
        return found

    def _get_local(self, id_or_name: str | int) -> ProjectRecord:
        every = self.list()
        for record in every:
            if record.name == id_or_name:
                return record
        number = id_or_name if isinstance(id_or_name, int) else parse_id(id_or_name)
        for record in every:
            if record.id == number:
                return record
        raise NotFoundError(f"project {id_or_name!r} does not exist")

    def update(self, project_id: int, **fields: object) -> ProjectRecord:
        """Set repo_url, default_branch, pipeline_file, poll_interval_s or webhook_secret (encrypted)."""
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update project field(s): {', '.join(sorted(unknown))}")
        with self._write(f"update project {project_id}") as conn:
            if fields:
                result = conn.execute(update(projects).where(self._is_server(project_id)).values(**fields))
                if result.rowcount == 0:
                    raise NotFoundError(f"project {project_id} does not exist")
            row = conn.execute(select(*_PROJECT_COLUMNS).where(self._is_server(project_id))).first()
        if row is None:
            raise NotFoundError(f"project {project_id} does not exist")
        return _project(row)

    def delete(self, project_id: int) -> None:
        """The project and everything that hangs on it (pipelines, jobs, variables, ...)."""
        with self._write(f"delete project {project_id}") as conn:
            result = conn.execute(delete(projects).where(self._is_server(project_id)))
            if result.rowcount == 0:
                raise NotFoundError(f"project {project_id} does not exist")

    def webhook_secret_encrypted(self, project_id: int) -> str | None:
        with self._read(f"read project {project_id}") as conn:
            row = conn.execute(select(projects.c.webhook_secret).where(self._is_server(project_id))).first()
        if row is None:
            raise NotFoundError(f"project {project_id} does not exist")
        value: str | None = row[0]
        return value

    # -- variables ------------------------------------------------------------

    def set_variable(
        self,
        project_id: int,
        key: str,
        value_encrypted: str,
        masked: bool = False,
        protected: bool = False,
        file: bool = False,
    ) -> VariableRecord:
        """Create or replace the variable `key`."""
        now = time.time()
        values = {"value_encrypted": value_encrypted, "masked": masked, "protected": protected, "file": file}
        table = project_variables
        conflict = f"variable {key!r} was set by another request at the same time; try again"
        with self._write(f"set variable {key}", conflict=conflict) as conn:
            self._require(conn, project_id)
            result = conn.execute(
                update(table)
                .where(table.c.project_id == project_id, table.c.key == key)
                .values(**values, updated_at=now)
            )
            if result.rowcount == 0:
                conn.execute(
                    insert(table).values(
                        project_id=project_id, key=key, created_at=now, updated_at=now, **values
                    )
                )
            row = conn.execute(
                select(*_VARIABLE_COLUMNS).where(table.c.project_id == project_id, table.c.key == key)
            ).one()
        return _variable(row)

    def delete_variable(self, project_id: int, key: str) -> None:
        table = project_variables
        with self._write(f"delete variable {key}") as conn:
            result = conn.execute(delete(table).where(table.c.project_id == project_id, table.c.key == key))
        if result.rowcount == 0:
            raise NotFoundError(f"variable {key!r} does not exist in project {project_id}")

    def list_variables(self, project_id: int) -> builtins.list[VariableRecord]:
        """By key. The records hold the encrypted values: never hand them out."""
        table = project_variables
        query = select(*_VARIABLE_COLUMNS).where(table.c.project_id == project_id).order_by(table.c.key)
        with self._read("list variables") as conn:
            return [_variable(row) for row in conn.execute(query)]

    # -- refs -----------------------------------------------------------------

    def get_refs(self, project_id: int) -> dict[str, str]:
        query = select(project_refs.c.ref, project_refs.c.sha).where(project_refs.c.project_id == project_id)
        with self._read("read refs") as conn:
            return {ref: sha for ref, sha in conn.execute(query)}

    def clear_refs(self, project_id: int) -> None:
        """Forget every ref seen (the next poll is a first poll)."""
        with self._write("forget refs") as conn:
            conn.execute(delete(project_refs).where(project_refs.c.project_id == project_id))

    def set_ref(self, project_id: int, ref: str, sha: str) -> None:
        self.set_refs(project_id, {ref: sha})

    def set_refs(self, project_id: int, refs: dict[str, str | None]) -> None:
        """Record many refs at once; a None sha forgets the ref (deleted branch)."""
        if not refs:
            return
        now = time.time()
        table = project_refs
        with self._write("record refs") as conn:
            for ref, sha in refs.items():
                where = (table.c.project_id == project_id, table.c.ref == ref)
                if sha is None:
                    conn.execute(delete(table).where(*where))
                    continue
                result = conn.execute(update(table).where(*where).values(sha=sha, updated_at=now))
                if result.rowcount == 0:
                    conn.execute(
                        self._insert_ignore(table, ["project_id", "ref"]).values(
                            project_id=project_id, ref=ref, sha=sha, updated_at=now
                        )
                    )

    # -- webhook deliveries -----------------------------------------------------

    def record_delivery(self, project_id: int, provider: str, delivery_id: str) -> bool:
        """False when (project, provider, delivery_id) was already seen: a replay."""
        return self.record_deliveries(project_id, provider, [delivery_id])

    def record_deliveries(self, project_id: int, provider: str, delivery_ids: Sequence[str]) -> bool:
        """Record every id in one transaction; False when any of them was already seen."""
        now = time.time()
        fresh = True
        table = webhook_deliveries
        with self._write("record a webhook delivery") as conn:
            for delivery_id in dict.fromkeys(delivery_ids):
                inserted = conn.execute(
                    self._insert_ignore(table, ["project_id", "provider", "delivery_id"])
                    .values(
                        project_id=project_id, provider=provider, delivery_id=delivery_id, received_at=now
                    )
                    .returning(table.c.id)
                ).first()
                if inserted is None:  # (rowcount is not reliable here: -1 on PostgreSQL)
                    fresh = False
        return fresh

    def forget_deliveries(self, project_id: int, provider: str, delivery_ids: Sequence[str]) -> None:
        """Drop recorded deliveries (one that failed, so that a redelivery is not a replay)."""
        table = webhook_deliveries
        with self._write("forget webhook deliveries") as conn:
            conn.execute(
                delete(table).where(
                    table.c.project_id == project_id,
                    table.c.provider == provider,
                    table.c.delivery_id.in_(list(delivery_ids)),
                )
            )

    def set_delivery_pipeline(
        self, project_id: int, provider: str, delivery_id: str, pipeline_id: int
    ) -> None:
        table = webhook_deliveries
        with self._write("record a webhook delivery's pipeline") as conn:
            conn.execute(
                update(table)
                .where(
                    table.c.project_id == project_id,
                    table.c.provider == provider,
                    table.c.delivery_id == delivery_id,
                )
                .values(pipeline_id=pipeline_id)
            )

    # -- plumbing ---------------------------------------------------------------

    @staticmethod
    def _is_server(project_id: int) -> ColumnElement[bool]:
        return (projects.c.id == project_id) & projects.c.name.is_not(None)

    def _require(self, conn: Connection, project_id: int) -> None:
        if conn.execute(select(projects.c.id).where(self._is_server(project_id))).first() is None:
            raise NotFoundError(f"project {project_id} does not exist")

    def _insert_ignore(self, table: Any, keys: builtins.list[str]) -> Insert:
        """INSERT ... ON CONFLICT (keys) DO NOTHING, on either backend."""
        if self._db.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)

    def _write(self, action: str, conflict: str | None = None) -> AbstractContextManager[Connection]:
        return self._db.write(action, conflict=conflict)

    def _read(self, action: str) -> AbstractContextManager[Connection]:
        return self._db.read(action)
