"""Settings: defaults that work with nothing set; AICD_* variables override.

Read straight from the environment (not pydantic-settings, whose import
alone cost ~200 ms of every `aicd` start-up).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aicd.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """aicd's settings, from `AICD_*` environment variables and defaults."""

    # Where run history, logs, artifacts, cache and workspaces live.
    # Default: the project's own `.aicd/` folder.
    home: Path | None = None
    # SQLAlchemy URL; default: SQLite file `aicd.db` in home.
    database_url: str | None = None
    # Parallel jobs; default: the CPUs this process may use, plus 4 (`default_concurrency`).
    concurrency: int | None = None

    def home_for(self, project_dir: Path) -> Path:
        return (self.home or project_dir / ".aicd").resolve()

    def database_url_for(self, home: Path) -> str:
        return self.database_url or f"sqlite:///{home / 'aicd.db'}"

    def concurrency_or_default(self) -> int:
        return self.concurrency or default_concurrency()


def default_concurrency() -> int:
    """Jobs at once in a local run: the CPUs this process may use, plus 4. A job's slot is also
    spent in aicd's own work around its shell (its workspace made, its shell started by the
    helper process, its output read, its end recorded), which one event loop does for every job
    whatever the CPUs: a few slots more than CPUs keep the CPUs busy while it does. On 2 CPUs,
    200 independent quick jobs through the run daemon: 377 ms with 4 at once, 347 with 6, 343
    with 8 (medians of 10 rotating runs); CPUs + 2 had been measured before the helper existed
    (a 60-job DAG 13-15% faster with 4 than with 2)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus) + 4


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    concurrency = None
    raw = env.get("AICD_CONCURRENCY", "").strip()
    if raw:
        try:
            concurrency = int(raw)
        except ValueError:
            concurrency = 0
        if concurrency < 1:
            raise ConfigError(f"AICD_CONCURRENCY={raw!r}: expected a whole number of jobs, 1 or more")
    home = env.get("AICD_HOME", "").strip()
    url = env.get("AICD_DATABASE_URL", "").strip()
    return Settings(
        home=Path(home).expanduser() if home else None,
        database_url=url or None,
        concurrency=concurrency,
    )
