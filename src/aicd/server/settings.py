"""Server settings: flags over AICD_* environment variables over defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aicd.errors import ConfigError
from aicd.executors.sandbox import NETWORK_OFF, NETWORK_ON, NETWORK_VARIABLE, SandboxLimits

_TRUE = ("1", "true", "yes", "on")

DEFAULT_WEBHOOK_MAX_BODY_BYTES = 1024 * 1024
MAX_WEBHOOK_BODY_BYTES = 25 * 1024 * 1024  # GitHub's own limit on a payload
DEFAULT_DEPLOY_MAX_RELEASE_BYTES = 512 * 1024 * 1024


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
    # Folders under which projects may use local repositories (paths, file://), admins only;
    # AICD_ALLOWED_REPO_ROOTS (separated by ":") or --allowed-repo-root. None: no local repositories.
    allowed_repo_roots: tuple[Path, ...] = ()
    # The largest webhook body read (AICD_WEBHOOK_MAX_BODY_BYTES); bigger ones are refused with 413.
    webhook_max_body_bytes: int = DEFAULT_WEBHOOK_MAX_BODY_BYTES
    # The largest release archive a deploy job may send (AICD_DEPLOY_MAX_RELEASE_BYTES); bigger: 413.
    deploy_max_release_bytes: int = DEFAULT_DEPLOY_MAX_RELEASE_BYTES
    # A deployed service runs unsandboxed on this host, as the server's user: by default every
    # environment takes a deploy only from a protected ref's job or a maintainer. AICD_DEPLOY_ANY_REF=1
    # lets every developer and every branch's job deploy to environments that are not production.
    deploy_any_ref: bool = False
    # `aicd ui`: the UI of a local home (aicd.web.local): its projects too, no dispatcher, no admin made
    local_ui: bool = False
    # Jobs on workers (docs/workers.md): AICD_BROKER_URL (amqp://... or redis://...); None: every
    # job runs on this machine. AICD_QUEUE_PREFIX names the broker queues (several servers, one broker).
    broker_url: str | None = None
    queue_prefix: str = "aicd.jobs"
    lease_timeout_s: float = 30.0  # AICD_LEASE_TIMEOUT_S: a worker silent this long loses the attempt
    stuck_timeout_s: float = 3600.0  # AICD_STUCK_TIMEOUT_S: a job no worker took fails after this
    resend_s: float = 60.0  # AICD_RESEND_S: a job no worker took has its message sent again this often

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
        allowed_repo_roots: Sequence[Path | str] | None = None,
        webhook_max_body_bytes: int | None = None,
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
        if not allowed_repo_roots:
            raw = env.get("AICD_ALLOWED_REPO_ROOTS", "")
            allowed_repo_roots = [part for part in raw.split(os.pathsep) if part.strip()]
        roots = tuple(_repo_root(str(root)) for root in allowed_repo_roots)
        if webhook_max_body_bytes is None:
            raw = env.get("AICD_WEBHOOK_MAX_BODY_BYTES", "").strip()
            if raw:
                if not raw.isascii() or not raw.isdigit():
                    raise ConfigError(f"AICD_WEBHOOK_MAX_BODY_BYTES={raw!r}: expected a number of bytes")
                webhook_max_body_bytes = int(raw)
        body_cap = webhook_max_body_bytes
        if body_cap is None:
            body_cap = DEFAULT_WEBHOOK_MAX_BODY_BYTES
        if not 1024 <= body_cap <= MAX_WEBHOOK_BODY_BYTES:
            raise ConfigError(
                f"webhook body limit {body_cap} bytes: give 1024 to {MAX_WEBHOOK_BODY_BYTES} (25 MiB)"
            )
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
            allowed_repo_roots=roots,
            webhook_max_body_bytes=body_cap,
            deploy_max_release_bytes=_deploy_cap(env.get("AICD_DEPLOY_MAX_RELEASE_BYTES", "")),
            deploy_any_ref=env.get("AICD_DEPLOY_ANY_REF", "").strip().lower() in _TRUE,
            broker_url=env.get("AICD_BROKER_URL", "").strip() or None,
            queue_prefix=_queue_prefix(env.get("AICD_QUEUE_PREFIX", "")),
            lease_timeout_s=_seconds(env, "AICD_LEASE_TIMEOUT_S", 30.0, least=1.0),
            stuck_timeout_s=_seconds(env, "AICD_STUCK_TIMEOUT_S", 3600.0, least=1.0),
            resend_s=_seconds(env, "AICD_RESEND_S", 60.0, least=1.0),
        )


def _seconds(env: Mapping[str, str], name: str, default: float, *, least: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= least or value == float("inf"):
        raise ConfigError(f"{name}={raw!r}: expected a number of seconds, {least:g} or more")
    return value


def _queue_prefix(raw: str) -> str:
    text = raw.strip() or "aicd.jobs"
    if len(text) > 100 or not all(c.isascii() and (c.isalnum() or c in "._-") for c in text):
        raise ConfigError(f"AICD_QUEUE_PREFIX={text[:100]!r}: letters, digits and . _ - only, at most 100")
    return text


def _deploy_cap(raw: str) -> int:
    raw = raw.strip()
    if not raw:
        return DEFAULT_DEPLOY_MAX_RELEASE_BYTES
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1024:
        raise ConfigError(f"AICD_DEPLOY_MAX_RELEASE_BYTES={raw!r}: expected a number of bytes, 1024 or more")
    return int(raw)


def _hidden_paths(raw: str) -> tuple[Path, ...]:
    paths = tuple(Path(p.strip()) for p in raw.split(os.pathsep) if p.strip())
    for path in paths:
        if not path.is_absolute():
            raise ConfigError(f"AICD_JOB_HIDE: {str(path)!r} is not an absolute path")
    return paths


def _repo_root(text: str) -> Path:
    """An allowed root of local repositories: an existing folder, absolute, symlinks resolved."""
    path = Path(text.strip()).expanduser()
    if not path.is_absolute():
        raise ConfigError(f"allowed repository root {text!r}: give an absolute path")
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"allowed repository root {text!r}: {exc}") from None
    if not resolved.is_dir():
        raise ConfigError(f"allowed repository root {text!r}: not a folder")
    return resolved
