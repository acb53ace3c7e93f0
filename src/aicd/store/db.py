"""Engines: SQLite (WAL, busy timeout, BEGIN IMMEDIATE for writes) or PostgreSQL.

Also the one place that turns SQLAlchemy exceptions into :class:`StoreError`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from aicd.errors import StoreError

BUSY_TIMEOUT_S = 30.0
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


def reason(exc: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's SQL echo and links."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        text = str(exc.orig).strip()
        if "database is locked" in text:
            text += f" (another process held it for more than {BUSY_TIMEOUT_S:g} s)"
        return text or type(exc.orig).__name__
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
    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
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
    # Let SQLAlchemy's "begin" event emit BEGIN itself (the sqlite3 module's own
    # implicit transactions would otherwise start deferred ones).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent; a no-op once done).

    SQLite does not call the busy handler while another process switches a new
    database's journal mode: "database is locked" comes at once, so retry here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    mode = "unknown"
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if mode not in ("wal", "memory"):
                mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode in ("wal", "memory"):
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(f"cannot switch to WAL journal mode (still {mode!r})")
        time.sleep(0.005)


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
