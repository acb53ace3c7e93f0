"""Bare mirrors of real git repositories made in temp dirs."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from aicd.errors import GitError
from aicd.store.projects_repo import ProjectRecord
from aicd.triggers import mirror
from aicd_testing import git, make_repo


def _commit(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", f"edit {name}")
    return git(repo, "rev-parse", "HEAD")


def _project(url: str, project_id: int = 7) -> ProjectRecord:
    return ProjectRecord(
        id=project_id,
        name="demo",
        key="server:demo",
        repo_url=url,
        default_branch="main",
        pipeline_file=".gitlab-ci.yml",
        poll_interval_s=None,
        has_webhook_secret=False,
        created_at=0.0,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README": "hello\n"})


def test_first_sync_clones_then_fetch_follows_pushes(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    project = _project(str(repo))
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "light")
    git(repo, "-c", "user.email=t@e", "-c", "user.name=t", "tag", "-a", "v1.0", "-m", "release")
    path = mirror.sync_mirror(home, project)
    assert path == home / "mirrors" / "7.git" == mirror.mirror_path(home, project)
    assert (path / "HEAD").is_file() and not (path / ".git").exists()  # bare
    refs = mirror.list_refs(path)
    # annotated tags are peeled to their commit
    assert refs == {"refs/heads/main": first, "refs/tags/light": first, "refs/tags/v1.0": first}

    second = _commit(repo, "a.txt", "a")
    git(repo, "branch", "feature")
    git(repo, "tag", "-d", "light")
    mirror.sync_mirror(home, project)
    refs = mirror.list_refs(path)
    assert refs == {"refs/heads/main": second, "refs/heads/feature": second, "refs/tags/v1.0": first}

    git(repo, "branch", "-D", "feature")
    mirror.sync_mirror(home, project)
    assert "refs/heads/feature" not in mirror.list_refs(path)  # pruned


def test_force_push_moves_the_branch_back(repo: Path, tmp_path: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    _commit(repo, "b.txt", "b")
    path = mirror.sync_mirror(tmp_path / "home", _project(str(repo)))
    git(repo, "reset", "-q", "--hard", first)
    mirror.sync_mirror(tmp_path / "home", _project(str(repo)))
    assert mirror.list_refs(path)["refs/heads/main"] == first


def test_resolve_ref(repo: Path, tmp_path: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "-c", "user.email=t@e", "-c", "user.name=t", "tag", "-a", "v2", "-m", "annotated")
    second = _commit(repo, "c.txt", "c")
    path = mirror.sync_mirror(tmp_path / "home", _project(str(repo)))
    assert mirror.resolve_ref(path, "main") == second
    assert mirror.resolve_ref(path, "refs/heads/main") == second
    assert mirror.resolve_ref(path, "v2") == first  # the tag's commit, not the tag object
    assert mirror.resolve_ref(path, first) == first
    assert mirror.resolve_ref(path, first[:10]) == first
    for bad in ("nope", "-x", "main~1", "", "a b"):
        with pytest.raises(GitError):
            mirror.resolve_ref(path, bad)
    assert mirror.has_commit(path, second)
    assert not mirror.has_commit(path, "f" * 40)
    assert not mirror.has_commit(path, "--all")


def test_branch_wins_over_a_tag_of_the_same_name(repo: Path, tmp_path: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "main")
    second = _commit(repo, "d.txt", "d")
    path = mirror.sync_mirror(tmp_path / "home", _project(str(repo)))
    assert mirror.resolve_ref(path, "main") == second
    assert mirror.resolve_ref(path, "refs/tags/main") == first


def test_missing_repository_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    home = tmp_path / "home"
    with pytest.raises(GitError) as info:
        mirror.sync_mirror(home, _project(str(missing)))
    message = str(info.value)
    assert str(missing) in message and "'demo'" in message
    assert "does not exist" in message or "not appear to be a git repository" in message
    assert not mirror.mirror_path(home, _project(str(missing))).exists()
    assert [p.name for p in (home / "mirrors").iterdir()] == []  # no scratch folder left


def test_credentials_never_appear_in_errors(tmp_path: Path) -> None:
    url = "http://alice:hunter2-password@127.0.0.1:9/repo.git"  # port 9 (discard): refused at once
    with pytest.raises(GitError) as info:
        mirror.sync_mirror(tmp_path / "home", _project(url))
    assert "hunter2" not in str(info.value) and "alice" not in str(info.value)
    assert "http://127.0.0.1:9/repo.git" in str(info.value)


def test_changed_url_is_followed(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    project = _project(str(repo))
    mirror.sync_mirror(home, project)
    other = make_repo(tmp_path / "other", {"OTHER": "x\n"})
    path = mirror.sync_mirror(home, replace(project, repo_url=f"file://{other}"))
    assert mirror.list_refs(path)["refs/heads/main"] == git(other, "rev-parse", "HEAD")


def test_concurrent_syncs_of_one_mirror(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    project = _project(str(repo))
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            mirror.sync_mirror(home, project)
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert mirror.list_refs(mirror.mirror_path(home, project))["refs/heads/main"] == git(
        repo, "rev-parse", "HEAD"
    )


def test_redact() -> None:
    assert (
        mirror.redact("https://user:tok@host/x.git and ssh://git@h/y") == "https://host/x.git and ssh://h/y"
    )
    assert mirror.redact("git@github.com:o/r.git") == "git@github.com:o/r.git"  # scp-like: no secret


def test_redact_hides_query_values() -> None:
    """Issue 11: `?private_token=` in a repository URL was shown in errors, the audit log and the API."""
    assert (
        mirror.redact("fatal: unable to access 'https://h/r.git?private_token=S3CRET&x=1/': 403")
        == "fatal: unable to access 'https://h/r.git?private_token=***&x=***': 403"
    )
    assert mirror.redact("https://u:pw@h/x?tok") == "https://h/x?***"
    assert mirror.redact("no URL? a=b") == "no URL? a=b"


def test_a_local_url_into_the_home_is_never_fetched(repo: Path, tmp_path: Path) -> None:
    """Issue 11: a project whose URL (set before the check, or by hand) leads into the server's
    home would copy another project's mirror, or the keys, into its own."""
    home = tmp_path / "home"
    victim = mirror.sync_mirror(home, _project(str(repo), project_id=1))
    link = tmp_path / "innocent-looking"
    link.symlink_to(home)
    for url in (
        str(victim),
        f"file://{victim}",
        str(link / "mirrors" / "1.git"),
        f"{repo}/../home/mirrors/1.git",
    ):
        with pytest.raises(GitError, match="inside the server's home"):
            mirror.sync_mirror(home, _project(url, project_id=2))
    assert not (home / "mirrors" / "2.git").exists()
    with pytest.raises(GitError, match="file:// URL names a local folder"):
        mirror.sync_mirror(home, _project(f"file://{victim}%00", project_id=2))
