"""`rules:changes` and `only:changes` in `aicd run`: the push's changed files (its commit against
its first parent) decide, and a pipeline without a `changes` clause never asks Git for them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from aicd.pipeline.rules import ChangedFiles, changed_files_of
from aicd_testing import aicd, clean_env, git, make_repo

PIPELINE_WITH_CHANGES = """
src-job:
  script: [echo src]
  rules:
    - changes: ["src/**/*"]
docs-job:
  script: [echo docs]
  rules:
    - changes: [docs/*]
only-job:
  script: [echo only]
  only:
    changes: ["src/**/*"]
plain:
  script: [echo plain]
"""

PIPELINE_WITHOUT = """
one:
  script: [echo one]
two:
  script: [echo two]
"""


def _logging_git(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose `git` writes its arguments to a log, then runs the real git."""
    real = shutil.which("git")
    assert real is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "git.log"
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    env = clean_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env, log


def _second_commit(repo: Path, path: str) -> None:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("changed\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "change")


def _jobs(tmp_path: Path, pipeline: str, changed: str, env: dict[str, str] | None = None) -> set[str]:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": pipeline, "README.md": "x\n"})
    _second_commit(repo, changed)
    proc = aicd(repo, "run", "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {job["name"] for job in json.loads(proc.stdout)["jobs"]}


def test_changes_follow_the_pushed_commit(tmp_path: Path) -> None:
    assert _jobs(tmp_path, PIPELINE_WITH_CHANGES, "src/pkg/a.py") == {"src-job", "only-job", "plain"}


def test_a_docs_change_runs_the_docs_job_only(tmp_path: Path) -> None:
    assert _jobs(tmp_path, PIPELINE_WITH_CHANGES, "docs/a.md") == {"docs-job", "plain"}


def test_git_diff_tree_runs_only_for_a_pipeline_with_changes(tmp_path: Path) -> None:
    env, log = _logging_git(tmp_path / "with")
    assert _jobs(tmp_path / "with", PIPELINE_WITH_CHANGES, "src/a.py", env) == {
        "src-job",
        "only-job",
        "plain",
    }
    # the push's changed files: `git diff-tree` of the commit against its parent
    assert [line for line in log.read_text().splitlines() if " diff-tree " in f" {line} "]
    env, log = _logging_git(tmp_path / "without")
    assert _jobs(tmp_path / "without", PIPELINE_WITHOUT, "src/a.py", env) == {"one", "two"}
    calls = log.read_text().splitlines()
    assert calls, "the wrapper saw no git call at all: the test would prove nothing"
    assert not [line for line in calls if " diff-tree " in f" {line} "], calls


def test_changed_files_are_found_once_and_only_when_asked() -> None:
    calls: list[int] = []

    def compute() -> list[str]:
        calls.append(1)
        return ["a.py"]

    lazy = ChangedFiles(compute)
    assert calls == []
    assert changed_files_of(lazy) == ["a.py"] and changed_files_of(lazy) == ["a.py"]
    assert calls == [1]
    assert changed_files_of(None) is None and changed_files_of(["b"]) == ["b"]
    assert ChangedFiles(lambda: None).get() is None
