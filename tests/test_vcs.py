"""Git facts from real repositories made in temp dirs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aicd.errors import GitError
from aicd.vcs import ZERO_SHA, changed_files, changed_files_between, git_info, tracked_files

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str, date: str = "2024-05-01T12:00:00+02:00") -> str:
    env = {**ENV, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    proc = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


class Repo:
    """main: c1 (root) - c2 (tag v1.0 annotated, v0.9 light) - c3 (rename) - merge; feature at c3."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        git(root, "init", "-q", "-b", "main")
        write(root, {"a.txt": "a\n", ".gitignore": "*.log\nbuild/\n", "keep.txt": "k\n"})
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "Initial commit")
        self.c1 = git(root, "rev-parse", "HEAD")
        write(root, {"a.txt": "a2\n", "src/b.py": "print()\n", "dir with space/ü.txt": "u\n"})
        git(root, "add", "-A")
        git(
            root,
            "commit",
            "-q",
            "-m",
            "Add b\n\nMore commit text\nsecond line\n",
            date="2024-05-02T08:30:00-05:00",
        )
        self.c2 = git(root, "rev-parse", "HEAD")
        git(root, "tag", "-a", "-m", "release", "v1.0")
        git(root, "tag", "v0.9")
        git(root, "mv", "a.txt", "c.txt")
        git(root, "rm", "-q", "keep.txt")
        git(root, "commit", "-q", "-m", "x" * 120 + "\n\nbody")
        self.c3 = git(root, "rev-parse", "HEAD")
        git(root, "branch", "feature")
        git(root, "checkout", "-q", "-b", "side", self.c2)
        write(root, {"side.txt": "s\n"})
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "side work")
        self.side = git(root, "rev-parse", "HEAD")
        git(root, "checkout", "-q", "main")
        git(root, "merge", "-q", "--no-ff", "-m", "Merge side", "side")
        self.merge = git(root, "rev-parse", "HEAD")
        # work tree state: untracked, ignored, deleted, aicd's own folder
        write(root, {"new.txt": "n\n", "debug.log": "l\n", "build/out.bin": "b\n", ".aicd/runs/1.json": "{}"})
        (root / "src/b.py").unlink()

    def worktree(self, name: str, rev: str) -> Path:
        path = self.root.parent / name
        if not path.exists():
            git(self.root, "worktree", "add", "-q", "--detach", str(path), rev)
        return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return Repo(tmp_path_factory.mktemp("vcs") / "repo")


# --- git_info ---------------------------------------------------------------------------


def test_branch_head(repo: Repo) -> None:
    info = git_info(repo.root)
    assert info.is_repo
    assert info.sha == repo.merge
    assert info.short_sha == repo.merge[:8]
    assert (info.ref_name, info.branch, info.tag) == ("main", "main", None)
    assert info.message == "Merge side"
    assert info.title == "Merge side"
    assert info.description == ""
    assert info.timestamp == "2024-05-01T12:00:00+02:00"
    assert info.author == "Ada Lovelace <ada@example.com>"
    assert (info.author_name, info.author_email) == ("Ada Lovelace", "ada@example.com")
    assert info.default_branch == "main"  # no origin/HEAD: the current branch
    assert info.before_sha == ZERO_SHA  # not a push
    assert info.parent_sha == repo.c3  # first parent
    assert info.remote_url == ""


def test_commit_given_by_sha_with_tags_and_message(repo: Repo) -> None:
    info = git_info(repo.root, repo.c2)
    assert info.sha == repo.c2
    assert (info.ref_name, info.branch, info.tag) == ("v1.0", None, "v1.0")  # highest tag
    assert info.message == "Add b\n\nMore commit text\nsecond line"
    assert info.title == "Add b"
    assert info.description == "More commit text\nsecond line"
    assert info.timestamp == "2024-05-02T08:30:00-05:00"
    assert info.parent_sha == repo.c1
    assert info.default_branch == "main"


def test_commit_given_by_tag_or_branch_name(repo: Repo) -> None:
    assert git_info(repo.root, "v0.9").tag == "v0.9"  # the tag asked for
    assert git_info(repo.root, "v1.0").sha == repo.c2  # annotated tag peeled to its commit
    feature = git_info(repo.root, "feature")
    assert (feature.sha, feature.branch, feature.tag, feature.ref_name) == (
        repo.c3,
        "feature",
        None,
        "feature",
    )
    assert git_info(repo.root, "refs/heads/feature").branch == "feature"


def test_long_title_makes_description_the_whole_message(repo: Repo) -> None:
    info = git_info(repo.root, repo.c3)
    assert info.title == "x" * 120
    assert info.description == info.message == "x" * 120 + "\n\nbody"


def test_root_commit(repo: Repo) -> None:
    info = git_info(repo.root, repo.c1)
    assert info.parent_sha == ""
    assert info.title == "Initial commit"
    assert (info.branch, info.tag) == (None, None)
    assert info.ref_name == repo.c1[:8]  # no ref points at it


def test_missing_commit_is_a_git_error(repo: Repo) -> None:
    with pytest.raises(GitError, match="commit 'no-such-branch' not found"):
        git_info(repo.root, "no-such-branch")
    with pytest.raises(GitError, match="is not a commit"):
        git_info(repo.root, "--all")
    with pytest.raises(GitError, match="not found"):
        git_info(repo.root, "HEAD^{tree}")


def test_detached_at_tag(repo: Repo) -> None:
    wt = repo.worktree("at-tag", "v1.0")
    info = git_info(wt)
    assert (info.sha, info.tag, info.branch, info.ref_name) == (repo.c2, "v1.0", None, "v1.0")


def test_detached_at_branch_tip(repo: Repo) -> None:
    wt = repo.worktree("at-side", repo.side)
    info = git_info(wt)
    assert (info.sha, info.tag, info.branch, info.ref_name) == (repo.side, None, "side", "side")


def test_detached_elsewhere_uses_short_sha(repo: Repo) -> None:
    wt = repo.worktree("at-root", repo.c1)
    info = git_info(wt)
    assert (info.tag, info.branch, info.ref_name) == (None, None, repo.c1[:8])
    assert info.default_branch == "main"  # no origin/HEAD, detached: the fallback


def test_origin_head_and_remote_url(tmp_path: Path, repo: Repo) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo.root), str(clone))
    git(clone, "update-ref", "refs/remotes/origin/develop", repo.c3)
    git(clone, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/develop")
    git(clone, "config", "remote.origin.url", "https://user:s3cret@gitlab.example.com/ml/model.git")
    git(clone, "checkout", "-q", "--detach", repo.c3)
    info = git_info(clone)
    assert info.default_branch == "develop"
    assert info.remote_url == "https://gitlab.example.com/ml/model.git"
    assert "s3cret" not in repr(info)
    # detached at c3: the tips here are feature (origin), develop (origin); default branch preferred
    assert info.branch == "develop"


def test_not_a_repository(tmp_path: Path) -> None:
    info = git_info(tmp_path)
    assert not info.is_repo
    assert info.sha == ZERO_SHA
    assert (info.branch, info.ref_name, info.default_branch, info.tag) == ("main", "main", "main", None)
    assert info.before_sha == ZERO_SHA
    assert "T" in info.timestamp and ("+" in info.timestamp or "-" in info.timestamp[10:])


def test_repository_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "trunk")
    info = git_info(tmp_path)
    assert not info.is_repo
    assert info.sha == ZERO_SHA
    assert info.branch == "trunk"
    assert changed_files(tmp_path) is None


def test_missing_directory_is_a_git_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="no such directory"):
        git_info(tmp_path / "nope")


def test_git_info_runs_at_most_three_git_processes(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real = subprocess.run

    def counting(args: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        calls.append(args)
        return real(args, **kw)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(subprocess, "run", counting)
    git_info(repo.root)
    assert len(calls) <= 3
    calls.clear()
    git_info(repo.root, repo.c2)
    assert len(calls) <= 3


def test_git_environment_of_a_hook_does_not_leak(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "x")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    assert git_info(repo.root).sha == repo.merge


# --- files --------------------------------------------------------------------------------


def test_tracked_files(repo: Repo) -> None:
    files = tracked_files(repo.root)
    assert files == sorted(files)
    assert "c.txt" in files and "side.txt" in files and ".gitignore" in files
    assert "dir with space/ü.txt" in files  # not quoted, not escaped
    assert "new.txt" in files  # untracked, not ignored
    assert "debug.log" not in files and "build/out.bin" not in files  # ignored
    assert "src/b.py" not in files  # deleted in the work tree
    assert "a.txt" not in files and "keep.txt" not in files  # removed by commits
    assert not any(f.startswith((".git/", ".aicd/")) or f in (".git", ".aicd") for f in files)


def test_tracked_files_from_a_subdirectory_are_relative(repo: Repo) -> None:
    assert tracked_files(repo.root / "dir with space") == ["ü.txt"]


def test_tracked_files_outside_git(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a.txt": "",
            "sub/.hidden": "",
            ".git/config": "",
            "x/.git/HEAD": "",
            ".aicd/db": "",
            "debug.log": "",
        },
    )
    assert tracked_files(tmp_path) == ["a.txt", "debug.log", "sub/.hidden"]


def test_changed_files(repo: Repo) -> None:
    assert changed_files(repo.root, repo.c1) is None  # root commit
    assert changed_files(repo.root, repo.c2) == ["a.txt", "dir with space/ü.txt", "src/b.py"]
    assert sorted(changed_files(repo.root, repo.c3) or []) == [
        "a.txt",
        "c.txt",
        "keep.txt",
    ]  # rename: both sides
    assert changed_files(repo.root) == ["side.txt"]  # merge: against the first parent
    assert changed_files(repo.root, "feature") == changed_files(repo.root, repo.c3)


def test_changed_files_errors_and_outside_git(repo: Repo, tmp_path: Path) -> None:
    assert changed_files(tmp_path) is None
    with pytest.raises(GitError, match="commit 'nope' not found"):
        changed_files(repo.root, "nope")


def test_changed_files_between(repo: Repo, tmp_path: Path) -> None:
    assert changed_files_between(repo.root, "v1.0", repo.c3) == ["a.txt", "c.txt", "keep.txt"]
    assert changed_files_between(repo.root, "feature") == ["side.txt"]
    assert changed_files_between(repo.root, "main") == []
    assert changed_files_between(tmp_path, "main") is None
    with pytest.raises(GitError, match="'nope' is not a branch, tag or commit"):
        changed_files_between(repo.root, "nope")
