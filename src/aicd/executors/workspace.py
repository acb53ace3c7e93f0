"""Job workspaces: one source snapshot per executor, one fresh copy of it per job.

The snapshot holds the project's files the way GitLab and ``gitlab-ci-local
--shell-isolation`` give them to a job: the tracked files of the working tree as
they are now (untracked-but-not-ignored ones too only when asked: ``aicd run
--untracked``), or the tree of one commit (``git archive``). Untracked content
(data sets, another tool's state) is never copied into every job unasked. It has
no ``.git``: a job works on files, never on the user's repository.

Every job then gets ``home/builds/<pipeline_id>/<job-slug>/``, a real copy
(never hard links: a job that edits a file must not change the snapshot or
another job's workspace). Because that folder usually lives under the
project's own ``.aicd/``, a ``git`` command run by a job would otherwise walk
up and find the user's repository; the executor sets
``GIT_CEILING_DIRECTORIES`` to the workspace's parent so git stops there.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from aicd.errors import GitError

# Above this many files one `cp -a` process is faster than copying from Python.
_CP_THRESHOLD = 1500


# Files up to this size are kept in memory and written straight into each
# workspace (much faster than copying file to file); bigger ones are copied.
_INLINE_MAX = 1024 * 1024
_INLINE_TOTAL = 128 * 1024 * 1024


@dataclass(frozen=True)
class SnapshotFile:
    """One file of a workspace snapshot."""

    path: str  # relative
    mode: int  # permission bits
    data: bytes | None  # contents when small enough to keep in memory
    link: str | None = None  # target, for a symlink


@dataclass(frozen=True)
class Snapshot:
    """A read-only copy of the project's source files."""

    root: Path
    dirs: tuple[str, ...]  # relative, parents before children
    entries: tuple[SnapshotFile, ...]
    file_set: frozenset[str]  # relative paths of files and symlinks

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(e.path for e in self.entries)

    @classmethod
    def scan(cls, root: Path) -> Snapshot:
        dirs: list[str] = []
        found: list[tuple[str, os.stat_result]] = []
        stack = [""]
        while stack:
            cur = stack.pop()
            with os.scandir(root / cur if cur else root) as it:
                for entry in it:
                    rel = f"{cur}/{entry.name}" if cur else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        dirs.append(rel)
                        stack.append(rel)
                    else:
                        found.append((rel, entry.stat(follow_symlinks=False)))
        dirs.sort()
        # contents are kept in memory only when the Python copy will be used
        budget = _INLINE_TOTAL if len(found) <= _CP_THRESHOLD else 0
        entries: list[SnapshotFile] = []
        for rel, st in found:
            path = os.path.join(root, rel)
            if stat.S_ISLNK(st.st_mode):
                entries.append(SnapshotFile(rel, 0o777, None, os.readlink(path)))
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # sockets, fifos, devices are not source files
            data = None
            if st.st_size <= min(_INLINE_MAX, budget):
                with open(path, "rb") as fh:
                    data = fh.read()
                budget -= len(data)
            entries.append(SnapshotFile(rel, stat.S_IMODE(st.st_mode), data))
        return cls(root, tuple(dirs), tuple(entries), frozenset(e.path for e in entries))

    def materialize(self, workspace: Path) -> None:
        """Make ``workspace`` a fresh copy of the snapshot (removing what was there).

        Files get the snapshot's permission bits and the current time, as a
        fresh ``git clone`` gives them.
        """
        fresh_dir(str(workspace))
        if len(self.entries) > _CP_THRESHOLD and sys.platform.startswith("linux"):
            # one GNU `cp` (reflinks where the file system can) beats a Python loop here
            try:
                subprocess.run(
                    ["cp", "-R", "-P", "--preserve=mode", "--reflink=auto", f"{self.root}/.", str(workspace)],
                    check=True,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                )
                return
            except (OSError, subprocess.CalledProcessError):
                remove_tree(workspace)
                workspace.mkdir()
        ws = str(workspace)
        src = str(self.root)
        join = os.path.join
        for d in self.dirs:
            os.mkdir(join(ws, d))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        for e in self.entries:
            target = join(ws, e.path)
            if e.data is not None:
                _write_all(os.open(target, flags, e.mode), e.data)
            elif e.link is not None:
                os.symlink(e.link, target)
            else:
                shutil.copyfile(join(src, e.path), target, follow_symlinks=False)
                os.chmod(target, e.mode)


def snapshot_worktree(
    project_dir: Path, dest: Path, skip: tuple[Path, ...] = (), *, untracked: bool = False
) -> Snapshot:
    """Copy the tracked files of the working tree (as they are now) to ``dest``, as GitLab and
    gitlab-ci-local give a job; with ``untracked``, also untracked files that are not ignored.

    ``skip``: folders left out (aicd's own home when it is inside the project).
    Files that are tracked but deleted from the working tree are left out.
    """
    from aicd.vcs import tracked_files

    names = tracked_files(project_dir, untracked=untracked)
    prefixes = []
    for s in skip:
        try:
            rel = s.resolve().relative_to(project_dir.resolve())
        except ValueError:
            continue
        if str(rel) != ".":
            prefixes.append(rel.as_posix() + "/")
    dest.mkdir(parents=True, exist_ok=True)
    src_s, dest_s = str(project_dir), str(dest)
    made: set[str] = {""}
    for name in names:
        if name == ".git" or name.startswith(".git/") or any(name.startswith(p) for p in prefixes):
            continue
        src = os.path.join(src_s, name)
        if not os.path.lexists(src):
            continue
        parent = os.path.dirname(name)
        if parent not in made:
            os.makedirs(os.path.join(dest_s, parent), exist_ok=True)
            made.add(parent)
        if os.path.isdir(src) and not os.path.islink(src):
            # a submodule: take its files, not its .git
            shutil.copytree(
                src,
                os.path.join(dest_s, name),
                symlinks=True,
                ignore=shutil.ignore_patterns(".git"),
                dirs_exist_ok=True,
            )
            continue
        shutil.copy2(src, os.path.join(dest_s, name), follow_symlinks=False)
    return Snapshot.scan(dest)


def snapshot_commit(project_dir: Path, commit: str, dest: Path) -> Snapshot:
    """Extract the tree of ``commit`` to ``dest`` with ``git archive``."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(
        ["git", "-C", str(project_dir), "archive", "--format=tar", commit],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert archive.stdout is not None
    try:
        tar = subprocess.run(
            ["tar", "-x", "-f", "-", "-C", str(dest)],
            stdin=archive.stdout,
            capture_output=True,
        )
    finally:
        archive.stdout.close()
        err = archive.stderr.read() if archive.stderr else b""
        if archive.stderr:
            archive.stderr.close()
        code = archive.wait()
    if code != 0:
        msg = err.decode(errors="replace").strip()
        raise GitError(f"cannot read commit {commit!r} of {project_dir}: {msg or 'git archive failed'}")
    if tar.returncode != 0:
        msg = tar.stderr.decode(errors="replace").strip()
        raise GitError(f"cannot extract commit {commit!r} into {dest}: {msg}")
    return Snapshot.scan(dest)


def fresh_dir(path: str) -> None:
    """Make ``path`` an empty folder: what was there removed, missing parents made. (The common
    case, nothing there and the parent present, is one system call.)"""
    try:
        os.mkdir(path)
        return
    except FileExistsError:
        remove_tree(Path(path))
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkdir(path)


def write_new_file(path: str, text: str, mode: int = 0o666) -> None:
    """Write ``text`` (UTF-8) to ``path``, replacing what is there, making missing parent folders."""
    data = text.encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, flags, mode)
    _write_all(fd, data)


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to the open file ``fd``, which is then closed."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a folder (or file), making read-only folders writable first if needed."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
        return

    def onerror(func: object, p: str, exc: object) -> None:
        parent = os.path.dirname(p)
        try:
            os.chmod(parent, 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)


def copy_tree(src: Path, dst: Path) -> int:
    """Merge the tree at ``src`` into ``dst`` (files overwrite); returns files copied."""
    if not src.is_dir():
        return 0
    copied = 0
    src_s, dst_s = str(src), str(dst)
    stack = [""]
    os.makedirs(dst_s, exist_ok=True)
    while stack:
        cur = stack.pop()
        with os.scandir(os.path.join(src_s, cur) if cur else src_s) as it:
            for entry in it:
                rel = f"{cur}/{entry.name}" if cur else entry.name
                target = os.path.join(dst_s, rel)
                if entry.is_dir(follow_symlinks=False):
                    if os.path.lexists(target) and (os.path.islink(target) or not os.path.isdir(target)):
                        os.unlink(target)
                    os.makedirs(target, exist_ok=True)
                    stack.append(rel)
                    continue
                if os.path.lexists(target) and (os.path.islink(target) or os.path.isdir(target)):
                    remove_tree(Path(target))
                shutil.copy2(entry.path, target, follow_symlinks=False)
                copied += 1
    return copied


_SLUG_BAD = re.compile(r"[^a-z0-9._-]+")


def slug(name: str) -> str:
    """A folder name for a job: lowercase, [a-z0-9._-], unique per name.

    Names that needed changing ('test 1/3', 'build: [linux]') get a short hash
    so two different names never share a folder.
    """
    s = _SLUG_BAD.sub("-", name.lower()).strip("-.")[:60] or "job"
    if s != name:
        import hashlib  # for names that needed changing only: not on every run's import path

        s += "-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return s


def prune_builds(builds: Path, keep: int) -> int:
    """Remove the workspaces of all but the `keep` newest pipelines.

    Workspace folders are named by pipeline id; the newest are kept so a
    person can look into what the last runs left behind. Returns how many
    pipeline folders were removed.
    """
    try:
        ids = sorted((int(p.name) for p in builds.iterdir() if p.name.isdigit()), reverse=True)
    except OSError:
        return 0
    for old in ids[keep:]:
        remove_tree(builds / str(old))
    return max(0, len(ids) - keep)
