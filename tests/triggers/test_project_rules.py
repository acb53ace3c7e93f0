"""Validation of server projects (aicd.core.projects): names, repository URLs, the remote check."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicd.core import projects
from aicd.errors import ConfigError
from aicd_testing import git, make_repo


@pytest.mark.parametrize("name", ["demo", "a", "0x", "my-proj.v2_x"])
def test_good_names(name: str) -> None:
    assert projects.check_name(name) == name


@pytest.mark.parametrize("name", ["", "123", "Demo", "-x", ".x", "a/b", "a b", "ü", "x" * 101])
def test_bad_names(name: str) -> None:
    with pytest.raises(ConfigError, match="project name"):
        projects.check_name(name)


def test_urls_kept_as_given() -> None:
    for url in (
        "file:///srv/repo.git",
        "https://github.com/o/r.git",
        "http://gitea.local:3000/o/r.git",
        "ssh://git@host:2222/o/r.git",
        "git@github.com:o/r.git",
        "git://host/r.git",
    ):
        assert projects.normalize_repo_url(url) == url


def test_local_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "repo").mkdir()
    assert projects.normalize_repo_url("repo") == str(tmp_path / "repo")
    assert projects.normalize_repo_url("./repo/../repo") == str(tmp_path / "repo")
    assert projects.normalize_repo_url(str(tmp_path / "repo")) == str(tmp_path / "repo")


@pytest.mark.parametrize(
    "url", ["ext::sh -c touch% /tmp/pwned", "fd::3", "ftp://host/x", "-uhelp", "", "a\nb"]
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        projects.normalize_repo_url(url)


def test_check_remote_good_and_bad(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README": "x\n"})
    heads = projects.check_remote(str(repo), "main")
    assert heads == {"main": git(repo, "rev-parse", "HEAD")}
    with pytest.raises(ConfigError, match=r"branch 'develop' does not exist in .*its branches: main"):
        projects.check_remote(str(repo), "develop")
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as info:
        projects.check_remote(str(missing), "main")
    assert f"cannot read the repository {missing}" in str(info.value)
    assert "does not exist" in str(info.value) or "not appear to be a git repository" in str(info.value)


def test_check_remote_of_an_empty_repository(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    with pytest.raises(ConfigError, match="no commits yet"):
        projects.check_remote(str(empty), "main")


def test_check_remote_hides_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        projects.check_remote("http://bob:t0ps3cret@127.0.0.1:9/r.git", "main", timeout=20)
    assert "t0ps3cret" not in str(info.value) and "http://127.0.0.1:9/r.git" in str(info.value)


def test_other_rules() -> None:
    assert projects.check_pipeline_file("ci/pipeline.yml") == "ci/pipeline.yml"
    for bad in ("/etc/passwd", "../x.yml", ""):
        with pytest.raises(ConfigError, match="pipeline file"):
            projects.check_pipeline_file(bad)
    assert projects.check_poll_interval(None) is None
    assert projects.check_poll_interval(0) is None
    assert projects.check_poll_interval(30) == 30.0
    with pytest.raises(ConfigError, match="poll interval"):
        projects.check_poll_interval(0.1)
    assert projects.check_branch_name("refs/heads/dev") == "dev"
    for bad in ("", "a..b", "-x", "x y", "x:y"):
        with pytest.raises(ConfigError):
            projects.check_branch_name(bad)
    with pytest.raises(ConfigError, match="webhook secret"):
        projects.check_webhook_secret("short")
    projects.check_variable("API_KEY", "0123456789", masked=True)
    with pytest.raises(ConfigError, match="masked value"):
        projects.check_variable("API_KEY", "short", masked=True)
    with pytest.raises(ConfigError, match="variable key"):
        projects.check_variable("1BAD", "x", masked=False)


@pytest.mark.parametrize(
    "url", ["/tmp/\ud800", "/tmp/a\x00b", "/tmp/a\x1bb", "/" + "x" * 5000, "/tmp/" + "y" * 300 + "/z"]
)
def test_unusable_urls_are_config_errors(url: str) -> None:
    """Refused when normalized, or at the latest by the remote check (never another exception)."""
    with pytest.raises(ConfigError):
        projects.check_remote(projects.normalize_repo_url(url), "main")


def test_unusable_values() -> None:
    with pytest.raises(ConfigError, match="not valid text"):
        projects.check_variable("K", "\ud800", masked=False)
    with pytest.raises(ConfigError, match="NUL"):
        projects.check_variable("K", "a\x00b", masked=False)
    projects.check_variable("PEM", "-----BEGIN-----\nabc\n-----END-----\n", masked=False)
    with pytest.raises(ConfigError, match="webhook secret"):
        projects.check_webhook_secret("secret-\ud800-value")
    with pytest.raises(ConfigError, match="branch"):
        projects.check_branch_name("ma\x00in")
