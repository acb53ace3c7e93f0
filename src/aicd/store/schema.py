"""The tables, as SQLAlchemy Core objects: the one definition of the schema.

The repository works on these tables with Core statements (it never imports
``sqlalchemy.orm``, which costs tens of milliseconds at every CLI start);
:mod:`aicd.store.models` maps typed ORM classes onto the same tables, and
Alembic's autogenerate compares the migrations against :data:`metadata`.

A change here needs a new migration in ``migrations/versions/``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

# Named constraints, so that later migrations (SQLite batch mode included) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# 64-bit ids on PostgreSQL; INTEGER PRIMARY KEY (the rowid) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Json(TypeDecorator[Any]):
    """JSON text on SQLite, JSONB on PostgreSQL; Python None is SQL NULL.

    (A decorator rather than ``with_variant(JSONB)``: importing the PostgreSQL
    dialect costs ~25 ms, which SQLite users should not pay at every start.)
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))


Status = String(32)

# One row per project (today: a local directory). Holds the per-project pipeline
# counter (CI_PIPELINE_IID); the server will add name, repository URL, ... later.
projects = Table(
    "projects",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False),
    Column("last_pipeline_iid", Integer, nullable=False, server_default=text("0")),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("path"),
    sqlite_autoincrement=True,
)

pipelines = Table(
    "pipelines",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("iid", Integer, nullable=False),
    Column("project_dir", Text, nullable=False),
    Column("ref", Text, nullable=False),
    Column("sha", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("file", Text, nullable=False),
    Column("status", Status, nullable=False),
    Column("name", Text, nullable=True),
    Column("variables", Json(), nullable=True),
    Column("created_at", Double, nullable=False),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("run_dir", Text, nullable=False),
    Column("error", Text, nullable=True),
    UniqueConstraint("project_id", "iid"),
    Index(None, "project_dir", "id"),
    sqlite_autoincrement=True,  # ids name run folders and logs: never reuse one
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("pipeline_id", Id, ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("stage", Text, nullable=False),
    Column("status", Status, nullable=False),
    Column("when", String(32), nullable=False),
    Column("allow_failure", Boolean, nullable=False, server_default=false()),
    Column("attempt", Integer, nullable=False, server_default=text("1")),
    Column("retried", Boolean, nullable=False, server_default=false()),
    Column("exit_code", Integer, nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("created_at", Double, nullable=True),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("log_path", Text, nullable=True),
    Column("artifacts_dir", Text, nullable=True),
    Column("tests_total", Integer, nullable=True),
    Column("tests_passed", Integer, nullable=True),
    Column("tests_failed", Integer, nullable=True),
    Column("tests_skipped", Integer, nullable=True),
    Column("coverage", Double, nullable=True),
    Column("metrics", Json(), nullable=True),
    Index(None, "pipeline_id", "id"),
    sqlite_autoincrement=True,
)
