"""Parent-child pipelines with `aicd run` (issue 13, part 3): real repos, the real CLI, real jobs."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from aicd_testing import aicd, make_repo, run_json

PARENT = """
variables:
  GLOBAL: g
stages: [build, deploy, after]
build:
  stage: build
  script: [echo build]
child:
  stage: deploy
  variables:
    FROM_PARENT: hello
  trigger:
    include: ci/child.yml
    strategy: depend
after:
  stage: after
  script: [echo after]
"""

CHILD = """
one:
  script:
    - echo "source=$CI_PIPELINE_SOURCE from=$FROM_PARENT global=$GLOBAL pv=${PV:-unset}" | tee seen.txt
  artifacts: {paths: [seen.txt]}
two:
  needs: [one]
  script: [cat seen.txt]
"""


def _pipelines(project: Path) -> list[tuple[int, str, str, str, str | None]]:
    db = sqlite3.connect(project / ".aicd" / "aicd.db")
    try:
        rows = db.execute("SELECT id, status, source, file, name FROM pipelines ORDER BY id").fetchall()
    finally:
        db.close()
    return [tuple(r) for r in rows]


def _log(result: dict[str, object], name: str) -> str:
    job = next(j for j in result["jobs"] if j["name"] == name)  # type: ignore[attr-defined]
    return Path(job["log_path"]).read_text()


def test_child_pipeline_runs_nested_with_depend(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PARENT, "ci/child.yml": CHILD})
    code, result, stderr = run_json(project, "-v", "PV=pipeline-var")
    assert code == 0, stderr
    statuses = {j["name"]: j["status"] for j in result["jobs"]}
    assert statuses == {"build": "success", "child": "success", "after": "success"}
    # the child's jobs ran nested under their trigger job, with the child's view of the variables:
    # source parent_pipeline, the trigger job's (and global) variables forwarded, pipeline variables not
    assert "child > one > source=parent_pipeline from=hello global=g pv=unset" in stderr
    assert "child > two > source=parent_pipeline" in stderr  # artifacts passed inside the child
    parent_id = result["pipeline"]["id"]
    child = [p for p in _pipelines(project) if p[0] != parent_id]
    assert len(child) == 1
    child_id, status, source, file, name = child[0]
    assert (status, source, file, name) == (
        "success",
        "parent_pipeline",
        "ci/child.yml",
        f"child of #{parent_id} (child)",
    )
    log = _log(result, "child")
    assert f"child pipeline #{child_id} (ci/child.yml): 2 jobs" in log and "one: success" in log
    assert f"child pipeline #{child_id} success" in log


def test_forward_pipeline_variables(tmp_path: Path) -> None:
    parent = PARENT.replace(
        "strategy: depend", "strategy: depend\n    forward: {pipeline_variables: true, yaml_variables: false}"
    )
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": parent, "ci/child.yml": CHILD})
    code, _, stderr = run_json(project, "-v", "PV=pipeline-var")
    assert code == 0, stderr
    assert "child > one > source=parent_pipeline from= global= pv=pipeline-var" in stderr


def test_depend_with_a_failing_child_fails_the_trigger_job(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p", {".gitlab-ci.yml": PARENT, "ci/child.yml": "boom:\n  script: [exit 3]\n"}
    )
    code, result, stderr = run_json(project)
    assert code == 1, stderr
    statuses = {j["name"]: j["status"] for j in result["jobs"]}
    assert statuses == {"build": "success", "child": "failed", "after": "skipped"}
    assert result["pipeline"]["status"] == "failed"
    assert "child > boom failed" in stderr
    assert re.search(r"child pipeline #\d+ failed", _log(result, "child"))


def test_without_depend_the_trigger_job_passes_whatever_the_child_does(tmp_path: Path) -> None:
    parent = PARENT.replace("    strategy: depend\n", "")
    project = make_repo(
        tmp_path / "p", {".gitlab-ci.yml": parent, "ci/child.yml": "boom:\n  script: [exit 3]\n"}
    )
    code, result, stderr = run_json(project)
    assert code == 0, stderr
    assert {j["name"]: j["status"] for j in result["jobs"]}["child"] == "success"
    assert [p[1] for p in _pipelines(project)] == ["success", "failed"]


def test_a_child_that_cannot_be_created_fails_its_trigger_job(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p",
        {".gitlab-ci.yml": PARENT, "ci/child.yml": "job:\n  script: echo\n  timeout: forever\n"},
    )
    code, result, stderr = run_json(project)
    assert code == 1, stderr
    assert {j["name"]: j["status"] for j in result["jobs"]}["child"] == "failed"
    log = _log(result, "child")
    assert "ci/child.yml:3:3" in log and "forever" in log and "was not created" in log
    filtered = make_repo(
        tmp_path / "q",
        {".gitlab-ci.yml": PARENT, "ci/child.yml": "workflow: {rules: [{if: $NOPE}]}\njob: {script: echo}\n"},
    )
    code, result, _ = run_json(filtered)
    assert code == 1 and "workflow:rules create no pipeline" in _log(result, "child")


def test_grandchild_runs_and_a_third_level_is_refused(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p",
        {
            ".gitlab-ci.yml": "child:\n  trigger: {include: ci/child.yml, strategy: depend}\n",
            "ci/child.yml": "grand:\n  trigger: {include: ci/grand.yml, strategy: depend}\n",
            "ci/grand.yml": (
                "leaf:\n  script: [echo leaf-ran]\n"
                "deeper:\n  allow_failure: true\n  trigger: {include: ci/child.yml}\n"
            ),
        },
    )
    code, _, stderr = run_json(project)
    assert code == 0, stderr
    assert "child > grand > leaf > leaf-ran" in stderr
    assert "child > grand > deeper failed, allowed to fail" in stderr
    rows = _pipelines(project)
    # parent, child, grandchild; a third level is never created (GitLab allows two)
    assert [(p[1], p[3]) for p in rows] == [
        ("success", ".gitlab-ci.yml"),
        ("success", "ci/child.yml"),
        ("success", "ci/grand.yml"),
    ]


def test_dynamic_child_pipeline_from_an_artifact(tmp_path: Path) -> None:
    parent = """
stages: [generate, run]
generate:
  stage: generate
  script:
    - sed "s/NAME/made/" child.tmpl > child.yml
  artifacts: {paths: [child.yml]}
dynamic:
  stage: run
  trigger:
    include:
      - artifact: child.yml
        job: generate
    strategy: depend
missing:
  stage: run
  allow_failure: true
  trigger:
    include: [{artifact: nope.yml, job: generate}]
"""
    template = 'NAME:\n  script: [echo "generated child source=$CI_PIPELINE_SOURCE"]\n'
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": parent, "child.tmpl": template})
    code, result, stderr = run_json(project)
    assert code == 0, stderr
    assert "dynamic > made > generated child source=parent_pipeline" in stderr
    assert {j["name"]: j["status"] for j in result["jobs"]} == {
        "generate": "success",
        "dynamic": "success",
        "missing": "failed",
    }
    assert 'job "generate" has no artifact nope.yml' in _log(result, "missing")


def test_lint_and_list_mark_multi_project_triggers_out_of_scope(tmp_path: Path) -> None:
    text = PARENT + "other:\n  stage: deploy\n  trigger: group/other-project\n"
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": text, "ci/child.yml": CHILD})
    code, result, stderr = run_json(project)
    assert code == 0, stderr
    assert "other" not in {j["name"] for j in result["jobs"]}
    assert "multi-project pipelines (trigger: project) are out of scope" in stderr
    listed = json.loads(aicd(project, "lint", "--list", "--json").stdout)
    triggers = {j["name"]: j["trigger"] for j in listed["jobs"] if j["trigger"]}
    assert triggers == {"child": "child pipeline: ci/child.yml", "other": "project: group/other-project"}
