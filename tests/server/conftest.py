"""Fixtures: the real `aicd server` on SQLite and on the real PostgreSQL.

`server` runs each test twice, on SQLite and on PostgreSQL; `server_sqlite` on SQLite only.
PostgreSQL: one fresh database per test module (aicd_srv_<random>, created through the
admin URL's database and dropped at the end), and one fresh schema per test inside it.
The admin URL is AICD_TEST_POSTGRES_URL or the local server's `test` database. An
unreachable PostgreSQL fails the tests; it never skips them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import ServerProc
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _admin_url() -> URL:
    url = make_url(os.environ.get("AICD_TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


@pytest.fixture(scope="module")
def pg_server_database() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on a new, empty PostgreSQL database, dropped after the module."""
    admin_url = _admin_url()
    name = f"aicd_srv_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    why = ""
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except SQLAlchemyError as exc:
        why = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip()
        admin.dispose()
    if why:
        pytest.fail(
            f"PostgreSQL at {admin_url.host}:{admin_url.port or 5432} not reachable: {why}; "
            "start it or set AICD_TEST_POSTGRES_URL",
            pytrace=False,
        )
    engine = create_engine(admin_url.set(database=name), isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def database_url(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> str:
    """A URL of an empty database: a SQLite file in the home, or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'aicd.db'}"
    engine: Engine = request.getfixturevalue("pg_server_database")
    schema = f"s_{secrets.token_hex(4)}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = engine.url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def _server(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> Iterator[ServerProc]:
    proc = ServerProc(tmp_path / "home", database_url(request, tmp_path, backend))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(check=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProc]:
    """A running aicd server (poller on) with a fresh home and database; .admin_token is the admin's."""
    yield from _server(request, tmp_path, request.param)


@pytest.fixture
def server_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProc]:
    yield from _server(request, tmp_path, "sqlite")
