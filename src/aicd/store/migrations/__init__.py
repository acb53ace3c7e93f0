"""Alembic migrations of the run-history database, run programmatically.

HEAD names the newest revision in ``versions/``. The store compares it with the
database's ``alembic_version`` row at every open and imports Alembic only when
they differ, so opening an up-to-date database stays cheap. When you add a
revision, bump HEAD (a test checks that it matches Alembic's head).
"""

from __future__ import annotations

from pathlib import Path

HEAD = "0006"
VERSION_TABLE = "alembic_version"
SCRIPT_LOCATION = Path(__file__).resolve().parent
