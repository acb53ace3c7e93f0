"""A fresh PostgreSQL database for a test scope: made on the machine's server, dropped after.

AICD_TEST_POSTGRES_URL names the server (default: the local one, user postgres, database test).
An unreachable server fails the test with a clear message; it never skips.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def admin_url() -> URL:
    url = make_url(os.environ.get("AICD_TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


@contextmanager
def fresh_database(prefix: str) -> Iterator[Engine]:
    """An AUTOCOMMIT engine on a new, empty database named `<prefix>_<random>`, dropped afterwards."""
    server = admin_url()
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    why = ""
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except SQLAlchemyError as exc:
        why = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip()
        admin.dispose()
    if why:
        pytest.fail(
            f"PostgreSQL at {server.host}:{server.port or 5432} not reachable: {why}; "
            "start it or set AICD_TEST_POSTGRES_URL",
            pytrace=False,
        )
    engine = create_engine(server.set(database=name), isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
