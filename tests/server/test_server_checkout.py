"""Server jobs get a Git checkout of the pipeline's commit from the server's mirror, read-only."""

from __future__ import annotations

from pathlib import Path

from pipeline_helpers import commit, jobs_of, new_project, trigger, wait_pipeline
from serverproc import ServerProc

from aicd_testing import git

CI = """
probe:
  script:
    - echo "describe=$(git describe --tags)"
    - echo "diff=$(git diff --name-only HEAD~1 | tr '\\n' ,)"
    - echo "branch=$(git branch -r | tr -d ' ')"
    - echo "status=$(git status --porcelain | wc -l)"
    - git config user.email a@b && git config user.name b && git commit -q --allow-empty -m mine
    - if git push -f origin HEAD:refs/heads/main 2>/dev/null; then echo PUSHED; else echo push-refused; fi
shallow:
  variables: {GIT_DEPTH: "1"}
  script:
    - echo "count=$(git rev-list --count HEAD)"
none:
  variables: {GIT_STRATEGY: none}
  script:
    - test ! -e .git && test ! -e .gitlab-ci.yml && echo empty-workspace
"""


def test_server_jobs_get_a_checkout_of_the_pipelines_commit(
    server_sqlite: ServerProc, tmp_path: Path
) -> None:
    server = server_sqlite
    repo = new_project(server, tmp_path, {".gitlab-ci.yml": CI, "a.txt": "a\n"})
    git(repo, "tag", "v0.1.0")
    sha = commit(repo, {"b.txt": "b\n"}, "add b")
    with server.client() as admin:
        pid = trigger(admin, "demo")["id"]
        found = wait_pipeline(admin, "demo", pid, timeout=600)
        jobs = jobs_of(admin, "demo", pid)
        logs = {name: admin.get(f"/projects/demo/jobs/{job['id']}/log").text for name, job in jobs.items()}
    assert found["status"] == "success", logs
    probe = logs["probe"].splitlines()
    assert f"describe=v0.1.0-1-g{sha[:7]}" in probe
    assert "diff=b.txt," in probe
    assert "branch=origin/main" in probe
    assert "status=0" in probe
    assert "push-refused" in probe
    assert "count=1" in logs["shallow"].splitlines()
    assert "empty-workspace" in logs["none"].splitlines()
    # the mirror still has main where the user's repository has it
    mirrors = list((server.home / "mirrors").glob("*.git"))
    assert [git(m, "rev-parse", "refs/heads/main") for m in mirrors] == [sha]
