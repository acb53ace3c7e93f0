"""RegistryStore: models, their numbered versions and movable aliases.

Versions are numbered per model without gaps, even when several processes
register at once: one write transaction inserts the model row if it is new,
bumps ``models.last_version`` (SQLite: the writer holds the database lock from
BEGIN IMMEDIATE; PostgreSQL: the UPDATE takes the row lock, so concurrent
registrations queue on it), reads the number back and inserts the version.
A failed insert rolls the counter back with it.

Every change (register, alias set/delete) also writes an ``audit_log`` row in
the same transaction: the history of an alias is read back from there.
Callers get frozen records; the object files themselves are not here
(:mod:`aicd.delivery.objects`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, delete, insert, select, update
from sqlalchemy.engine import Connection, Row

from aicd.errors import NotFoundError, PermissionDeniedError
from aicd.store.owned import DatabaseStore, open_current
from aicd.store.schema import audit_log, jobs, model_aliases, model_versions, models, pipelines
from aicd.suggest import did_you_mean

ACTION_REGISTER = "model.register"
ACTION_ALIAS_SET = "model.alias.set"
ACTION_ALIAS_DELETE = "model.alias.delete"


@dataclass(frozen=True)
class ModelRecord:
    id: int
    name: str
    description: str | None
    last_version: int  # the highest version number given (0: none yet)
    created_at: float
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> version
    project_id: int | None = None  # the server project it belongs to (None: local, or unowned)


@dataclass(frozen=True)
class ModelVersionRecord:
    id: int
    model: str
    version: int
    artifact_digest: str | None  # "sha256:<hex>"
    artifact_name: str | None  # "model.joblib", or "model/" for a folder
    artifact_size: int | None  # bytes of the stored object
    metrics: dict[str, float] | None
    tags: dict[str, str] | None
    commit_sha: str | None
    ref: str | None
    pipeline_id: int | None
    job_id: int | None
    project: str | None
    pipeline_url: str | None
    dataset_hash: str | None
    created_by: str | None
    created_at: float
    aliases: tuple[str, ...] = ()  # the aliases that point at this version

    @property
    def uri(self) -> str:
        return f"models:/{self.model}/{self.version}"


@dataclass(frozen=True)
class AliasRecord:
    model: str
    alias: str
    version: int
    updated_at: float


@dataclass(frozen=True)
class AliasEvent:
    """One move (or removal) of an alias, from the audit log."""

    at: float
    actor: str
    action: str  # model.alias.set | model.alias.delete
    alias: str
    version: int | None  # the version it points at afterwards (None: removed)
    previous: int | None  # the version it pointed at before (None: new)


@dataclass(frozen=True)
class PipelineLink:
    """The pipeline (and job) of this database a version came from, when it is one of ours."""

    pipeline_id: int
    iid: int
    status: str
    ref: str
    sha: str
    project_dir: str
    created_at: float
    job_name: str | None = None
    job_status: str | None = None


@dataclass(frozen=True)
class NewVersion:
    """What a registration writes (lineage included); validated by the caller."""

    artifact_digest: str | None = None
    artifact_name: str | None = None
    artifact_size: int | None = None
    metrics: Mapping[str, float] | None = None
    tags: Mapping[str, str] | None = None
    commit_sha: str | None = None
    ref: str | None = None
    pipeline_id: int | None = None
    job_id: int | None = None
    project: str | None = None
    pipeline_url: str | None = None
    dataset_hash: str | None = None
    created_by: str | None = None


_VERSION_COLUMNS = (
    model_versions.c.id,
    models.c.name,
    model_versions.c.version,
    model_versions.c.artifact_digest,
    model_versions.c.artifact_name,
    model_versions.c.artifact_size,
    model_versions.c.metrics,
    model_versions.c.tags,
    model_versions.c.commit_sha,
    model_versions.c.ref,
    model_versions.c.pipeline_id,
    model_versions.c.job_id,
    model_versions.c.project,
    model_versions.c.pipeline_url,
    model_versions.c.dataset_hash,
    model_versions.c.created_by,
    model_versions.c.created_at,
)


def _select_versions() -> Select[Any]:
    return select(*_VERSION_COLUMNS).join(models, models.c.id == model_versions.c.model_id)


def _version(row: Row[Any], aliases: Sequence[str] = ()) -> ModelVersionRecord:
    return ModelVersionRecord(
        id=int(row.id),
        model=row.name,
        version=int(row.version),
        artifact_digest=row.artifact_digest,
        artifact_name=row.artifact_name,
        artifact_size=None if row.artifact_size is None else int(row.artifact_size),
        metrics=None if row.metrics is None else {str(k): float(v) for k, v in row.metrics.items()},
        tags=None if row.tags is None else {str(k): str(v) for k, v in row.tags.items()},
        commit_sha=row.commit_sha,
        ref=row.ref,
        pipeline_id=None if row.pipeline_id is None else int(row.pipeline_id),
        job_id=None if row.job_id is None else int(row.job_id),
        project=row.project,
        pipeline_url=row.pipeline_url,
        dataset_hash=row.dataset_hash,
        created_by=row.created_by,
        created_at=float(row.created_at),
        aliases=tuple(sorted(aliases)),
    )


def open_registry(url: str) -> RegistryStore:
    """The registry in the database at a SQLAlchemy URL (created and migrated when needed)."""
    return RegistryStore(open_current(url), owns_database=True)


class RegistryStore(DatabaseStore):
    """Models, versions and aliases in one database (the run history's)."""

    # -- writes ---------------------------------------------------------------------------------

    def register_version(
        self,
        name: str,
        new: NewVersion,
        *,
        description: str | None = None,
        alias: str | None = None,
        actor: str = "local",
        project_id: int | None = None,
        check_owner: bool = False,
    ) -> ModelVersionRecord:
        """The next version of `name` (the model is created on its first version, belonging to
        `project_id`); with `alias`, the alias points at it in the same transaction.

        With `check_owner` (the server), a model that exists already must belong to `project_id`,
        else PermissionDeniedError and nothing is written (decided in the same transaction, so two
        projects registering a new name at once cannot both add to it)."""
        now = time.time()
        with self._write(f"register a version of model {name!r}") as conn:
            conn.execute(self._insert_model_if_absent(name, description, now, project_id))
            model_id, number, owner = conn.execute(
                update(models)
                .where(models.c.name == name)
                .values(last_version=models.c.last_version + 1)
                .returning(models.c.id, models.c.last_version, models.c.project_id)
            ).one()
            if check_owner and owner != project_id:
                raise PermissionDeniedError(f"model {name!r} belongs to another project")
            if description is not None:
                conn.execute(update(models).where(models.c.id == model_id).values(description=description))
            version_id = conn.execute(
                insert(model_versions)
                .values(
                    model_id=model_id,
                    version=number,
                    artifact_digest=new.artifact_digest,
                    artifact_name=new.artifact_name,
                    artifact_size=new.artifact_size,
                    metrics=None if new.metrics is None else dict(new.metrics),
                    tags=None if new.tags is None else dict(new.tags),
                    commit_sha=new.commit_sha,
                    ref=new.ref,
                    pipeline_id=new.pipeline_id,
                    job_id=new.job_id,
                    project=new.project,
                    pipeline_url=new.pipeline_url,
                    dataset_hash=new.dataset_hash,
                    created_by=new.created_by,
                    created_at=now,
                )
                .returning(model_versions.c.id)
            ).scalar_one()
            self._audit(
                conn,
                actor,
                ACTION_REGISTER,
                f"models:/{name}/{number}",
                {"digest": new.artifact_digest, "commit": new.commit_sha, "pipeline": new.pipeline_id},
                now,
                owner,
            )
            if alias is not None:
                self._move_alias(conn, model_id, name, alias, int(version_id), number, actor, now)
            row = conn.execute(_select_versions().where(model_versions.c.id == version_id)).one()
            names = self._aliases_of_versions(conn, [int(version_id)]).get(int(version_id), [])
        return _version(row, names)

    def _insert_model_if_absent(
        self, name: str, description: str | None, now: float, project_id: int | None
    ) -> Any:
        values = {
            "name": name,
            "description": description,
            "last_version": 0,
            "created_at": now,
            "project_id": project_id,
        }
        if self._db.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(models).values(values).on_conflict_do_nothing(index_elements=["name"])
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(models).values(values).on_conflict_do_nothing(index_elements=["name"])

    def set_project(self, name: str, project_id: int | None, *, actor: str) -> None:
        """Give model `name` to another project (None: to none); audited in both projects' logs."""
        now = time.time()
        with self._write(f"change the project of model {name!r}") as conn:
            model_id = self._model_id(conn, name)
            before = self._owner(conn, model_id)
            conn.execute(update(models).where(models.c.id == model_id).values(project_id=project_id))
            details = {"from_project_id": before, "to_project_id": project_id}
            for owner in {before, project_id}:
                self._audit(conn, actor, "model.project", f"models:/{name}", details, now, owner)

    def set_alias(
        self, name: str, alias: str, version: int, *, actor: str = "local"
    ) -> tuple[AliasRecord, int | None]:
        """Point `alias` at `version` (creating or moving it); returns it and the version it had before."""
        now = time.time()
        with self._write(f"set alias {alias!r} of model {name!r}") as conn:
            model_id = self._model_id(conn, name)
            version_id = conn.execute(
                select(model_versions.c.id).where(
                    model_versions.c.model_id == model_id, model_versions.c.version == version
                )
            ).scalar_one_or_none()
            if version_id is None:
                raise self._no_version(conn, model_id, name, version)
            previous = self._move_alias(conn, model_id, name, alias, int(version_id), version, actor, now)
        return AliasRecord(model=name, alias=alias, version=version, updated_at=now), previous

    def _move_alias(
        self,
        conn: Connection,
        model_id: int,
        name: str,
        alias: str,
        version_id: int,
        version: int,
        actor: str,
        now: float,
    ) -> int | None:
        current = conn.execute(
            select(model_aliases.c.id, model_versions.c.version)
            .join(model_versions, model_versions.c.id == model_aliases.c.version_id)
            .where(model_aliases.c.model_id == model_id, model_aliases.c.alias == alias)
        ).first()
        previous = None if current is None else int(current.version)
        if current is None:
            conn.execute(
                insert(model_aliases).values(
                    model_id=model_id, alias=alias, version_id=version_id, updated_at=now
                )
            )
        else:
            conn.execute(
                update(model_aliases)
                .where(model_aliases.c.id == current.id)
                .values(version_id=version_id, updated_at=now)
            )
        details = {"alias": alias, "version": version, "previous": previous}
        owner = self._owner(conn, model_id)
        self._audit(conn, actor, ACTION_ALIAS_SET, f"models:/{name}@{alias}", details, now, owner)
        return previous

    def delete_alias(self, name: str, alias: str, *, actor: str = "local") -> AliasRecord:
        """Remove `alias`; returns what it was. NotFoundError when it does not exist."""
        now = time.time()
        with self._write(f"delete alias {alias!r} of model {name!r}") as conn:
            model_id = self._model_id(conn, name)
            current = conn.execute(
                select(model_aliases.c.id, model_aliases.c.updated_at, model_versions.c.version)
                .join(model_versions, model_versions.c.id == model_aliases.c.version_id)
                .where(model_aliases.c.model_id == model_id, model_aliases.c.alias == alias)
            ).first()
            if current is None:
                raise self._no_alias(conn, model_id, name, alias)
            conn.execute(delete(model_aliases).where(model_aliases.c.id == current.id))
            details = {"alias": alias, "version": None, "previous": int(current.version)}
            owner = self._owner(conn, model_id)
            self._audit(conn, actor, ACTION_ALIAS_DELETE, f"models:/{name}@{alias}", details, now, owner)
        return AliasRecord(
            model=name, alias=alias, version=int(current.version), updated_at=current.updated_at
        )

    # -- reads ----------------------------------------------------------------------------------

    def list_models(self) -> list[ModelRecord]:
        """Every model, by name, with its aliases."""
        with self._read("list models") as conn:
            rows = conn.execute(select(models).order_by(models.c.name)).all()
            aliases = self._aliases_by_model(conn)
        return [self._model(row, aliases.get(int(row.id), {})) for row in rows]

    def get_model(self, name: str) -> ModelRecord:
        with self._read(f"read model {name!r}") as conn:
            model_id = self._model_id(conn, name)
            row = conn.execute(select(models).where(models.c.id == model_id)).one()
            aliases = self._aliases_by_model(conn, model_id)
        return self._model(row, aliases.get(model_id, {}))

    def list_versions(self, name: str) -> list[ModelVersionRecord]:
        """Versions of `name`, newest first. NotFoundError for an unknown model."""
        with self._read(f"list versions of model {name!r}") as conn:
            model_id = self._model_id(conn, name)
            rows = conn.execute(
                _select_versions()
                .where(model_versions.c.model_id == model_id)
                .order_by(model_versions.c.version.desc())
            ).all()
            aliases = self._aliases_of_versions(conn, [int(r.id) for r in rows])
        return [_version(row, aliases.get(int(row.id), [])) for row in rows]

    def get_version(self, name: str, version: int) -> ModelVersionRecord:
        with self._read(f"read version {version} of model {name!r}") as conn:
            model_id = self._model_id(conn, name)
            row = conn.execute(
                _select_versions().where(
                    model_versions.c.model_id == model_id, model_versions.c.version == version
                )
            ).first()
            if row is None:
                raise self._no_version(conn, model_id, name, version)
            aliases = self._aliases_of_versions(conn, [int(row.id)])
        return _version(row, aliases.get(int(row.id), []))

    def latest_version(self, name: str) -> ModelVersionRecord:
        with self._read(f"read the latest version of model {name!r}") as conn:
            model_id = self._model_id(conn, name)
            row = conn.execute(
                _select_versions()
                .where(model_versions.c.model_id == model_id)
                .order_by(model_versions.c.version.desc())
                .limit(1)
            ).first()
            if row is None:
                raise NotFoundError(f"model {name!r} has no versions yet")
            aliases = self._aliases_of_versions(conn, [int(row.id)])
        return _version(row, aliases.get(int(row.id), []))

    def resolve_alias(self, name: str, alias: str) -> ModelVersionRecord:
        """The version `alias` points at. NotFoundError naming the model's aliases when there is none."""
        with self._read(f"read alias {alias!r} of model {name!r}") as conn:
            model_id = self._model_id(conn, name)
            row = conn.execute(
                _select_versions()
                .join(model_aliases, model_aliases.c.version_id == model_versions.c.id)
                .where(model_aliases.c.model_id == model_id, model_aliases.c.alias == alias)
            ).first()
            if row is None:
                raise self._no_alias(conn, model_id, name, alias)
            aliases = self._aliases_of_versions(conn, [int(row.id)])
        return _version(row, aliases.get(int(row.id), []))

    def list_aliases(self, name: str) -> list[AliasRecord]:
        with self._read(f"list aliases of model {name!r}") as conn:
            model_id = self._model_id(conn, name)
            rows = conn.execute(
                select(model_aliases.c.alias, model_versions.c.version, model_aliases.c.updated_at)
                .join(model_versions, model_versions.c.id == model_aliases.c.version_id)
                .where(model_aliases.c.model_id == model_id)
                .order_by(model_aliases.c.alias)
            ).all()
        return [AliasRecord(name, r.alias, int(r.version), float(r.updated_at)) for r in rows]

    def alias_history(self, name: str, alias: str | None = None, *, limit: int = 100) -> list[AliasEvent]:
        """Moves and removals of the model's aliases (or of one), newest first."""
        if alias is not None:
            where = audit_log.c.target == f"models:/{name}@{alias}"
        else:
            where = audit_log.c.target.like(f"models:/{_escape_like(name)}@%", escape="\\")
        query = (
            select(audit_log.c.at, audit_log.c.actor, audit_log.c.action, audit_log.c.details)
            .where(audit_log.c.action.in_((ACTION_ALIAS_SET, ACTION_ALIAS_DELETE)), where)
            .order_by(audit_log.c.id.desc())
            .limit(limit)
        )
        with self._read(f"read the alias history of model {name!r}") as conn:
            rows = conn.execute(query).all()
        out: list[AliasEvent] = []
        for r in rows:
            details = dict(r.details or {})
            out.append(
                AliasEvent(
                    at=float(r.at),
                    actor=r.actor,
                    action=r.action,
                    alias=str(details.get("alias", "")),
                    version=_int_or_none(details.get("version")),
                    previous=_int_or_none(details.get("previous")),
                )
            )
        return out

    def versions_for_commit(self, sha_prefix: str) -> list[ModelVersionRecord]:
        """Versions registered from a commit (a prefix of its SHA is enough), newest first."""
        query = (
            _select_versions()
            .where(model_versions.c.commit_sha.like(f"{_escape_like(sha_prefix.lower())}%", escape="\\"))
            .order_by(model_versions.c.created_at.desc(), model_versions.c.id.desc())
        )
        with self._read(f"find model versions of commit {sha_prefix}") as conn:
            rows = conn.execute(query).all()
            aliases = self._aliases_of_versions(conn, [int(r.id) for r in rows])
        return [_version(row, aliases.get(int(row.id), [])) for row in rows]

    def pipeline_link(self, record: ModelVersionRecord) -> PipelineLink | None:
        """The pipeline row of this database that `record` came from, if its id and commit match one."""
        if record.pipeline_id is None or record.commit_sha is None:
            return None
        with self._read(f"read pipeline {record.pipeline_id}") as conn:
            row = conn.execute(
                select(
                    pipelines.c.id,
                    pipelines.c.iid,
                    pipelines.c.status,
                    pipelines.c.ref,
                    pipelines.c.sha,
                    pipelines.c.project_dir,
                    pipelines.c.created_at,
                ).where(pipelines.c.id == record.pipeline_id, pipelines.c.sha == record.commit_sha)
            ).first()
            if row is None:
                return None
            job = None
            if record.job_id is not None:
                job = conn.execute(
                    select(jobs.c.name, jobs.c.status).where(
                        and_(jobs.c.id == record.job_id, jobs.c.pipeline_id == row.id)
                    )
                ).first()
        return PipelineLink(
            pipeline_id=int(row.id),
            iid=int(row.iid),
            status=row.status,
            ref=row.ref,
            sha=row.sha,
            project_dir=row.project_dir,
            created_at=float(row.created_at),
            job_name=None if job is None else job.name,
            job_status=None if job is None else job.status,
        )

    # -- plumbing -------------------------------------------------------------------------------

    @staticmethod
    def _model(row: Row[Any], aliases: dict[str, int]) -> ModelRecord:
        return ModelRecord(
            id=int(row.id),
            name=row.name,
            description=row.description,
            last_version=int(row.last_version),
            created_at=float(row.created_at),
            aliases=aliases,
            project_id=None if row.project_id is None else int(row.project_id),
        )

    @staticmethod
    def _aliases_by_model(conn: Connection, model_id: int | None = None) -> dict[int, dict[str, int]]:
        query = (
            select(model_aliases.c.model_id, model_aliases.c.alias, model_versions.c.version)
            .join(model_versions, model_versions.c.id == model_aliases.c.version_id)
            .order_by(model_aliases.c.alias)
        )
        if model_id is not None:
            query = query.where(model_aliases.c.model_id == model_id)
        out: dict[int, dict[str, int]] = {}
        for r in conn.execute(query):
            out.setdefault(int(r.model_id), {})[r.alias] = int(r.version)
        return out

    @staticmethod
    def _aliases_of_versions(conn: Connection, version_ids: Sequence[int]) -> dict[int, list[str]]:
        if not version_ids:
            return {}
        out: dict[int, list[str]] = {}
        query = select(model_aliases.c.version_id, model_aliases.c.alias).where(
            model_aliases.c.version_id.in_(list(version_ids))
        )
        for r in conn.execute(query):
            out.setdefault(int(r.version_id), []).append(r.alias)
        return out

    @staticmethod
    def _model_id(conn: Connection, name: str) -> int:
        found = conn.execute(select(models.c.id).where(models.c.name == name)).scalar_one_or_none()
        if found is None:
            names = list(conn.execute(select(models.c.name)).scalars())
            known = ", ".join(sorted(names)) if names else "none yet"
            raise NotFoundError(f"no model named {name!r}{did_you_mean(name, names)}; models: {known}")
        return int(found)

    @staticmethod
    def _no_version(conn: Connection, model_id: int, name: str, version: int) -> NotFoundError:
        last = conn.execute(select(models.c.last_version).where(models.c.id == model_id)).scalar_one()
        have = f"versions 1 to {last}" if last > 1 else ("version 1" if last == 1 else "no versions yet")
        return NotFoundError(f"model {name!r} has no version {version} (it has {have})")

    @staticmethod
    def _no_alias(conn: Connection, model_id: int, name: str, alias: str) -> NotFoundError:
        names = list(
            conn.execute(select(model_aliases.c.alias).where(model_aliases.c.model_id == model_id)).scalars()
        )
        known = ", ".join(sorted(names)) if names else "none yet"
        return NotFoundError(
            f"model {name!r} has no alias {alias!r}{did_you_mean(alias, names)}; its aliases: {known}"
        )

    @staticmethod
    def _owner(conn: Connection, model_id: int) -> int | None:
        found = conn.execute(select(models.c.project_id).where(models.c.id == model_id)).scalar_one_or_none()
        return None if found is None else int(found)

    @staticmethod
    def _audit(
        conn: Connection,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, Any],
        now: float,
        project_id: int | None = None,
    ) -> None:
        conn.execute(
            insert(audit_log).values(
                at=now,
                actor=actor,
                action=action,
                project_id=project_id,
                target=target,
                details=dict(details),
            )
        )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
