"""Alembic environment: migrations run on the connection aicd hands over.

aicd calls Alembic from :mod:`aicd.store.migrate` with an open connection in
``config.attributes["connection"]``, already inside the transaction (and lock)
that makes the upgrade atomic. Without one (a developer running the alembic
command by hand), the URL comes from the ``sqlalchemy.url`` option or
``AICD_DATABASE_URL``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from aicd.store.migrations import VERSION_TABLE
from aicd.store.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("aicd migrations run online only (they need a database connection)")
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    from aicd.store.db import connect

    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("AICD_DATABASE_URL")
    if not url:
        raise RuntimeError("set sqlalchemy.url or AICD_DATABASE_URL to migrate a database by hand")
    database = connect(url)
    try:
        with database.writer.begin() as connection:
            _run(connection)
    finally:
        database.dispose()


main()
