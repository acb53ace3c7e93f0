"""GitLab's predefined CI/CD variables, with values that make sense locally.

All are `expand=False` (GitLab sends predefined variables raw). Choices:

- `CI="true"` as everywhere; `GITLAB_CI="false"`: aicd is not GitLab, and
  scripts test `GITLAB_CI` to decide whether GitLab's API, registry and job
  token are there. The reference runner (gitlab-ci-local) sets "false" too
  (conformance cases include-rules, rules-curly-bracket-if depend on it).
- `CI_COMMIT_BEFORE_SHA` is all zeros, as GitLab sets it for pipelines that
  are not made by a push (a local run is like a manual run).
- The project path comes from the `origin` remote when there is one
  (`group/sub/name`), else `local/<directory name>`.
- URLs (`CI_PIPELINE_URL`, `CI_JOB_URL`, ...) point at `server_url`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import aicd
from aicd.pipeline.ir import Job, Variable
from aicd.pipeline.variables import expand, resolve
from aicd.vcs import GitInfo

DEFAULT_SERVER_URL = "http://localhost"
DEFAULT_JOB_TIMEOUT_S = 3600  # GitLab's default project timeout: 60 minutes

_NOT_SLUG = re.compile(r"[^a-z0-9]")
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")


def slugify(ref: str) -> str:
    """GitLab's CI_COMMIT_REF_SLUG: lowercase, everything but 0-9 a-z -> `-`,
    at most 63 bytes, no leading or trailing `-`."""
    return _NOT_SLUG.sub("-", ref.lower())[:63].strip("-")


def environment_slug(name: str) -> str:
    """GitLab's CI_ENVIRONMENT_SLUG: DNS-safe, starts with a letter, at most 24
    characters, no `--`, no trailing `-`. When this changes the name (or it is
    too long), it is cut to 17 characters and given a `-` and a 6-character
    suffix from the SHA-256 of the name, so distinct names stay distinct.
    """
    slug = _NOT_SLUG.sub("-", name.lower())
    if not slug[:1].isalpha():
        slug = "env-" + slug
    slug = re.sub(r"-{2,}", "-", slug)
    if len(slug) > 24 or slug != name:
        slug = slug[:17]
        if not slug.endswith("-"):
            slug += "-"
        import hashlib  # only for long environment names: not on every run's import path

        return slug + _base36(int(hashlib.sha256(name.encode()).hexdigest(), 16))[-6:]
    return slug.rstrip("-")


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


_TIERS = (
    (re.compile(r"(dev|review|trunk)", re.I), "development"),
    (re.compile(r"(test|tst|int|ac(ce|)pt|qa|qc|control|quality)", re.I), "testing"),
    (re.compile(r"(st(a|)g|mod(e|)l|pre|demo|non)", re.I), "staging"),
    (re.compile(r"(pr(o|)d|live)", re.I), "production"),
)


def guess_tier(name: str) -> str:
    """The deployment tier GitLab infers from an environment name."""
    for pattern, tier in _TIERS:
        if pattern.search(name):
            return tier
    return "other"


def _iso_utc(epoch: float) -> str:
    # as datetime.fromtimestamp(epoch, UTC) (rounded to the microsecond), without importing datetime
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(round(epoch, 6)))


def remote_project_path(url: str) -> str | None:
    """`group/sub/name` from a remote URL (https, ssh, scp-like), else None."""
    if not url:
        return None
    if "://" in url:
        path = urlsplit(url).path
        if url.startswith("file://"):
            return None
    else:
        m = _SCP_LIKE.match(url)
        if not m:
            return None
        path = m.group(2)
    path = path.strip("/").removesuffix(".git").strip("/")
    return path if "/" in path else None


def _server_parts(server_url: str) -> tuple[str, str, str]:
    parts = urlsplit(server_url)
    scheme = parts.scheme or "http"
    port = str(parts.port or (443 if scheme == "https" else 80))
    return scheme, parts.hostname or "localhost", port


def pipeline_variables(
    info: GitInfo,
    *,
    pipeline_id: int,
    pipeline_iid: int,
    source: str,
    project_dir: Path,
    created_at: float,
    server_url: str = DEFAULT_SERVER_URL,
    config_path: str = ".gitlab-ci.yml",
    builds_dir: Path | None = None,
    user_login: str | None = None,
    project_id: int = 1,
) -> list[Variable]:
    """The pipeline-wide predefined variables, lowest precedence, all raw."""
    project_dir = Path(project_dir).absolute()
    server_url = server_url.rstrip("/")
    scheme, host, port = _server_parts(server_url)
    name = project_dir.name or "project"
    remote_path = remote_project_path(info.remote_url)
    namespace = remote_path.rsplit("/", 1)[0] if remote_path else "local"
    project_path = f"{namespace}/{name}"
    project_url = f"{server_url}/{project_path}"
    login = user_login or _login()
    values: dict[str, str] = {
        "CI": "true",
        "GITLAB_CI": "false",
        "CI_SERVER": "yes",
        "CI_SERVER_URL": server_url,
        "CI_SERVER_HOST": host,
        "CI_SERVER_PORT": port,
        "CI_SERVER_PROTOCOL": scheme,
        "CI_API_V4_URL": f"{server_url}/api/v4",
        "CI_PROJECT_ID": str(project_id),
        "CI_PROJECT_NAME": name,
        "CI_PROJECT_TITLE": name,
        "CI_PROJECT_PATH": project_path,
        "CI_PROJECT_PATH_SLUG": slugify(project_path),
        "CI_PROJECT_NAMESPACE": namespace,
        "CI_PROJECT_ROOT_NAMESPACE": namespace.split("/")[0],
        "CI_PROJECT_URL": project_url,
        "CI_PROJECT_VISIBILITY": "private",
        "CI_PROJECT_DIR": str(project_dir),
        "CI_BUILDS_DIR": str(builds_dir if builds_dir is not None else project_dir.parent),
        "CI_CONFIG_PATH": config_path,
        "CI_REPOSITORY_URL": info.remote_url or project_dir.as_uri(),
        "CI_DEFAULT_BRANCH": info.default_branch,
        "CI_COMMIT_SHA": info.sha,
        "CI_COMMIT_SHORT_SHA": info.sha[:8],
        "CI_COMMIT_BEFORE_SHA": info.before_sha,
        "CI_COMMIT_REF_NAME": info.ref_name,
        "CI_COMMIT_REF_SLUG": slugify(info.ref_name),
        "CI_COMMIT_REF_PROTECTED": "false",
        "CI_COMMIT_MESSAGE": info.message,
        "CI_COMMIT_TITLE": info.title,
        "CI_COMMIT_DESCRIPTION": info.description,
        "CI_COMMIT_TIMESTAMP": info.timestamp,
        "CI_COMMIT_AUTHOR": info.author,
        "CI_PIPELINE_ID": str(pipeline_id),
        "CI_PIPELINE_IID": str(pipeline_iid),
        "CI_PIPELINE_SOURCE": source,
        "CI_PIPELINE_CREATED_AT": _iso_utc(created_at),
        "CI_PIPELINE_URL": f"{project_url}/-/pipelines/{pipeline_id}",
        "CI_SHARED_ENVIRONMENT": "true",
        "CI_RUNNER_DESCRIPTION": "aicd",
        "CI_RUNNER_TAGS": "[]",
        "CI_RUNNER_VERSION": aicd.__version__,
        "CI_RUNNER_EXECUTABLE_ARCH": _arch(),
        "GITLAB_USER_ID": "1",
        "GITLAB_USER_LOGIN": login,
        "GITLAB_USER_NAME": info.author_name or login,
        "GITLAB_USER_EMAIL": info.author_email,
    }
    if info.tag is not None:
        values["CI_COMMIT_TAG"] = info.tag
    elif info.branch is not None:
        values["CI_COMMIT_BRANCH"] = info.branch
    return [Variable(key=k, value=v, expand=False) for k, v in values.items()]


def _login() -> str:
    import getpass  # once per run

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


def _arch() -> str:
    system = os.uname()  # what platform.system() and platform.machine() read, without importing platform
    machine = system.machine.lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "i386": "386"}.get(machine, machine)
    return f"{system.sysname.lower()}/{arch}"


def job_variables(
    job: Job,
    *,
    job_id: int,
    pipeline_vars: Mapping[str, str],
    started_at: float | None = None,
    overrides: Mapping[str, str] | None = None,
    job_url_base: str | None = None,
) -> list[Variable]:
    """The job's predefined variables, all raw.

    `pipeline_vars` are the pipeline's variables by final value (predefined,
    at least); `overrides` those that beat the job's YAML variables (CLI,
    project variables). Both, with the job's YAML variables resolved, expand
    `environment:name` and `environment:url`. `CI_JOB_URL` is `job_url_base`
    followed by the job id (default: `CI_PROJECT_URL/-/jobs/<id>`).
    """
    project_url = pipeline_vars.get("CI_PROJECT_URL", f"{DEFAULT_SERVER_URL}/local/project")
    start = time.time() if started_at is None else started_at
    timeout = job.timeout_s if job.timeout_s is not None else DEFAULT_JOB_TIMEOUT_S
    values: dict[str, str] = {
        "CI_JOB_ID": str(job_id),
        "CI_JOB_NAME": job.name,
        "CI_JOB_NAME_SLUG": slugify(job.name),
        "CI_JOB_GROUP_NAME": job.base_name,
        "CI_JOB_STAGE": job.stage,
        "CI_JOB_STATUS": "running",
        "CI_JOB_URL": f"{job_url_base}{job_id}" if job_url_base else f"{project_url}/-/jobs/{job_id}",
        "CI_JOB_STARTED_AT": _iso_utc(start),
        "CI_JOB_TIMEOUT": str(int(timeout)),
        "CI_NODE_TOTAL": str(job.node_total or 1),
    }
    if job.node_index is not None:
        values["CI_NODE_INDEX"] = str(job.node_index)
    if job.when == "manual":
        values["CI_JOB_MANUAL"] = "true"
    if job.image:
        values["CI_JOB_IMAGE"] = job.image
    env = job.environment
    if env is not None:
        layers = [Variable(key=k, value=v, expand=False) for k, v in pipeline_vars.items()]
        layers += [Variable(key=k, value=v, expand=False) for k, v in values.items()]
        layers += job.variables
        layers += [Variable(key=k, value=v, expand=False) for k, v in (overrides or {}).items()]
        lookup = resolve(layers)
        name = expand(env.name, lookup)
        values["CI_ENVIRONMENT_NAME"] = name
        values["CI_ENVIRONMENT_SLUG"] = environment_slug(name)
        if env.url:
            values["CI_ENVIRONMENT_URL"] = expand(env.url, lookup)
        values["CI_ENVIRONMENT_TIER"] = env.deployment_tier or guess_tier(name)
        values["CI_ENVIRONMENT_ACTION"] = env.action
    return [Variable(key=k, value=v, expand=False) for k, v in values.items()]
