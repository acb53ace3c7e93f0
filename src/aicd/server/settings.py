"""Server settings: flags over AICD_* environment variables over defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aicd.errors import ConfigError
from aicd.executors.sandbox import NETWORK_OFF, NETWORK_ON, NETWORK_VARIABLE, SandboxLimits

_TRUE = ("1", "true", "yes", "on")


def _default_concurrency() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ServerSettings:
    home: Path  # AICD_HOME or --home; default ~/.aicd
    database_url: str  # AICD_DATABASE_URL or sqlite:///{home}/aicd.db
    host: str = "127.0.0.1"
    port: int = 8080
    concurrency: int = field(default_factory=_default_concurrency)  # jobs at once, all pipelines
    poll: bool = True  # run the poller
    environments: bool = True  # monitor the environments and start their agents again after a reboot
    secret_key: str | None = None  # AICD_SECRET_KEY (Fernet key); else home/secret.key
    # jobs run unsandboxed, as the server's user (--unsafe-no-sandbox, AICD_UNSAFE_NO_SANDBOX=1)
    unsafe_no_sandbox: bool = False
    job_limits: SandboxLimits = field(default_factory=SandboxLimits)  # AICD_JOB_MAX_*
    job_network: bool = True  # AICD_JOB_NETWORK=none: jobs have no network unless they turn it on
    # AICD_JOB_HIDE=/etc/aicd.env:/opt/keys: files or folders of the system a job must not see
    job_hidden_paths: tuple[Path, ...] = ()

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin-token"

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        home: Path | str | None = None,
        database_url: str | None = None,
        host: str | None = None,
        port: int | None = None,
        concurrency: int | None = None,
        poll: bool | None = None,
        environments: bool | None = None,
        unsafe_no_sandbox: bool | None = None,
    ) -> ServerSettings:
        """Arguments (flags) win over the environment, which wins over defaults."""
        env = os.environ if environ is None else environ
        home_text = str(home) if home is not None else env.get("AICD_HOME", "").strip()
        home_path = Path(home_text).expanduser() if home_text else Path.home() / ".aicd"
        home_path = home_path.resolve()
        url = database_url or env.get("AICD_DATABASE_URL", "").strip() or f"sqlite:///{home_path / 'aicd.db'}"
        if concurrency is None:
            raw = env.get("AICD_CONCURRENCY", "").strip()
            if raw:
                try:
                    concurrency = int(raw)
                except ValueError:
                    concurrency = 0
                if concurrency < 1:
                    raise ConfigError(f"AICD_CONCURRENCY={raw!r}: expected a whole number of jobs, 1 or more")
        if concurrency is not None and concurrency < 1:
            raise ConfigError(f"concurrency {concurrency}: expected a whole number of jobs, 1 or more")
        if port is None:
            raw = env.get("AICD_PORT", "").strip()
            if raw:
                if not raw.isascii() or not raw.isdigit() or int(raw) > 65535:
                    raise ConfigError(f"AICD_PORT={raw!r}: expected a port number, 0 to 65535")
                port = int(raw)
        if port is not None and not 0 <= port <= 65535:
            raise ConfigError(f"port {port}: expected 0 to 65535")
        if unsafe_no_sandbox is None:
            unsafe_no_sandbox = env.get("AICD_UNSAFE_NO_SANDBOX", "").strip().lower() in _TRUE
        network = env.get(NETWORK_VARIABLE, "").strip().lower()
        if network not in NETWORK_ON and network not in NETWORK_OFF:
            raise ConfigError(f"{NETWORK_VARIABLE}={network!r}: expected 'on' or 'none'")
        return cls(
            home=home_path,
            database_url=url,
            host=host or env.get("AICD_HOST", "").strip() or "127.0.0.1",
            port=8080 if port is None else port,
            concurrency=concurrency or _default_concurrency(),
            poll=True if poll is None else poll,
            environments=True if environments is None else environments,
            secret_key=env.get("AICD_SECRET_KEY", "").strip() or None,
            unsafe_no_sandbox=unsafe_no_sandbox,
            job_limits=SandboxLimits.from_env(env),
            job_network=network in NETWORK_ON,
            job_hidden_paths=_hidden_paths(env.get("AICD_JOB_HIDE", "")),
        )


def _hidden_paths(raw: str) -> tuple[Path, ...]:
    paths = tuple(Path(p.strip()) for p in raw.split(os.pathsep) if p.strip())
    for path in paths:
        if not path.is_absolute():
            raise ConfigError(f"AICD_JOB_HIDE: {str(path)!r} is not an absolute path")
    return paths
