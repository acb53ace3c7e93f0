"""SQLite connection settings, shared by both stores (stdlib only: no SQLAlchemy here).

Every connection, whichever store opens it: busy timeout, WAL, synchronous
NORMAL, foreign keys on, and autocommit at the driver level so that the store
itself says BEGIN (IMMEDIATE for writes).
"""

from __future__ import annotations

import sqlite3
import time

BUSY_TIMEOUT_S = 30.0  # read at connect time (tests lower it)


def configure(connection: sqlite3.Connection) -> None:
    """Apply aicd's settings to a new sqlite3 connection."""
    # The sqlite3 module's own implicit transactions would start deferred ones.
    connection.isolation_level = None
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        use_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def use_wal(cursor: sqlite3.Cursor) -> None:
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


def driver_reason(exc: BaseException) -> str:
    """A driver exception in its own words, saying how long a lock was waited for."""
    text = str(exc).strip()
    if "database is locked" in text:
        text += f" (another process held it for more than {BUSY_TIMEOUT_S:g} s)"
    return text or type(exc).__name__
