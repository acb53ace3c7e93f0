"""Schema version: a cheap check at every open, Alembic only when behind.

``ensure_current`` reads ``alembic_version`` with one query; only when the
database is new or behind does it import Alembic and upgrade, inside one
write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock) so
that several processes opening a new database at once migrate it once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from aicd.errors import StoreError
from aicd.store.db import Database, connect
from aicd.store.migrations import HEAD, SCRIPT_LOCATION, VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config

_PG_LOCK_KEY = 0x61696364  # "aicd": serialises migrations between processes
_SELECT_VERSION = text(f"SELECT version_num FROM {VERSION_TABLE}")


def current_revision(url: str) -> str | None:
    """The database's schema revision; None for a database aicd never migrated."""
    database = connect(url)
    try:
        with _open(database.engine, database) as conn:
            try:
                return _read_revision(conn, database)
            except SQLAlchemyError as exc:
                raise database.error("read the schema revision", exc) from exc
    finally:
        database.dispose()


def upgrade(url: str) -> None:
    """Apply every pending migration (nothing when the database is at head)."""
    database = connect(url)
    try:
        _upgrade(database)
    finally:
        database.dispose()


def ensure_current(database: Database) -> None:
    """Bring the database to HEAD; one query when it is there already."""
    with _open(database.engine, database) as conn:
        try:
            revisions = list(conn.execute(_SELECT_VERSION).scalars())
        except SQLAlchemyError:
            revisions = []  # most likely a new database; _upgrade looks closer
    if revisions != [HEAD]:
        _upgrade(database)


def _open(engine: Engine, database: Database) -> Connection:
    try:
        return engine.connect()
    except SQLAlchemyError as exc:
        raise database.open_error(exc) from exc


def _read_revision(conn: Connection, database: Database) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    revisions = list(conn.execute(_SELECT_VERSION).scalars())
    if len(revisions) > 1:
        raise StoreError(
            f"database at {database.where} has several schema revisions ({', '.join(revisions)}); "
            "it was not made by aicd"
        )
    return revisions[0] if revisions else None


def _upgrade(database: Database) -> None:
    with _open(database.writer, database) as conn:
        try:
            with conn.begin():
                if database.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                current = _read_revision(conn, database)  # again: another process may have migrated
                if current != HEAD:
                    _run_alembic(conn, database, current)
        except SQLAlchemyError as exc:
            raise database.error(f"upgrade the schema to revision {HEAD}", exc) from exc


def _run_alembic(conn: Connection, database: Database, current: str | None) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    config = alembic_config()
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if current is not None and current not in known:
        raise StoreError(
            f"database at {database.where} is at revision {current} which this aicd does not know "
            f"(it knows up to {HEAD}): upgrade aicd"
        )
    config.attributes["connection"] = conn
    try:
        command.upgrade(config, "head")
    except CommandError as exc:
        raise StoreError(f"database at {database.where}: cannot upgrade the schema: {exc}") from exc


def alembic_config(script_location: Path = SCRIPT_LOCATION) -> Config:
    """An Alembic Config without an ini file, pointing at aicd's migrations."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location).replace("%", "%%"))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    return config


def make_revision(url: str, message: str, script_location: Path = SCRIPT_LOCATION) -> Path:
    """Developer tool: autogenerate the next numbered revision from :mod:`aicd.store.schema`.

    The database at `url` is upgraded to head first (autogenerate compares the
    schema module with it). Review the file, then bump ``migrations.HEAD``.
    """
    from alembic import command

    upgrade(url)
    database = connect(url)
    config = alembic_config(script_location)
    try:
        with _open(database.writer, database) as conn, conn.begin():
            config.attributes["connection"] = conn
            result: Any = command.revision(
                config, message=message, autogenerate=True, rev_id=f"{int(HEAD) + 1:04d}"
            )
    finally:
        database.dispose()
    return Path(result.path)
