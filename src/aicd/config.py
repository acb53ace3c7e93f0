"""Settings: defaults that work with nothing set; AICD_* variables override."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AICD_", extra="ignore")

    # Where run history, logs, artifacts, cache and workspaces live.
    # Default: the project's own `.aicd/` folder.
    home: Path | None = None
    # SQLAlchemy URL; default: SQLite file `aicd.db` in home.
    database_url: str | None = None
    # Parallel jobs; default: CPU count.
    concurrency: int | None = None

    def home_for(self, project_dir: Path) -> Path:
        return (self.home or project_dir / ".aicd").resolve()

    def database_url_for(self, home: Path) -> str:
        return self.database_url or f"sqlite:///{home / 'aicd.db'}"

    def concurrency_or_default(self) -> int:
        return self.concurrency or os.cpu_count() or 1


def load_settings() -> Settings:
    return Settings()
