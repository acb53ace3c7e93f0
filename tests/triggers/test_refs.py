"""Ref names checked as `git check-ref-format --allow-onelevel` does, compared with git itself."""

from __future__ import annotations

import subprocess

import pytest

from aicd.errors import ConfigError
from aicd.triggers.refs import MAX_REF_BYTES, check_ref_name, ref_problem

GOOD = ["main", "refs/heads/main", "feature/x-1", "v1.0", "release/2026.11", "héllo", "a@b", "x_y+z"]
BAD = [
    "",
    "main\nX",
    "ma\x00in",
    "ma\x1bin",
    "ma\x7fin",
    "ma in",
    "../etc",
    "a..b",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[b",
    "a\\b",
    "main@{1}",
    "@",
    "/main",
    "main/",
    "a//b",
    "main.",
    ".hidden",
    "a/.b",
    "main.lock",
    "a.lock/b",
    "-x",
]


@pytest.mark.parametrize("name", GOOD)
def test_good_names(name: str) -> None:
    assert check_ref_name(name) == name
    assert _git_accepts(name)


@pytest.mark.parametrize("name", BAD)
def test_bad_names_are_refused_as_git_refuses_them(name: str) -> None:
    with pytest.raises(ConfigError, match="is not a valid git ref name") as caught:
        check_ref_name(name)
    message = str(caught.value)
    assert "\n" not in message and "\x00" not in message and "\x1b" not in message
    if name and "\x00" not in name and not name.startswith("-"):
        assert not _git_accepts(name), name


def test_length_and_surrogates() -> None:
    assert ref_problem("a" * MAX_REF_BYTES) is None
    assert "longer than" in str(ref_problem("a" * (MAX_REF_BYTES + 1)))
    assert "longer than" in str(ref_problem("é" * 200))  # bytes, not characters
    assert "surrogate" in str(ref_problem("ma\ud800in"))
    with pytest.raises(ConfigError) as caught:
        check_ref_name("x" * 10_000)
    assert len(str(caught.value)) < 400  # the message shows the name cut


def _git_accepts(name: str) -> bool:
    done = subprocess.run(
        ["git", "check-ref-format", "--allow-onelevel", name], capture_output=True, check=False
    )
    return done.returncode == 0
