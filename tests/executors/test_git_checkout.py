"""A Git checkout in every job: what GitLab's clone gives, and the user's repository left alone.

Every answer a job gets is compared with the answer the same command gives in a real
``git clone`` of the same repository checked out at the same commit (what a GitLab runner does).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aicd.executors.checkout import git_settings
from aicd_testing import git, make_repo, run_json

PY = sys.executable

# each line prints NAME=answer, one per line, so the job's log and the peer's output read alike
PROBES = {
    "describe": "git describe --tags",
    "log": "git log -1 --format='%H %s'",
    "diff": "git diff --name-only HEAD~1 | tr '\\n' ,",
    "status": "git status --porcelain | tr '\\n' ,",
    "count": "git rev-list --count HEAD",
    "shallow": "git rev-parse --is-shallow-repository",
    "head": "git rev-parse HEAD",
    "scm": f"{PY} -m setuptools_scm",
}


def _script(names: list[str]) -> str:
    return "".join(f'    - echo "{n}=$({PROBES[n]} 2>&1)"\n' for n in names)


def _answers(text: str, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in names and key not in out:
            out[key] = value.rstrip()
    return out


def _peer(repo: Path, sha: str, names: list[str], where: Path, depth: int | None = None) -> dict[str, str]:
    """What a GitLab runner's clone would answer: a real clone, detached at ``sha``."""
    args = ["clone", "-q", "--no-local"]
    if depth:
        args += ["--depth", str(depth)]
    subprocess.run(["git", *args, repo.as_uri(), str(where)], check=True, capture_output=True)
    git(where, "checkout", "-q", "--detach", sha)
    script = "".join(f'echo "{n}={_with_stderr(PROBES[n])}"\n' for n in names)
    done = subprocess.run(["bash", "-c", script], cwd=where, capture_output=True, text=True, check=True)
    return _answers(done.stdout, names)


def _with_stderr(cmd: str) -> str:
    return f"$({cmd} 2>&1)"


def _commit(repo: Path, message: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", message)


PYPROJECT = """\
[build-system]
requires = ["setuptools>=64", "setuptools-scm>=8"]
build-backend = "setuptools.build_meta"

[project]
name = "demo"
dynamic = ["version"]

[tool.setuptools_scm]
"""


def _tagged_repo(tmp_path: Path, pipeline: str) -> tuple[Path, str]:
    repo = make_repo(tmp_path / "repo", {"pyproject.toml": PYPROJECT, "src/demo/__init__.py": ""})
    git(repo, "tag", "-a", "v1.2.0", "-m", "release 1.2.0")
    _commit(repo, "add a feature", {"src/demo/feature.py": "X = 1\n"})
    _commit(repo, "the pipeline", {".gitlab-ci.yml": pipeline, "README.md": "demo\n"})
    return repo, git(repo, "rev-parse", "HEAD")


def test_jobs_see_what_a_gitlab_clone_sees(tmp_path: Path) -> None:
    names = ["describe", "log", "diff", "status", "count", "shallow", "head", "scm"]
    repo, sha = _tagged_repo(tmp_path, "probe:\n  script:\n" + _script(names))
    code, result, err = run_json(repo)
    assert code == 0, err
    job = _answers(Path(result["jobs"][0]["log_path"]).read_text(), names)
    peer = _peer(repo, sha, names, tmp_path / "peer")
    assert job == peer
    # and what those are, so a wrong peer cannot hide a wrong answer
    assert job["describe"] == f"v1.2.0-2-g{sha[:7]}"
    assert job["diff"] == ".gitlab-ci.yml,README.md,"
    assert job["status"] == "" and job["shallow"] == "false" and job["count"] == "3"
    assert job["scm"].startswith("1.2.1.dev2+g")


def test_git_depth_gives_a_shallow_history(tmp_path: Path) -> None:
    names = ["count", "shallow", "head", "describe"]
    pipeline = "probe:\n  variables:\n    GIT_DEPTH: '1'\n  script:\n" + _script(names)
    pipeline += "deeper:\n  variables:\n    GIT_DEPTH: '2'\n  script:\n" + _script(["count", "shallow"])
    repo, sha = _tagged_repo(tmp_path, pipeline)
    code, result, err = run_json(repo)
    assert code == 0, err
    logs = {j["name"]: Path(j["log_path"]).read_text() for j in result["jobs"]}
    job = _answers(logs["probe"], names)
    assert job == _peer(repo, sha, names, tmp_path / "peer1", depth=1)
    assert job["count"] == "1" and job["shallow"] == "true"
    deeper = _answers(logs["deeper"], ["count", "shallow"])
    assert deeper == _peer(repo, sha, ["count", "shallow"], tmp_path / "peer2", depth=2)
    assert deeper["count"] == "2"


def test_git_strategy_none_gives_no_checkout(tmp_path: Path) -> None:
    pipeline = """\
nothing:
  variables: {GIT_STRATEGY: none}
  script:
    - test ! -e .git
    - test ! -e pyproject.toml
    - echo "files=$(ls -A | wc -l)"
"""
    repo, _sha = _tagged_repo(tmp_path, pipeline)
    code, result, err = run_json(repo)
    assert code == 0, err
    log = Path(result["jobs"][0]["log_path"]).read_text()
    assert "files=0" in log and "Skipping Git repository setup" in log


def test_uncommitted_changes_are_a_dirty_working_tree(tmp_path: Path) -> None:
    names = ["head", "status", "diff"]
    repo, sha = _tagged_repo(tmp_path, "probe:\n  script:\n" + _script(names) + "    - cat README.md\n")
    (repo / "README.md").write_text("edited, not committed\n")
    (repo / "src" / "demo" / "feature.py").unlink()
    git(repo, "add", "-A")  # staged or not: the same working tree
    (repo / "notes.txt").write_text("untracked\n")
    code, result, err = run_json(repo)
    assert code == 0, err
    log = Path(result["jobs"][0]["log_path"]).read_text()
    job = _answers(log, names)
    assert job["head"] == sha
    assert job["status"] == " M README.md, D src/demo/feature.py,"
    assert "edited, not committed" in log
    code, result, err = run_json(repo, "--untracked")
    job = _answers(Path(result["jobs"][0]["log_path"]).read_text(), names)
    assert job["status"] == " M README.md, D src/demo/feature.py,?? notes.txt,"


def _fingerprint(repo: Path) -> dict[str, object]:
    """Everything of the repository a job could change: refs, status, objects, every byte of .git."""
    files: dict[str, str] = {}
    for folder, _dirs, names in os.walk(repo / ".git"):
        for name in names:
            path = Path(folder) / name
            files[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "refs": git(repo, "rev-parse", "--all"),
        "status": git(repo, "status", "--porcelain", "--", ".", ":!.aicd"),
        "objects": git(repo, "count-objects", "-v"),
        "files": files,
    }


VANDAL = """\
vandal:
  script:
    - git config user.email v@example.com && git config user.name vandal
    - echo evil > evil.txt && git add evil.txt && git commit -qm evil
    - git tag -f v1.2.0 && git tag evil-tag
    - git push -f origin HEAD:refs/heads/main --tags || echo push-refused
    - git push origin HEAD:refs/heads/evil || echo push-refused
    - git gc -q --prune=now --aggressive
    - rm -rf .git
"""


def test_a_job_cannot_touch_the_users_repository(tmp_path: Path) -> None:
    repo, _sha = _tagged_repo(tmp_path, VANDAL)
    before = _fingerprint(repo)
    _code, result, _err = run_json(repo)
    assert result["jobs"][0]["status"] == "success", Path(result["jobs"][0]["log_path"]).read_text()
    # the job's workspace is under repo/.aicd (ignored); the repository itself did not change
    git(repo, "status", "--porcelain")
    after = _fingerprint(repo)
    assert after == before


def test_settings_are_checked() -> None:
    ok = git_settings({"GIT_STRATEGY": "clone", "GIT_DEPTH": "3", "GIT_SUBMODULE_STRATEGY": "recursive"})
    assert (ok.strategy, ok.depth, ok.submodules, ok.warnings) == ("clone", 3, "recursive", ())
    bad = git_settings({"GIT_STRATEGY": "rsync", "GIT_DEPTH": "deep", "GIT_SUBMODULE_STRATEGY": "all"})
    assert (bad.strategy, bad.depth, bad.submodules) == ("fetch", None, "none")
    assert len(bad.warnings) == 3 and all("expected" in w for w in bad.warnings)
    assert git_settings({"GIT_DEPTH": "0"}).depth is None


def test_submodules_follow_the_strategy(tmp_path: Path) -> None:
    lib = make_repo(tmp_path / "lib", {"lib.txt": "library\n"})
    pipeline = """\
none:
  script:
    - test -d vendor/lib && test ! -e vendor/lib/lib.txt
normal:
  variables: {GIT_SUBMODULE_STRATEGY: normal}
  script:
    - cat vendor/lib/lib.txt
    - echo "sub=$(git -C vendor/lib rev-parse HEAD)"
    - git submodule status
"""
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": pipeline})
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "vendor/lib")
    _commit(repo, "add lib", {})
    code, result, _err = run_json(repo)
    logs = {j["name"]: Path(j["log_path"]).read_text() for j in result["jobs"]}
    assert code == 0, logs
    assert "library" in logs["normal"]
    assert f"sub={git(lib, 'rev-parse', 'HEAD')}" in logs["normal"]


def test_a_submodule_name_that_leaves_the_modules_folder_is_refused(tmp_path: Path) -> None:
    """.gitmodules is the commit's, untrusted: a name with ``..`` would point the job's alternates
    at another repository's objects (on a server, another project's); git refuses such names too."""
    lib = make_repo(tmp_path / "lib", {"lib.txt": "library\n"})
    git(tmp_path, "clone", "-q", str(lib), str(tmp_path / "victim"))  # same commit, outside modules/
    pipeline = """\
probe:
  variables: {GIT_SUBMODULE_STRATEGY: normal}
  script:
    - test ! -e vendor/lib/lib.txt && echo "nothing checked out"
"""
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": pipeline})
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "vendor/lib")
    gitmodules = f'[submodule "../../../victim/.git"]\n\tpath = vendor/lib\n\turl = {lib}\n'
    _commit(repo, "rename the submodule out of modules/", {".gitmodules": gitmodules})
    code, result, _err = run_json(repo)
    log = Path(result["jobs"][0]["log_path"]).read_text()
    assert code == 0, log
    assert "leaves its folder; skipped" in log and "nothing checked out" in log, log


def test_artifacts_untracked_never_take_the_git_folder(tmp_path: Path) -> None:
    pipeline = """\
build:
  script:
    - echo out > made.txt
    - git config user.email a@b && git config user.name b && git commit -q --allow-empty -m x
  artifacts:
    untracked: true
"""
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": pipeline})
    code, result, err = run_json(repo)
    assert code == 0, err
    kept = Path(result["jobs"][0]["log_path"]).parents[1] / "artifacts"
    names = {str(p.relative_to(kept)) for p in kept.rglob("*") if p.is_file()}
    assert any(n.endswith("made.txt") for n in names)
    assert not any("/.git/" in f"/{n}" for n in names), names


@pytest.mark.parametrize("strategy", ["clone", "fetch"])
def test_clone_and_fetch_both_give_a_clean_checkout(tmp_path: Path, strategy: str) -> None:
    pipeline = f"probe:\n  variables: {{GIT_STRATEGY: {strategy}}}\n  script:\n" + _script(["head", "status"])
    repo, sha = _tagged_repo(tmp_path, pipeline)
    _code, result, _err = run_json(repo)
    job = _answers(Path(result["jobs"][0]["log_path"]).read_text(), ["head", "status"])
    assert job == {"head": sha, "status": ""}


SANDBOXED_VANDAL = """\
vandal:
  script:
    - echo "describe=$(git describe --tags)"
    - git config user.email v@example.com && git config user.name vandal
    - echo evil > evil.txt && git add evil.txt && git commit -qm evil
    - if git push -f origin HEAD:refs/heads/main 2>/dev/null; then echo PUSHED; else echo push-refused; fi
    - origin="$(cat .git/objects/info/alternates)"
    - for d in $(cat "$origin/info/alternates"); do touch "$d/x" 2>/dev/null && echo WROTE; done
    - rm -rf .git
"""


def test_sandboxed_jobs_read_the_objects_and_cannot_write_them(tmp_path: Path) -> None:
    from aicd.executors.sandbox import probe

    found = probe()
    if not found.ok:
        pytest.skip(found.reason)
    repo, sha = _tagged_repo(tmp_path, SANDBOXED_VANDAL)
    before = _fingerprint(repo)
    code, result, _err = run_json(repo, "--isolate")
    log = Path(result["jobs"][0]["log_path"]).read_text()
    assert code == 0, log
    assert f"describe=v1.2.0-2-g{sha[:7]}" in log
    assert "push-refused" in log.splitlines()
    said = [line for line in log.splitlines() if not line.startswith("$ ")]
    assert "PUSHED" not in said and "WROTE" not in said
    assert _fingerprint(repo) == before


def test_the_file_bound_over_origins_alternates_is_never_rewritten(tmp_path: Path) -> None:
    """Each sandboxed job's launch asks for the read-only paths, and every running job's sandbox
    binds the same file over its origin's alternates. It was rewritten in place at each launch
    (truncate, write): a job's git that read it in between found no objects ("unknown revision
    HEAD~1" right after `git describe` had walked there). Now it is written once."""
    from aicd.executors.checkout import PipelineGit, Ref

    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    sha = git(repo, "rev-parse", "HEAD")
    pg = PipelineGit(repo, tmp_path / "run", dirty_from=None, view=lambda p: Path("/aicd/git") / p.name)
    pg.checkout(sha, Ref(branch="main"), git_settings({}))
    first = dict(pg.read_only_paths())
    bound = next(here for here, seen in first.items() if seen.name == "alternates" and "origin" in str(seen))
    before = os.stat(bound)
    text = bound.read_text()
    assert text.strip(), "the origin's alternates as the job sees them name the source's objects"
    time.sleep(0.05)  # past the file system's clock tick: a rewrite below would change the mtime
    with open(bound) as held:  # what a running job's bind holds: this very file
        for _ in range(50):  # later launches
            assert dict(pg.read_only_paths())[bound] == first[bound]
            held.seek(0)
            assert held.read() == text
    after = os.stat(bound)
    same = (before.st_ino, before.st_mtime_ns, before.st_size)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == same, "rewritten under running jobs"
