"""A Git checkout in every job, made so that nothing a job does reaches the user's repository.

GitLab gives each job a clone of the project at the pipeline's commit (detached ``HEAD``, the
pipeline's branch as ``refs/remotes/origin/<branch>``, the tags). aicd does the same without a
network and without copying objects:

- one private bare repository per pipeline run (``origin.git`` under the run's snapshot folder):
  the source repository's branches and tags as ``packed-refs``, its objects through
  ``objects/info/alternates`` (git never writes into an alternate). It is the jobs' ``origin``: a
  ``git fetch`` reads it, a ``git push`` lands there (or is refused in the sandbox, where it is
  bound read-only), never in the user's repository;
- one *template* per kind of checkout (``GIT_DEPTH``, ``GIT_SUBMODULE_STRATEGY``, the ref), made
  once per run: a ``.git`` folder written directly (``HEAD``, ``config``, ``packed-refs``,
  ``alternates`` to the private repository, ``shallow`` for ``GIT_DEPTH``) and one
  ``git read-tree -u`` that writes the index and the files;
- each job's workspace is a copy of the template (:meth:`Snapshot.materialize`): its ``.git`` is
  its own (a ``git commit``, ``git gc`` or ``rm -rf .git`` changes only the job's copy). The
  index's stat data are the template's, so the first ``git status`` re-reads the files.

Uncommitted changes (``aicd run`` without ``--commit``): ``HEAD`` is the commit, and the working
tree's changes to tracked files (staged or not; deleted files removed), plus untracked files with
``--untracked``, are applied on top as a dirty working tree: ``git diff`` and ``git status`` in a
job show them, as they would in the user's own checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aicd.errors import GitError
from aicd.vcs import GIT_REPO_ENV

# `empty` (GitLab 17.x): no checkout, an empty folder; aicd's `none` is empty too (fresh folders)
STRATEGIES = ("clone", "fetch", "none", "empty")
SUBMODULE_STRATEGIES = ("none", "normal", "recursive")
# git's own limit on nested alternates is 5; submodules nest at most this deep here
_MAX_NESTING = 5
_ENV_DROP = (*GIT_REPO_ENV, "GIT_CEILING_DIRECTORIES")
_ORIGIN_ALTERNATES = "origin-alternates"  # under the run's folder: see PipelineGit._prepare_origin


class NoCheckout(Exception):
    """The project cannot be checked out (not the top of a Git repository): jobs get a copy of its files."""


@dataclass(frozen=True)
class GitSettings:
    """What a job's ``GIT_*`` variables ask for, checked; ``warnings`` go to the job's log."""

    strategy: str = "fetch"
    depth: int | None = None  # None or 0: the whole history
    submodules: str = "none"
    clean_flags: str = "-ffdx"
    warnings: tuple[str, ...] = ()

    @property
    def checkout(self) -> bool:
        return self.strategy not in ("none", "empty")


def git_settings(job_vars: Mapping[str, str]) -> GitSettings:
    """``GIT_STRATEGY``, ``GIT_DEPTH``, ``GIT_SUBMODULE_STRATEGY``, ``GIT_CLEAN_FLAGS`` of a job.

    A value GitLab's runner would not accept gives a warning and the default, never a failure
    of aicd itself.
    """
    warnings: list[str] = []
    strategy = job_vars.get("GIT_STRATEGY", "").strip().lower() or "fetch"
    if strategy not in STRATEGIES:
        warnings.append(
            f"WARNING: GIT_STRATEGY={_short(strategy)}: expected clone, fetch, none or empty; using fetch"
        )
        strategy = "fetch"
    raw_depth = job_vars.get("GIT_DEPTH", "").strip()
    depth: int | None = None
    if raw_depth:
        if raw_depth.isascii() and raw_depth.isdigit() and len(raw_depth) <= 9:
            depth = int(raw_depth) or None
        else:
            warnings.append(
                f"WARNING: GIT_DEPTH={_short(raw_depth)}: expected a whole number; "
                "the whole history is fetched"
            )
    sub = job_vars.get("GIT_SUBMODULE_STRATEGY", "").strip().lower() or "none"
    if sub not in SUBMODULE_STRATEGIES:
        warnings.append(
            f"WARNING: GIT_SUBMODULE_STRATEGY={_short(sub)}: expected none, normal or recursive; using none"
        )
        sub = "none"
    clean = job_vars.get("GIT_CLEAN_FLAGS", "").strip() or "-ffdx"
    return GitSettings(strategy, depth, sub, clean, tuple(warnings))


def _short(value: str) -> str:
    return repr(value[:40])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env["LC_ALL"] = "C"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_OPTIONAL_LOCKS"] = "0"
    return env


def _git(cwd: Path | None, *args: str, git_dir: Path | None = None, work_tree: Path | None = None) -> bytes:
    cmd = ["git", "-c", "core.quotePath=false", "-c", "log.showSignature=false"]
    if git_dir is not None:
        cmd += ["--git-dir", str(git_dir)]
    if work_tree is not None:
        cmd += ["--work-tree", str(work_tree)]
    try:
        done = subprocess.run(
            [*cmd, *args],
            cwd=cwd,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env=_env(),
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]} could not run: {exc}") from exc
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {said[-1] if said else f'exit code {done.returncode}'}")
    return done.stdout


class _Started:
    """A git process started now and read later (:func:`_git`'s errors), so that two git
    processes that do not need each other run at once, on two cores."""

    def __init__(self, cwd: Path | None, *args: str, git_dir: Path | None = None) -> None:
        cmd = ["git", "-c", "core.quotePath=false", "-c", "log.showSignature=false"]
        if git_dir is not None:
            cmd += ["--git-dir", str(git_dir)]
        self.args = args
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [*cmd, *args],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_env(),
            )
        except OSError as exc:
            self.proc = None
            self.error: OSError | None = exc

    def output(self) -> bytes:
        """Its output; GitError as :func:`_git` raises it."""
        if self.proc is None:
            raise GitError(f"git {self.args[0]} could not run: {self.error}")
        try:
            out, err = self.proc.communicate(timeout=600)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise GitError(f"git {self.args[0]} could not run: {exc}") from exc
        if self.proc.returncode != 0:
            said = err.decode("utf-8", "replace").strip().splitlines()
            code = self.proc.returncode
            raise GitError(f"git {self.args[0]} failed: {said[-1] if said else f'exit code {code}'}")
        return out

    def stop(self) -> None:
        """Not needed after all: end it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@dataclass(frozen=True)
class SourceRepo:
    """A repository read, never written: its git folder (common dir) and its objects' folders."""

    git_dir: Path
    objects: tuple[Path, ...]  # its own objects folder first, then its alternates (transitively)

    @classmethod
    def open(cls, path: Path) -> SourceRepo:
        out = _git(path, "rev-parse", "--git-common-dir").decode().strip()
        git_dir = Path(os.path.realpath(path / out))
        return cls(git_dir, tuple(_object_dirs(git_dir / "objects")))

    @classmethod
    def at_git_dir(cls, git_dir: Path) -> SourceRepo:
        git_dir = Path(os.path.realpath(git_dir))
        return cls(git_dir, tuple(_object_dirs(git_dir / "objects")))


def _object_dirs(objects: Path) -> list[Path]:
    """``objects`` and what its ``info/alternates`` name, transitively (as git reads them)."""
    out: list[Path] = []
    todo = [Path(os.path.realpath(objects))]
    while todo and len(out) < 32:
        cur = todo.pop(0)
        if cur in out or not cur.is_dir():
            continue
        out.append(cur)
        try:
            lines = (cur / "info" / "alternates").read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                todo.append(Path(os.path.realpath(cur / line)))
    return out


@dataclass(frozen=True)
class Ref:
    """The pipeline's ref as a job's clone holds it."""

    branch: str | None = None
    tag: str | None = None


class PipelineGit:
    """The private origin of one pipeline run and the checkouts made from it (synchronous)."""

    def __init__(
        self,
        source: Path,
        root: Path,
        *,
        dirty_from: Path | None,
        untracked: bool = False,
        view: Callable[[Path], Path] | None = None,
    ) -> None:
        self.source_path = source
        # where a job sees a folder of objects (the sandbox: under /aicd/git, so that nothing of the
        # server's home shows, not even the names of its folders); None: where it is
        self.view = view
        self.root = root
        # the working tree whose uncommitted changes are applied (aicd run without --commit)
        self.dirty_from = dirty_from
        self.untracked = untracked
        self.skip: tuple[Path, ...] = ()
        self._source: SourceRepo | None = None
        self._origin: Path | None = None
        self._tags: list[tuple[str, str, str]] = []  # (object, peeled commit, refname)
        self._count = 0

    @property
    def origin(self) -> Path:
        assert self._origin is not None
        return self._origin

    def _seen(self, path: Path) -> Path:
        if self.view is None:
            return path
        if self._origin is not None and path.is_relative_to(self._origin):
            return self.view(self._origin) / path.relative_to(self._origin)
        return self.view(path)

    def read_only_paths(self) -> list[tuple[Path, Path]]:
        """What a sandboxed job must see (read-only) for its clone's objects, as (here, as the job
        sees it): the private origin, the source's object folders (and its submodules'), and the
        files laid over what would name a path the job cannot see (``/dev/null`` over an object
        folder's own ``info/alternates``, whose folders are all listed already)."""
        if self._origin is None or self._source is None:
            return []
        objects = list(self._source.objects)
        for sub in self._submodule_sources:
            objects += [p for p in sub.objects if p not in objects]
        pairs = [(self._origin, self._seen(self._origin))]
        if self.view is not None:
            seen = self._seen(self._origin) / "objects" / "info" / "alternates"
            pairs.append((self.root / _ORIGIN_ALTERNATES, seen))
        for path in objects:
            pairs.append((path, self._seen(path)))
            if self.view is not None and (path / "info" / "alternates").is_file():
                pairs.append((Path(os.devnull), self._seen(path) / "info" / "alternates"))
        return pairs

    _submodule_sources: list[SourceRepo]

    def _prepare_origin(self) -> None:
        if self._origin is not None:
            return
        self._submodule_sources = []
        # the branches and tags, asked at once (in the source's folder: the same refs as in its
        # git folder, which the next call finds)
        listing = _Started(
            self.source_path, "for-each-ref", "--format=%(objectname) %(*objectname) %(refname)",
            "refs/heads", "refs/tags",
        )  # fmt: skip
        try:
            self._open_source()
            listed = listing.output().decode("utf-8", "surrogateescape")
        finally:
            listing.stop()
        assert self._source is not None
        origin = self.root / "origin.git"
        _init_git_dir(origin, bare=True, alternates=self._source.objects)
        refs: list[tuple[str, str]] = []
        for line in listed.splitlines():
            parts = line.split(" ", 2)
            if len(parts) != 3:
                continue
            obj, peeled, name = parts
            refs.append((obj, name))
            if name.startswith("refs/tags/"):
                self._tags.append((obj, peeled or obj, name))
        _write_packed_refs(origin, refs)
        if self.view is not None:
            # The origin's alternates as a sandboxed job sees them, bound over its own. Written here,
            # once, before any job runs, and never again: every running job's sandbox binds this
            # very file, and a rewrite in place at each launch (as before) showed running jobs an
            # empty file for a moment; their git then found no objects ("unknown revision HEAD~1"
            # right after `git describe` had walked there).
            text = "".join(f"{self.view(p)}\n" for p in self._source.objects)
            (self.root / _ORIGIN_ALTERNATES).write_text(text, encoding="utf-8")
        self._origin = origin

    def _open_source(self) -> None:
        if self.dirty_from is not None:
            # one git process for both questions when the working tree is the source (aicd run)
            common = self.dirty_from == self.source_path
            try:
                asked = ("--show-toplevel", "--git-common-dir") if common else ("--show-toplevel",)
                lines = _git(self.dirty_from, "rev-parse", *asked).decode().splitlines()
            except GitError as exc:
                raise NoCheckout(str(exc)) from exc
            top = lines[0].strip() if lines else ""
            if os.path.realpath(top) != os.path.realpath(self.dirty_from):
                raise NoCheckout(f"{self.dirty_from} is a folder inside the repository at {top}")
            if common and len(lines) > 1:
                self._source = SourceRepo.at_git_dir(self.source_path / lines[1].strip())
        if self._source is None:
            self._source = SourceRepo.open(self.source_path)

    def checkout(self, sha: str, ref: Ref, settings: GitSettings) -> tuple[Path, list[str]]:
        """A new template folder: the checkout of ``sha`` as ``settings`` ask; (folder, warnings)."""
        self._prepare_origin()
        assert self._source is not None
        self._count += 1
        dest = self.root / f"checkout-{self._count}"
        dest.mkdir(parents=True)
        kept = _history(self._source.git_dir, sha, settings.depth) if settings.depth else None
        refs: list[tuple[str, str]] = []
        if ref.branch:
            refs.append((sha, f"refs/remotes/origin/{ref.branch}"))
        for obj, peeled, name in self._tags:
            if kept is None or peeled in kept[0]:
                refs.append((obj, name))
        if ref.tag and not any(name == f"refs/tags/{ref.tag}" for _o, name in refs):
            refs.append((sha, f"refs/tags/{ref.tag}"))
        git_dir = dest / ".git"
        _init_git_dir(
            git_dir, bare=False, alternates=(self.origin / "objects",), origin=self._seen(self.origin)
        )
        (git_dir / "HEAD").write_text(sha + "\n", encoding="ascii")
        # what `git checkout <sha>` records: `git branch` and `git status` say "HEAD detached at ..."
        (git_dir / "logs").mkdir()
        moved = f"checkout: moving from {ref.branch or ref.tag or 'main'} to {sha}"
        (git_dir / "logs" / "HEAD").write_text(
            f"{'0' * 40} {sha} aicd <aicd@localhost> {int(time.time())} +0000\t{moved}\n", encoding="utf-8"
        )
        _write_packed_refs(git_dir, refs)
        if kept is not None and kept[1]:
            (git_dir / "shallow").write_text("".join(f"{c}\n" for c in sorted(kept[1])), encoding="ascii")
        # the working tree's changes, asked while the files are written
        changes = None
        if self.dirty_from is not None:
            changes = _Started(self.dirty_from, "diff", "--name-only", "--no-renames", "-z", sha, "--")
        try:
            return self._fill(dest, git_dir, sha, settings, changes)
        finally:
            if changes is not None:
                changes.stop()

    def _fill(
        self, dest: Path, git_dir: Path, sha: str, settings: GitSettings, changes: _Started | None
    ) -> tuple[Path, list[str]]:
        assert self._source is not None
        warnings: list[str] = []
        _git(dest, "read-tree", "-u", "--reset", sha, git_dir=git_dir, work_tree=dest)
        if self.view is not None:  # checked out: from now on the objects are where the job sees them
            _write_alternates(git_dir, (self._seen(self.origin / "objects"),))
        if settings.submodules != "none":
            warnings += self._submodules(
                dest, self._source.git_dir, sha, recursive=settings.submodules == "recursive", level=1
            )
        if changes is not None:
            self._apply_changes(dest, changes)
        return dest, warnings

    def _submodules(self, tree: Path, git_dir: Path, sha: str, *, recursive: bool, level: int) -> list[str]:
        """Check out the submodules of ``tree`` (commit ``sha`` of ``git_dir``) from the source's own
        ``modules/`` folder: no network, as the user's checkout holds them."""
        listed = _git(None, "ls-tree", "-r", "-z", sha, git_dir=git_dir).split(b"\0")
        links = []
        for item in listed:
            if item.startswith(b"160000 commit "):
                head, _, raw_path = item.partition(b"\t")
                links.append((head.split(b" ")[2].decode(), raw_path.decode("utf-8", "surrogateescape")))
        if not links:
            return []
        names = _submodule_names(tree)
        warnings: list[str] = []
        for sub_sha, path in links:
            name = names.get(path, path)
            # both come from the commit (.gitmodules, the tree): untrusted. As git does
            # (CVE-2018-11235), a name or path that leaves its folder is refused: a name could
            # point the job's alternates at another repository's objects, a path (through a
            # symbolic link in the tree) outside the workspace.
            if not (_relative_inside(name) and _relative_inside(path)) or not _no_link_below(tree, path):
                warnings.append(
                    f"WARNING: submodule {_short(path)}: its name or path leaves its folder; skipped"
                )
                continue
            modules = git_dir / "modules" / name
            if not (modules / "objects").is_dir():
                warnings.append(
                    f"WARNING: submodule {path}: not in the source repository ({modules} is missing; "
                    "run `git submodule update --init` there); its folder is empty"
                )
                continue
            source = SourceRepo.at_git_dir(modules)
            self._submodule_sources.append(source)
            sub_tree = tree / path
            sub_tree.mkdir(parents=True, exist_ok=True)
            sub_git = sub_tree / ".git"
            _init_git_dir(sub_git, bare=False, alternates=source.objects)
            (sub_git / "HEAD").write_text(sub_sha + "\n", encoding="ascii")
            try:
                _git(sub_tree, "read-tree", "-u", "--reset", sub_sha, git_dir=sub_git, work_tree=sub_tree)
            except GitError as exc:
                warnings.append(f"WARNING: submodule {path}: cannot check out {sub_sha[:8]}: {exc}")
                continue
            if recursive and level < _MAX_NESTING:
                warnings += self._submodules(
                    sub_tree, source.git_dir, sub_sha, recursive=True, level=level + 1
                )
            if self.view is not None:
                _write_alternates(sub_git, tuple(self._seen(p) for p in source.objects))
        return warnings

    def _apply_changes(self, dest: Path, changes: _Started) -> None:
        """The working tree's changes against the commit (``changes``: the names git diff gives;
        and untracked files if asked), as files."""
        assert self.dirty_from is not None
        work = self.dirty_from
        changed = changes.output().split(b"\0")
        names = [n.decode("utf-8", "surrogateescape") for n in changed if n]
        if self.untracked:
            others = _git(work, "ls-files", "-z", "--others", "--exclude-standard").split(b"\0")
            names += [n.decode("utf-8", "surrogateescape") for n in others if n]
        prefixes = [".git/", ".aicd/"]
        for s in self.skip:
            try:
                rel = Path(os.path.realpath(s)).relative_to(os.path.realpath(work))
            except ValueError:
                continue
            if str(rel) != ".":
                prefixes.append(rel.as_posix() + "/")
        for name in names:
            if name.endswith("/") or any(name.startswith(p) for p in prefixes):
                continue
            src = work / name
            target = dest / name
            if os.path.isdir(src) and not os.path.islink(src):
                continue  # a submodule that moved: its own checkout stays as recorded
            if os.path.lexists(target) and (os.path.isdir(target) and not os.path.islink(target)):
                continue
            if not os.path.lexists(src):
                if os.path.lexists(target):
                    os.unlink(target)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(target):
                os.unlink(target)
            shutil.copy2(src, target, follow_symlinks=False)


def _relative_inside(value: str) -> bool:
    """A relative path that stays in its folder: no absolute path, no ``..``, no empty name."""
    parts = value.replace("\\", "/").split("/")
    return bool(value) and not value.startswith("/") and "\0" not in value and ".." not in parts


def _no_link_below(tree: Path, rel: str) -> bool:
    """No folder on the way from ``tree`` to ``tree/rel`` is a symbolic link."""
    here = tree
    for part in rel.split("/")[:-1]:
        here = here / part
        if here.is_symlink():
            return False
    return not (tree / rel).is_symlink()


def _submodule_names(tree: Path) -> dict[str, str]:
    """path -> name, from the checkout's ``.gitmodules``."""
    gm = tree / ".gitmodules"
    if not gm.is_file():
        return {}
    try:
        out = _git(tree, "config", "-z", "-f", str(gm), "--get-regexp", r"^submodule\..*\.path$")
    except GitError:
        return {}
    names: dict[str, str] = {}
    for item in out.split(b"\0"):
        key, _, value = item.decode("utf-8", "surrogateescape").partition("\n")
        if key.startswith("submodule.") and key.endswith(".path"):
            names[value] = key[len("submodule.") : -len(".path")]
    return names


def _history(git_dir: Path, sha: str, depth: int) -> tuple[set[str], set[str]]:
    """The commits ``git fetch --depth depth`` would bring (breadth first from ``sha``), and the
    shallow boundary: those kept whose parents are not."""
    keep: set[str] = set()
    boundary: set[str] = set()
    level = [sha]
    with subprocess.Popen(
        ["git", "--git-dir", str(git_dir), "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(),
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        for n in range(depth):
            nxt: list[str] = []
            for commit in level:
                if commit in keep:
                    continue
                keep.add(commit)
                proc.stdin.write(f"{commit}\n".encode())
                proc.stdin.flush()
                header = proc.stdout.readline().split()
                if len(header) < 3 or header[1] != b"commit":
                    raise GitError(f"commit {commit[:12]} is missing from the repository")
                body = proc.stdout.read(int(header[2]) + 1)
                parents = []
                for line in body.split(b"\n"):
                    if not line:
                        break
                    if line.startswith(b"parent "):
                        parents.append(line[7:].decode())
                if n == depth - 1 and parents:
                    boundary.add(commit)
                nxt += parents
            level = nxt
        proc.stdin.close()
    return keep, boundary


def _init_git_dir(path: Path, *, bare: bool, alternates: Iterable[Path], origin: Path | None = None) -> None:
    # a job's .git holds only what git needs to see a repository (objects/, refs/, HEAD): git makes
    # refs/heads, objects/pack... itself when a job writes there, and every folder here is copied
    # into every job's workspace (a mkdir costs 0.1-0.2 ms on some file systems)
    subs = (
        ("objects/info", "objects/pack", "refs/heads", "refs/tags", "info")
        if bare
        else ("objects/info", "refs")
    )
    for sub in subs:
        (path / sub).mkdir(parents=True, exist_ok=True)
    config = [
        "[core]",
        "\trepositoryformatversion = 0",
        "\tfilemode = true",
        f"\tbare = {'true' if bare else 'false'}",
        "\tlogallrefupdates = true",
    ]
    if origin is not None:
        config += [
            '[remote "origin"]',
            f"\turl = {origin}",
            "\tfetch = +refs/heads/*:refs/remotes/origin/*",
        ]
    (path / "config").write_text("\n".join(config) + "\n", encoding="utf-8")
    if bare:
        (path / "HEAD").write_text("ref: refs/heads/main\n", encoding="ascii")
    _write_alternates(path, alternates)


def _write_alternates(git_dir: Path, alternates: Iterable[Path]) -> None:
    lines = "".join(f"{p}\n" for p in alternates)
    (git_dir / "objects" / "info" / "alternates").write_text(lines, encoding="utf-8")


def _write_packed_refs(git_dir: Path, refs: Iterable[tuple[str, str]]) -> None:
    lines = sorted({(name, obj) for obj, name in refs})
    text = "# pack-refs with: sorted \n" + "".join(f"{obj} {name}\n" for name, obj in lines)
    (git_dir / "packed-refs").write_text(text, encoding="utf-8", errors="surrogateescape")
