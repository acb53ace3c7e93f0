"""Fixtures: the real `aicd server` on SQLite and on the real PostgreSQL.

`server` runs each test twice, on SQLite and on PostgreSQL; `server_sqlite` on SQLite only.
PostgreSQL: one fresh database per test module (aicd_srv_<random>, created through the
admin URL's database and dropped at the end), and one fresh schema per test inside it.
The admin URL is AICD_TEST_POSTGRES_URL or the local server's `test` database. An
unreachable PostgreSQL fails the tests; it never skips them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import ServerProc
from sqlalchemy.engine import Engine

from pg_testing import fresh_database


@pytest.fixture(scope="module")
def pg_server_database() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on a new, empty PostgreSQL database, dropped after the module."""
    with fresh_database("aicd_srv") as engine:
        yield engine


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
