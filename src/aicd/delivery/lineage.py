"""Where a model version comes from: commit, ref, pipeline, job, project, who.

Inside a CI job the facts come from the job's variables without being told:
GitLab CI's (and `aicd run`'s) ``CI_*``, or GitHub Actions' ``GITHUB_*``.
Outside CI: the git commit and branch of the working directory, if it is in
a repository.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Lineage:
    commit_sha: str | None = None
    ref: str | None = None
    pipeline_id: int | None = None
    job_id: int | None = None
    project: str | None = None
    pipeline_url: str | None = None
    user: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], cwd: Path | None = None) -> Lineage:
        """From CI variables; outside CI from git in `cwd` (default: the current folder)."""
        env = {k: v.strip() for k, v in environ.items() if v and v.strip()}
        user = current_user(env)
        if "CI_COMMIT_SHA" in env or "CI_PIPELINE_ID" in env:
            return cls(
                commit_sha=_sha(env.get("CI_COMMIT_SHA")),
                ref=env.get("CI_COMMIT_REF_NAME") or env.get("CI_COMMIT_TAG") or env.get("CI_COMMIT_BRANCH"),
                pipeline_id=_int(env.get("CI_PIPELINE_ID")),
                job_id=_int(env.get("CI_JOB_ID")),
                project=env.get("CI_PROJECT_PATH") or env.get("CI_PROJECT_DIR"),
                pipeline_url=env.get("CI_PIPELINE_URL"),
                user=user,
            )
        if "GITHUB_SHA" in env:
            server = env.get("GITHUB_SERVER_URL", "https://github.com")
            repo = env.get("GITHUB_REPOSITORY")
            run = env.get("GITHUB_RUN_ID")
            return cls(
                commit_sha=_sha(env.get("GITHUB_SHA")),
                ref=env.get("GITHUB_REF_NAME"),
                pipeline_id=_int(run),
                job_id=None,
                project=repo,
                pipeline_url=f"{server}/{repo}/actions/runs/{run}" if repo and run else None,
                user=user,
            )
        return cls._from_git(cwd or Path.cwd(), user)

    @classmethod
    def _from_git(cls, cwd: Path, user: str | None) -> Lineage:
        from aicd.errors import GitError
        from aicd.vcs import git_info

        try:
            info = git_info(cwd)
        except GitError:
            return cls(user=user)
        if not info.is_repo:
            return cls(user=user)
        return cls(
            commit_sha=info.sha,
            ref=info.branch or info.tag or info.ref_name,
            project=info.remote_url or _toplevel(cwd),
            user=user,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_user(environ: Mapping[str, str]) -> str | None:
    """Who acts: the CI user (GitLab, GitHub), else the login name."""
    for key in ("GITLAB_USER_LOGIN", "GITHUB_ACTOR", "USER"):
        value = environ.get(key, "").strip()
        if value:
            return value
    return _login()


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def _sha(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.lower()
    if not text or set(text) == {"0"}:
        return None  # outside git, `aicd run` says all zeros: no commit
    return text[:64]


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _toplevel(cwd: Path) -> str | None:
    import subprocess

    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None
