"""Fixtures: every store test runs on SQLite and on the real PostgreSQL.

Tests of the Store API (``backend`` + ``backend_url``) run on three backends:
RunStore (SQLAlchemy) on SQLite, RunStore on PostgreSQL, and FastSqliteStore
(stdlib sqlite3) on SQLite. Schema tests (``db_url``, ``migrated_url``) run
on the two databases.

PostgreSQL: one fresh database per test session (``aicd_test_<random>``,
created through the admin URL's database and dropped at the end), and one
fresh schema per test inside it, so each test starts from an empty database.
The admin URL is ``AICD_TEST_POSTGRES_URL`` or the local server's ``test``
database. An unreachable server fails the tests; it never skips them.
"""

from __future__ import annotations

import itertools
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from store_backends import BACKENDS, Backend

from aicd.store.migrate import upgrade
from pg_testing import fresh_database

_schemas = itertools.count(1)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on a new, empty database, dropped after the session."""
    with fresh_database("aicd_test") as engine:
        yield engine


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database (SQLite file in a folder that does not exist yet)."""
    return _new_url(request, tmp_path, request.param)


def _new_url(request: pytest.FixtureRequest, tmp_path: Path, dialect: str) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / '.aicd' / 'aicd.db'}"
    engine: Engine = request.getfixturevalue("pg_database")
    schema = f"t{next(_schemas)}_{secrets.token_hex(2)}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = engine.url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per session; tests get copies."""
    path = tmp_path_factory.mktemp("template") / "aicd.db"
    upgrade(f"sqlite:///{path}")  # disposes its engine: the WAL is checkpointed into the file
    return path


@pytest.fixture(scope="session")
def pg_migrated(pg_database: Engine) -> str:
    """URL of a PostgreSQL schema migrated once per session; tests truncate it."""
    with pg_database.connect() as conn:
        conn.exec_driver_sql('CREATE SCHEMA "shared"')
    url = pg_database.url.update_query_dict({"options": "-csearch_path=shared"})
    text = url.render_as_string(hide_password=False)
    upgrade(text)
    return text


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a database at head with no rows (faster than migrating per test)."""
    return _migrated_url(request, tmp_path, request.param)


def _migrated_url(request: pytest.FixtureRequest, tmp_path: Path, dialect: str) -> str:
    if dialect == "sqlite":
        path = tmp_path / "aicd.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_migrated")
    engine: Engine = request.getfixturevalue("pg_database")
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "TRUNCATE shared.projects, shared.pipelines, shared.jobs RESTART IDENTITY CASCADE"
        )
    return url


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def backend_url(backend: Backend, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a database at head with no rows, on the backend's database."""
    return _migrated_url(request, tmp_path, backend.dialect)


@pytest.fixture
def backend_new_url(backend: Backend, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database that does not exist yet, on the backend's database."""
    return _new_url(request, tmp_path, backend.dialect)
