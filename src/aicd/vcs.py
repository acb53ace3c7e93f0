"""Git facts about a project: the commit, its refs, its files, what it changed.

Few git processes per question (git_info: 3, two of them at once; tracked_files: 2,
changed_files: 2, commit_changes: 1). Outside a repository (or in one with no commits) the
answers are the local defaults the pipeline needs, never an error; a commit
that does not exist is a GitError.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aicd.errors import GitError

ZERO_SHA = "0" * 40
FALLBACK_BRANCH = "main"

# Variables a calling git (a hook, `git rebase -x`) or aicd's own environment may set that would
# point a git process at another repository: every git aicd runs, and every job, goes without them.
GIT_REPO_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


@dataclass(frozen=True)
class GitInfo:
    """A commit of the project's repository, as the predefined variables describe it."""

    is_repo: bool
    sha: str
    short_sha: str
    ref_name: str
    branch: str | None
    tag: str | None
    message: str
    title: str
    description: str
    timestamp: str  # ISO 8601 with offset (committer date)
    author: str  # 'Name <email>'
    default_branch: str
    # GitLab's CI_COMMIT_BEFORE_SHA: the previous tip of the ref before the
    # push; all zeros for pipelines not made by a push (as a local run is).
    before_sha: str
    parent_sha: str = ""  # first parent; "" for a root commit or outside git
    remote_url: str = ""  # URL of the `origin` remote, credentials removed; "" if none
    author_name: str = ""
    author_email: str = ""


class _NotARepo(Exception):
    pass


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in GIT_REPO_ENV}
    env["LC_ALL"] = "C"
    env["GIT_OPTIONAL_LOCKS"] = "0"
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _git(project_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run git in project_dir. _NotARepo when it is not in a repository (or git is missing)."""
    try:
        proc = subprocess.run(
            ["git", "-c", "log.showSignature=false", "-c", "core.quotePath=false", *args],
            cwd=project_dir,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env=_env(),
            timeout=120,
            check=False,
        )
    except FileNotFoundError as exc:  # no git, or no such directory
        if not Path(project_dir).is_dir():
            raise GitError(f"{project_dir}: no such directory") from None
        raise _NotARepo() from exc
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args[:2])} in {project_dir} took more than 120 s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        if "not a git repository" in err:
            raise _NotARepo()
        if "dubious ownership" in err:
            raise GitError(
                f"git refuses to read {project_dir}: it belongs to another user. "
                f"Run: git config --global --add safe.directory {project_dir}"
            )
    return proc


def _first_line(data: bytes) -> str:
    text = data.decode(errors="replace").strip()
    return text.splitlines()[0] if text else "git failed"


def _check_rev(commit: str) -> None:
    if not commit or commit.startswith("-") or any(c.isspace() for c in commit):
        raise GitError(f"{commit!r} is not a commit: give a branch, tag or commit SHA")


# --- git_info ----------------------------------------------------------------------

_LOG_FORMAT = "%H%x00%P%x00%cI%x00%an%x00%ae%x00%D%x00%B"
_REFS_FORMAT = "--format=%(refname)%00%(symref)%00%(HEAD)"
_CREDENTIALS = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^@/]*@")


def _fallback(project_dir: Path, branch: str = FALLBACK_BRANCH) -> GitInfo:
    from datetime import datetime  # a folder that is not a repository: rare, off the run's path

    return GitInfo(
        is_repo=False,
        sha=ZERO_SHA,
        short_sha=ZERO_SHA[:8],
        ref_name=branch,
        branch=branch,
        tag=None,
        message="",
        title="",
        description="",
        timestamp=datetime.now().astimezone().isoformat(timespec="seconds"),
        author="",
        default_branch=branch,
        before_sha=ZERO_SHA,
    )


def git_info(project_dir: Path, commit: str | None = None) -> GitInfo:
    """Describe `commit` (default HEAD) of the repository holding project_dir.

    Not a repository, or no commit yet: local defaults (is_repo False, sha of
    zeros, branch "main" or the unborn branch's name). A `commit` that does
    not exist: GitError.
    """
    if commit is not None:
        _check_rev(commit)
    # the origin's URL and the branches (the current one, origin/HEAD) do not depend on the
    # commit's description: asked at once, beside `git log`
    remote = _start_git(project_dir, "config", "--get", "remote.origin.url")
    listing = _start_git(project_dir, "for-each-ref", _REFS_FORMAT, "refs/heads", "refs/remotes/origin/HEAD")
    try:
        return _git_info(project_dir, commit, remote, listing)
    finally:
        for proc in (remote, listing):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def _start_git(project_dir: Path, *args: str) -> subprocess.Popen[bytes] | None:
    try:
        return subprocess.Popen(
            ["git", "-c", "log.showSignature=false", "-c", "core.quotePath=false", *args],
            cwd=project_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_env(),
        )
    except OSError:  # no git, or no such directory: _git says which
        return None


def _output(proc: subprocess.Popen[bytes] | None) -> tuple[int, str]:
    """(exit status, standard output) of a git started by _start_git; (-1, "") if it did not start."""
    if proc is None:
        return -1, ""
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        return -1, ""
    return proc.returncode, out.decode(errors="replace")


def _remote_url(remote: subprocess.Popen[bytes] | None) -> str:
    code, out = _output(remote)
    if code != 0:
        return ""
    return _CREDENTIALS.sub(r"\1", out.strip())


def _git_info(
    project_dir: Path,
    commit: str | None,
    remote: subprocess.Popen[bytes] | None,
    listing: subprocess.Popen[bytes] | None,
) -> GitInfo:
    rev = commit or "HEAD"
    try:
        proc = _git(
            project_dir, "log", "-1", "--no-color", "--decorate=full", f"--format={_LOG_FORMAT}",
            f"{rev}^{{commit}}", "--",
        )  # fmt: skip
    except _NotARepo:
        return _fallback(project_dir)
    if proc.returncode != 0:
        if commit is None:  # no commit yet: keep the name of the unborn branch
            head = _git(project_dir, "symbolic-ref", "-q", "HEAD")
            name = head.stdout.decode(errors="replace").strip().removeprefix("refs/heads/")
            return _fallback(project_dir, name if head.returncode == 0 and name else FALLBACK_BRANCH)
        raise GitError(
            f"commit {commit!r} not found in {project_dir}: {_first_line(proc.stderr)}. "
            "Give an existing branch, tag or commit SHA."
        )
    fields = proc.stdout.decode("utf-8", errors="replace").split("\0", 6)
    if len(fields) < 7:
        raise GitError(f"unexpected output from git log in {project_dir}")
    sha, parents, timestamp, author_name, author_email, decorations, body = fields
    refs = _parse_decorations(decorations)

    # The current branch (the checked-out one, when HEAD is not attached at this commit) and
    # origin/HEAD, from the listing started beside `git log`.
    current = refs.head_branch
    origin_head: str | None = None
    for line in _output(listing)[1].splitlines():
        name, symref, star = [*line.split("\0"), "", ""][:3]
        if name == "refs/remotes/origin/HEAD" and symref.startswith("refs/remotes/origin/"):
            origin_head = symref.removeprefix("refs/remotes/origin/")
        elif star == "*" and name.startswith("refs/heads/") and not refs.head_branch:
            current = name.removeprefix("refs/heads/")
    default_branch = origin_head or current or FALLBACK_BRANCH

    branch, tag = _choose_ref(commit, refs, current, default_branch)
    ref_name = tag or branch or sha[:8]

    remote_url = _remote_url(remote)

    message = body.rstrip("\n")
    title, _, rest = message.partition("\n")
    description = rest.strip("\n") if len(title) < 100 else message
    return GitInfo(
        is_repo=True,
        sha=sha,
        short_sha=sha[:8],
        ref_name=ref_name,
        branch=branch,
        tag=tag,
        message=message,
        title=title,
        description=description,
        timestamp=timestamp,
        author=f"{author_name} <{author_email}>",
        default_branch=default_branch,
        before_sha=ZERO_SHA,
        parent_sha=parents.split(" ")[0] if parents else "",
        remote_url=remote_url,
        author_name=author_name,
        author_email=author_email,
    )


@dataclass
class _Refs:
    """The branches and tags at a commit (from `git log`'s decorations)."""

    head_branch: str | None  # HEAD -> refs/heads/X: HEAD is attached to X, at this commit
    branches: list[str]
    tags: list[str]
    remote_branches: list[str]  # origin/X tips at this commit (without origin/)


def _parse_decorations(text: str) -> _Refs:
    refs = _Refs(None, [], [], [])
    for item in text.split(", ") if text else []:
        if item.startswith("HEAD -> "):
            name = item.removeprefix("HEAD -> ")
            if name.startswith("refs/heads/"):
                refs.head_branch = name.removeprefix("refs/heads/")
                refs.branches.append(refs.head_branch)
        elif item.startswith("tag: refs/tags/"):
            refs.tags.append(item.removeprefix("tag: refs/tags/"))
        elif item.startswith("refs/heads/"):
            refs.branches.append(item.removeprefix("refs/heads/"))
        elif item.startswith("refs/remotes/origin/") and item != "refs/remotes/origin/HEAD":
            refs.remote_branches.append(item.removeprefix("refs/remotes/origin/"))
    return refs


def _natural(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


def _choose_ref(
    commit: str | None, refs: _Refs, current: str | None, default_branch: str
) -> tuple[str | None, str | None]:
    """(branch, tag) of the pipeline: a branch pipeline, a tag pipeline, or neither."""
    if commit is None and refs.head_branch:
        return refs.head_branch, None
    if commit is not None:
        name = commit.removeprefix("refs/heads/")
        if name in refs.branches:
            return name, None
        name = commit.removeprefix("refs/tags/")
        if name in refs.tags:
            return None, name
        if current is not None and current in refs.branches:
            return current, None
    if refs.tags:
        return None, max(refs.tags, key=_natural)
    for candidates in (refs.branches, refs.remote_branches):
        if candidates:
            if default_branch in candidates:
                return default_branch, None
            return sorted(candidates)[0], None
    return None, None


# --- files ----------------------------------------------------------------------------


def walk_files(root: Path) -> list[str]:
    """Every file under root as sorted relative POSIX paths; no `.git` dirs, no top `.aicd`."""
    out: list[str] = []
    stack: list[tuple[str, str]] = [("", str(root))]
    while stack:
        rel, directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if entry.name == ".git" or (not rel and entry.name == ".aicd"):
                    continue
                stack.append((f"{rel}{entry.name}/", entry.path))
            else:
                out.append(f"{rel}{entry.name}")
    out.sort()
    return out


def _split_z(data: bytes) -> list[str]:
    return [os.fsdecode(p) for p in data.split(b"\0") if p]


def tracked_files(project_dir: Path, *, untracked: bool = True) -> list[str]:
    """The project's files: those git tracks and still in the work tree, plus (with
    `untracked`) untracked files that are not ignored. Sorted relative POSIX paths,
    `.aicd/` left out. Outside git: every file except `.git` and `.aicd`.
    """
    others = ("--others", "--exclude-standard") if untracked else ()
    try:
        listed = _git(project_dir, "ls-files", "-z", "--cached", *others)
        if listed.returncode != 0:
            raise GitError(f"git ls-files failed in {project_dir}: {_first_line(listed.stderr)}")
        deleted = _git(project_dir, "ls-files", "-z", "--deleted")
    except _NotARepo:
        return walk_files(project_dir)
    gone = set(_split_z(deleted.stdout)) if deleted.returncode == 0 else set()
    out: set[str] = set()
    for path in _split_z(listed.stdout):
        if path in gone or path == ".aicd" or path.startswith(".aicd/"):
            continue
        if path.endswith("/"):  # an untracked nested repository: its files
            out.update(path + sub for sub in walk_files(project_dir / path))
        else:
            out.add(path)
    return sorted(out)


def changed_files(project_dir: Path, commit: str | None = None) -> list[str] | None:
    """Files `commit` (default HEAD) changed against its first parent (added,
    modified, deleted; both sides of a rename). None for a root commit, a
    repository without commits, or outside git. GitError if `commit` does not exist.
    """
    if commit is not None:
        _check_rev(commit)
    rev = commit or "HEAD"
    try:
        proc = _git(project_dir, "rev-list", "--parents", "-n", "1", f"{rev}^{{commit}}", "--")
    except _NotARepo:
        return None
    if proc.returncode != 0:
        if commit is None:
            return None
        raise GitError(f"commit {commit!r} not found in {project_dir}: {_first_line(proc.stderr)}")
    shas = proc.stdout.decode().split()
    if len(shas) < 2:
        return None
    return _diff_names(project_dir, shas[1], shas[0])


def commit_changes(project_dir: Path, info: GitInfo) -> list[str] | None:
    """:func:`changed_files` of the commit ``info`` describes (:func:`git_info` of the same
    repository): its first parent is known, so one git process instead of two."""
    if not info.is_repo or not info.parent_sha:
        return None
    return _diff_names(project_dir, info.parent_sha, info.sha)


def changed_files_between(project_dir: Path, base: str, commit: str | None = None) -> list[str] | None:
    """Files that differ between `base` and `commit` (default HEAD), for
    `rules:changes:compare_to`. None outside git; GitError if a ref does not exist.
    """
    _check_rev(base)
    if commit is not None:
        _check_rev(commit)
    try:
        proc = _git(
            project_dir,
            "rev-parse",
            "--verify",
            "--end-of-options",
            f"{base}^{{commit}}",
        )
        if proc.returncode != 0:
            raise GitError(f"{base!r} is not a branch, tag or commit of {project_dir}")
        target = _git(
            project_dir, "rev-parse", "--verify", "--end-of-options", f"{commit or 'HEAD'}^{{commit}}"
        )
        if target.returncode != 0:
            if commit is None:
                return None
            raise GitError(f"commit {commit!r} not found in {project_dir}")
        return _diff_names(project_dir, proc.stdout.decode().strip(), target.stdout.decode().strip())
    except _NotARepo:
        return None


def _diff_names(project_dir: Path, old: str, new: str) -> list[str]:
    try:
        diff = _git(
            project_dir, "diff-tree", "-r", "-z", "--no-commit-id", "--name-only", "--no-renames",
            "--no-ext-diff", "--relative", old, new,
        )  # fmt: skip
    except _NotARepo:
        raise GitError(f"{project_dir} is no longer a git repository") from None
    if diff.returncode != 0:
        raise GitError(f"git diff-tree failed in {project_dir}: {_first_line(diff.stderr)}")
    return list(dict.fromkeys(_split_z(diff.stdout)))
