"""The client side of environments: where they live, starting their agents, preparing releases.

Environments live in the same home and database as `aicd run` and the model registry
(AICD_HOME / AICD_DATABASE_URL, else the project's `.aicd/`): a deploy job of a local pipeline and
`aicd env status` typed in the project afterwards see the same environments. On a server, jobs get
the server's home and database, and AICD_ENV_SCOPE (the project's path) keeps two projects'
`production` apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aicd.deploy import control
from aicd.deploy.agent import ERROR_FILE, EXIT_LOCKED, RELEASES
from aicd.errors import ConfigError, DeployError, NotFoundError

ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._/-]{0,99}\Z")  # GitLab: letters, digits, spaces, - _ / .
AGENT_START_TIMEOUT = 30.0
LOG_FILE = "agent.log"
COPY_IGNORE = shutil.ignore_patterns(".git", ".aicd", "__pycache__", ".pytest_cache", ".venv", "node_modules")
# Not passed to an agent: it outlives the job that starts it, and the server's orphan sweep
# recognises a job's processes by CI_JOB_ID.
_DROP_PREFIXES = ("CI_", "GITLAB_", "AICD_TOKEN", "AICD_SECRET_KEY", "AICD_SERVER")


@dataclass(frozen=True)
class Location:
    home: Path
    database_url: str
    scope: str = ""


def locate(cwd: Path, environ: Mapping[str, str] | None = None) -> Location:
    from aicd.delivery.registry import local_location

    env = os.environ if environ is None else environ
    home, url = local_location(cwd, env)
    return Location(home, url, env.get("AICD_ENV_SCOPE", "").strip())


def has_database(location: Location) -> bool:
    """False when the default SQLite file does not exist yet: nothing was ever deployed from here."""
    url = location.database_url
    return not (url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists())


def check_env_name(name: str) -> str:
    if not isinstance(name, str) or not ENV_NAME.match(name):
        raise ConfigError(
            f"environment name {name!r}: use 1-100 letters, digits, spaces, '.', '_', '/' or '-', "
            "starting with a letter or digit (e.g. production, review/feature-1)"
        )
    return name


def environment_dir(location: Location, name: str) -> Path:
    raw = f"{location.scope}/{name}" if location.scope else name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", raw)[:48]
    digest = hashlib.sha256(f"{location.scope}\0{name}".encode()).hexdigest()[:8]
    return location.home / "environments" / f"{slug}-{digest}"


def agent_socket(location: Location, name: str) -> Path:
    return control.socket_path(environment_dir(location, name))


def agent_running(location: Location, name: str) -> bool:
    return control.reachable(agent_socket(location, name))


def ensure_agent(
    location: Location,
    name: str,
    *,
    port: int | None = None,
    predictions: str | None = None,
    router: str | None = None,
    router_limits: Mapping[str, int] | None = None,
    feedback: Mapping[str, Any] | None = None,
) -> Path:
    """The control socket of the environment's agent, starting the agent if none answers."""
    check_env_name(name)
    state_dir = environment_dir(location, name)
    path = control.socket_path(state_dir)
    if control.reachable(path):
        return path
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = [
        sys.executable, "-m", "aicd.deploy.agent",
        "--state-dir", str(state_dir),
        "--database-url", location.database_url,
        "--env", name,
        "--scope", location.scope,
    ]  # fmt: skip
    if port:
        argv += ["--port", str(port)]
    if predictions:
        argv += ["--predictions", predictions]
    if router:
        argv += ["--router", router]
    if router_limits:
        argv += ["--router-limits", json.dumps(dict(router_limits))]
    if feedback:
        argv += ["--feedback", json.dumps(dict(feedback))]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    with contextlib.suppress(FileNotFoundError):
        (state_dir / ERROR_FILE).unlink()
    with open(state_dir / LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=state_dir,
            env=environ,
            start_new_session=True,
        )
    deadline = time.monotonic() + AGENT_START_TIMEOUT
    while time.monotonic() < deadline:
        if control.reachable(path):
            return path
        code = process.poll()
        if code is not None and code != EXIT_LOCKED:  # locked: another agent is starting; wait for it
            raise DeployError(f"environment {name}: its agent did not start: {_why(state_dir)}")
        time.sleep(0.05)
    raise DeployError(
        f"environment {name}: its agent did not answer within {AGENT_START_TIMEOUT:g}s; "
        f"see {state_dir / LOG_FILE}"
    )


def _why(state_dir: Path) -> str:
    with contextlib.suppress(OSError):
        text = (state_dir / ERROR_FILE).read_text().strip()
        if text:
            return text
    with contextlib.suppress(OSError):
        lines = (state_dir / LOG_FILE).read_text(errors="replace").strip().splitlines()
        return "\n".join(lines[-12:]) or "no output"
    return "no output"


def check_release(release_dir: Path) -> Path:
    """The release folder, or NotFoundError saying what to give instead."""
    source = Path(release_dir)
    if not source.is_dir():
        what = "is not a directory" if source.exists() else "does not exist"
        raise NotFoundError(
            f"release directory {source} {what}: give the folder holding the service's files "
            "(the pipeline's artifacts), e.g. `aicd deploy . --env staging`"
        )
    return source


def prepare_release(
    location: Location, name: str, release_dir: Path, config: Path | None
) -> tuple[Path, Path | None]:
    """Copy the release (and the aicd.yml it was deployed with) into the environment's own folder.

    A deploy job's workspace is deleted when the job ends; the copy lives as long as the revision.
    """
    source = check_release(release_dir)
    releases = environment_dir(location, name) / RELEASES
    releases.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    target = releases / f"release-{stamp}-{secrets.token_hex(3)}"
    try:
        shutil.copytree(source, target, ignore=COPY_IGNORE, symlinks=True)
    except (OSError, shutil.Error) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise DeployError(f"cannot copy the release {source} to {target}: {exc}") from None
    copied_config = None
    if config is not None and config.is_file():
        copied_config = target.with_name(target.name + ".aicd.yml")
        shutil.copyfile(config, copied_config)
    return target, copied_config


def ci_metadata(cwd: Path, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Who and what a deployment is: from GitLab's CI_* variables in a job, else from git here."""
    env = os.environ if environ is None else environ
    meta: dict[str, Any] = {
        "commit_sha": env.get("CI_COMMIT_SHA") or None,
        "ref": env.get("CI_COMMIT_REF_NAME") or None,
        "pipeline_id": env.get("CI_PIPELINE_ID") or None,
        "job_id": env.get("CI_JOB_ID") or None,
        "pipeline_url": env.get("CI_PIPELINE_URL") or None,
        "model_version": env.get("MODEL_VERSION") or None,
        "actor": env.get("GITLAB_USER_LOGIN") or env.get("USER") or "local",
        "commit_at": _timestamp(env.get("CI_COMMIT_TIMESTAMP", "")),
    }
    if meta["commit_sha"] is None:
        out = _git(cwd, "log", "-1", "--format=%H %ct")
        if out:
            sha, _, stamp = out.partition(" ")
            meta["commit_sha"] = sha
            meta["commit_at"] = float(stamp) if stamp.strip().isdigit() else None
            meta["ref"] = _git(cwd, "rev-parse", "--abbrev-ref", "HEAD") or None
    return meta


def commit_time(repo: Path, sha: str) -> float | None:
    """When commit `sha` of the git repository `repo` was made (None: unknown)."""
    out = _git(repo, "log", "-1", "--format=%ct", sha, "--") if Path(repo).is_dir() else ""
    return float(out) if out.isdigit() else None


def _timestamp(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
