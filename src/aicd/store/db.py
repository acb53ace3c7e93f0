"""Engines: SQLite (WAL, busy timeout, BEGIN IMMEDIATE for writes) or PostgreSQL.

Also the one place that turns SQLAlchemy exceptions into :class:`StoreError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from aicd.errors import ConflictError, StoreError
from aicd.store import sqlite_pragmas

PG_CONNECT_TIMEOUT_S = 10
_BEGIN_OPTION = "aicd_sqlite_begin"
_SUPPORTED = "sqlite:///path/to/aicd.db or postgresql+psycopg://user@host:5432/dbname"


@dataclass(frozen=True)
class Database:
    """An engine for reads and a view of it for write transactions (same pool)."""

    engine: Engine
    writer: Engine  # SQLite: transactions start with BEGIN IMMEDIATE
    where: str  # what messages call the database (file path or URL without password)
    dialect: str  # 'sqlite' or 'postgresql'

    def error(self, action: str, exc: BaseException) -> StoreError:
        return StoreError(f"database at {self.where}: cannot {action}: {reason(exc)}")

    def open_error(self, exc: BaseException) -> StoreError:
        return StoreError(f"cannot open database at {self.where}: {reason(exc)}")

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self, action: str, *, conflict: str | None = None) -> Iterator[Connection]:
        """One write transaction; a driver error becomes StoreError naming `action` (a unique
        constraint violated becomes ConflictError(`conflict`) when that is given)."""
        try:
            with self.writer.begin() as conn:
                yield conn
        except IntegrityError as exc:
            if conflict is not None:
                raise ConflictError(conflict) from None
            raise self.error(action, exc) from exc
        except SQLAlchemyError as exc:
            raise self.error(action, exc) from exc

    @contextmanager
    def read(self, action: str) -> Iterator[Connection]:
        """A connection for reads; a driver error becomes StoreError naming `action`."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self.error(action, exc) from exc


def reason(exc: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's SQL echo and links."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return sqlite_pragmas.driver_reason(exc.orig)
    return str(exc).strip() or type(exc).__name__


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {url!r}: {exc}; expected e.g. {_SUPPORTED}") from None
    backend = parsed.get_backend_name()
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported database URL {describe(parsed)}: aicd stores run history in SQLite or "
            f"PostgreSQL, e.g. {_SUPPORTED}"
        )
    return parsed


def describe(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.render_as_string(hide_password=True)


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def connect(url: str) -> Database:
    """Create the engine (no connection is made yet) for a SQLAlchemy URL."""
    parsed = parse_url(url)
    where = describe(parsed)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite(parsed, where)
        return _postgresql(parsed, where)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(
            f"cannot open database at {where}: the driver for {parsed.drivername} is not installed "
            f"({exc}); for PostgreSQL: pip install 'psycopg[binary]'"
        ) from None


def _sqlite(url: URL, where: str) -> Database:
    kwargs: dict[str, Any] = {"connect_args": {"timeout": sqlite_pragmas.BUSY_TIMEOUT_S}}
    if _is_memory(url):
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"]["check_same_thread"] = False
    else:
        assert url.database is not None
        folder = Path(url.database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot open database at {where}: cannot create folder {folder}: {exc}"
            ) from None
        if not os.access(folder, os.W_OK):
            raise StoreError(f"cannot open database at {where}: folder {folder} is not writable")
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    writer = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
    return Database(engine=engine, writer=writer, where=where, dialect="sqlite")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The same settings as FastSqliteStore's connections (aicd.store.sqlite_pragmas);
    # SQLAlchemy's "begin" event below emits BEGIN itself.
    sqlite_pragmas.configure(dbapi_connection)


def _sqlite_on_begin(conn: Connection) -> None:
    # Writers take the write lock up front (waiting up to busy_timeout): a deferred
    # transaction that later writes can fail with "database is locked" at once.
    mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _postgresql(url: URL, where: str) -> Database:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    engine = create_engine(url, connect_args=connect_args)
    return Database(engine=engine, writer=engine, where=where, dialect="postgresql")
