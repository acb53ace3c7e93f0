"""Bare mirrors of the projects' repositories: home/mirrors/<project id>.git.

One mirror per project, made with ``git clone --mirror`` the first time and
brought up to date with one ``git fetch --prune`` from the project's current
URL afterwards (so a changed URL needs nothing else). Syncs of one mirror are
serialised by a lock (the poller and a webhook may sync at the same time).
Messages never show credentials from a URL.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aicd.errors import GitError
from aicd.vcs import GIT_REPO_ENV

if TYPE_CHECKING:
    from aicd.store.projects_repo import ProjectRecord

FETCH_TIMEOUT_S = 300.0
LOCAL_TIMEOUT_S = 60.0
_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^@/\s]*@")
# A URL's query (?private_token=..., &access_token=...): any parameter's value may be a credential.
_URL_QUERY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s?#'\"]*\?)([^\s#'\"]*)")
_PARAM_VALUE = re.compile(r"(^|[&;])([^=&;]*=)?[^&;]+")
_SHA = re.compile(r"^[0-9a-f]{7,64}$")

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def git_env() -> dict[str, str]:
    """The environment for git talking to remotes: never prompts, English messages."""
    env = {k: v for k, v in os.environ.items() if k not in GIT_REPO_ENV}
    env.update(
        LC_ALL="C",
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="true",
        SSH_ASKPASS="true",
        GIT_SSH_COMMAND=env.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=20"),
    )
    return env


def redact(text: str) -> str:
    """`text` with credentials removed from URLs: user:password@, and the values of query
    parameters (`?private_token=...` becomes `?private_token=***`)."""
    text = _CREDENTIALS.sub(r"\1", text)
    if "?" not in text:
        return text
    return _URL_QUERY.sub(_hide_query, text)


def _hide_query(match: re.Match[str]) -> str:
    return match.group(1) + _PARAM_VALUE.sub(_hide_value, match.group(2))


def _hide_value(match: re.Match[str]) -> str:
    return match.group(1) + (match.group(2) or "") + "***"


def git_message(stderr: bytes | str) -> str:
    """git's own error in one line, credentials removed."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:", "ERROR:"))]
    chosen = fatal or lines or ["git failed"]
    return redact("; ".join(dict.fromkeys(chosen)))


def run_git(args: list[str], *, cwd: Path | None = None, timeout: float = LOCAL_TIMEOUT_S) -> bytes:
    """Run git; its stdout. GitError with git's message on failure or timeout."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env=git_env(),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed (or not on PATH): the server needs it") from None
    except ValueError as exc:  # a NUL character in an argument: no git command can take it
        raise GitError(f"git {args[0]}: {exc} in its arguments") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took more than {timeout:g} s") from None
    if proc.returncode != 0:
        raise GitError(git_message(proc.stderr))
    return proc.stdout


def mirror_path(home: Path, project: ProjectRecord) -> Path:
    return Path(home) / "mirrors" / f"{project.id}.git"


def _lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def local_repo_path(url: str) -> Path | None:
    """The folder a local repository URL (an absolute path, or file://) names; None for a remote
    URL. GitError for a file:// URL git would read differently than this (a host, %, ?, #)."""
    if url.lower().startswith("file://"):
        parsed = urlsplit(url)
        # What git reads is the text after file://: no decoding, query or fragment to second-guess.
        if parsed.netloc not in ("", "localhost") or any(c in url for c in "%?#"):
            raise GitError(
                f"repository URL {redact(url)!r}: a file:// URL names a local folder "
                "(file:///path/to/repo), without host, '%', '?' or '#'"
            )
        return Path(parsed.path or "/")
    if url.startswith("/"):
        return Path(url)
    return None


def in_home(home: Path, url: str) -> bool:
    """Whether a local repository URL leads into the server's home (symlinks and `..` resolved)."""
    path = local_repo_path(url)
    if path is None:
        return False
    try:
        real, server_home = path.resolve(), Path(home).resolve()
    except (OSError, RuntimeError):
        return False
    return real == server_home or real.is_relative_to(server_home)


def sync_mirror(home: Path, project: ProjectRecord) -> Path:
    """Clone (first time) or fetch the project's repository into its mirror. GitError; a local
    URL into the server's home (another project's mirror, the keys) is never fetched."""
    path = mirror_path(home, project)
    where = redact(project.repo_url)
    if in_home(home, project.repo_url):
        raise GitError(
            f"cannot fetch {where} for project {project.name!r}: the repository is inside the "
            "server's home, whose files no project may read; an admin must change its URL"
        )
    with _lock(path):
        try:
            if (path / "HEAD").is_file():
                run_git(
                    [
                        "-c",
                        "fetch.showForcedUpdates=false",  # a walk per moved ref that nobody reads
                        "fetch",
                        "--prune",
                        "--quiet",
                        "--no-write-fetch-head",
                        "--",
                        project.repo_url,
                        *_REFSPECS,
                    ],
                    cwd=path,
                    timeout=FETCH_TIMEOUT_S,
                )
            else:
                _clone(project.repo_url, path)
        except GitError as exc:
            why = str(exc).replace(str(path.parent), "<mirrors>")  # no server path in an API error
            raise GitError(f"cannot fetch {where} for project {project.name!r}: {why}") from None
    return path


def _clone(url: str, path: Path) -> None:
    """clone --mirror into a temporary folder, then move it in place (no half mirror is left)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.rmtree(path)  # a leftover without HEAD: not a usable mirror
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        target = scratch / "mirror.git"
        run_git(["clone", "--mirror", "--quiet", "--", url, str(target)], timeout=FETCH_TIMEOUT_S)
        target.rename(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def list_refs(mirror: Path) -> dict[str, str]:
    """Branches and tags: "refs/heads/main" -> commit sha (annotated tags peeled)."""
    out = run_git(
        ["for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)", "refs/heads", "refs/tags"],
        cwd=mirror,
    )
    refs: dict[str, str] = {}
    for line in out.decode(errors="replace").splitlines():
        parts = line.split("\0")
        if len(parts) == 3:
            refs[parts[0]] = parts[2] or parts[1]
    return refs


def resolve_ref(mirror: Path, ref: str, *, project: str | None = None) -> str:
    """The commit sha of a branch, tag (short or full name) or sha in the mirror. GitError, naming
    `project` (never the mirror's path: the message may go to an API caller)."""
    if not ref or ref.startswith("-") or any(c.isspace() or c in "^~:\x7f" or ord(c) < 32 for c in ref):
        raise GitError(f"{ref!r} is not a branch, tag or commit")
    if ref.startswith("refs/"):
        candidates = [ref]
    else:
        candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}"]
        if _SHA.fullmatch(ref):
            candidates.append(ref)
    for candidate in candidates:
        try:
            out = run_git(["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], cwd=mirror)
        except GitError:
            continue
        return out.decode().strip()
    where = f"project {project!r}" if project is not None else "the repository"
    raise GitError(f"{ref!r} is not a branch, tag or commit of {where}")


def is_reachable(mirror: Path, sha: str, ref: str) -> bool:
    """Whether commit `sha` is `ref` ("refs/heads/x", "refs/tags/v1") or one of its ancestors."""
    if not _SHA.fullmatch(sha) or not ref.startswith("refs/"):
        return False
    try:
        run_git(["merge-base", "--is-ancestor", sha, f"{ref}^{{commit}}"], cwd=mirror)
    except GitError:  # exit 1: not an ancestor; 128: no such ref or commit
        return False
    return True


def resolve_branch_or_tag(mirror: Path, ref: str, *, project: str) -> tuple[str, str]:
    """(full ref name, commit sha) of a branch or tag ("main", "refs/heads/main", "v1",
    "refs/tags/v1"); a branch wins over a tag of the same name, as in git. GitError otherwise
    (a commit sha is not a ref: GitLab runs pipelines for branches and tags)."""
    if ref.startswith(("refs/heads/", "refs/tags/")):
        candidates = [ref]
    else:
        candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    for candidate in candidates:
        try:
            out = run_git(["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], cwd=mirror)
        except GitError:
            continue
        return candidate, out.decode().strip()
    raise GitError(f"{ref!r} is not a branch or tag of project {project!r}")


def has_commit(mirror: Path, sha: str) -> bool:
    """Whether the mirror holds commit `sha`."""
    if not _SHA.fullmatch(sha):
        return False
    try:
        run_git(["cat-file", "-e", f"{sha}^{{commit}}"], cwd=mirror)
    except GitError:
        return False
    return True
