"""The escape suite's server: the real `aicd server` (SQLite and PostgreSQL), shared by a module's tests.

The server's helpers live with the server tests (tests/server); they are imported from there.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
