"""`aicd lint --list`, `aicd run --dry-run` and lint's summary lines: the real CLI process on a real repo."""

from __future__ import annotations

import json
from pathlib import Path

from aicd_testing import aicd, make_repo

PIPELINE = """
workflow:
  rules:
    - if: $CI_COMMIT_TAG
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_COMMIT_BRANCH
stages: [build, test, deploy]
build:
  stage: build
  script: [touch ran-build]
test:
  stage: test
  script: [touch ran-test]
  allow_failure: {exit_codes: [3]}
review:
  stage: test
  script: echo
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
      when: manual
release:
  stage: deploy
  script: echo
  only: [tags]
child:
  stage: deploy
  trigger: {include: ci/child.yml}
"""


def test_lint_list_plain(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    proc = aicd(project, "lint", "--list")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert ".gitlab-ci.yml: pipeline for branch main (source push): 2 jobs, 1 trigger job, 2 left out" in out
    assert "workflow: rules[2] if: $CI_COMMIT_BRANCH" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("STAGE"))
    rows = [line.split() for line in lines[header + 1 : header + 4]]
    assert [r[:2] for r in rows] == [["build", "build"], ["test", "test"], ["deploy", "child"]]
    assert "no; yes for exit 3" in lines[header + 2]
    assert "[trigger: child pipeline: ci/child.yml]" in lines[header + 3]
    assert "review" in out.split("left out:")[1] and "no rule matched" in out
    assert not (project / "ran-build").exists()


def test_lint_list_json_for_a_merge_request_with_variables(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    proc = aicd(
        project,
        "lint",
        "--list",
        "--json",
        "--source",
        "merge_request_event",
        "--branch",
        "feat",
        "-v",
        "A=1",
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert (payload["source"], payload["ref"], payload["ref_kind"]) == (
        "merge_request_event",
        "feat",
        "branch",
    )
    assert payload["valid"] is True and payload["pipeline"] is True
    assert [j["name"] for j in payload["jobs"]] == ["review"]
    review = payload["jobs"][0]
    assert (review["when"], review["allow_failure"], review["needs"]) == ("manual", False, None)
    assert review["rule"] == 'rules[0] if: $CI_PIPELINE_SOURCE == "merge_request_event"'


def test_lint_list_tag_and_errors_elsewhere(tmp_path: Path) -> None:
    text = PIPELINE + "broken:\n  stage: deploy\n  script: echo\n  timeout: forever\n"
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": text})
    proc = aicd(project, "lint", "--list", "--json", "--tag", "v2.0")
    assert proc.returncode == 2  # the file has an error...
    payload = json.loads(proc.stdout)
    jobs = {j["name"]: j for j in payload["jobs"]}
    # ...and the jobs are listed all the same, the broken one with its error
    assert set(jobs) == {"build", "test", "release", "child", "broken"}
    assert jobs["release"]["rule"] == 'only: ["tags"]'
    assert jobs["child"]["trigger"] == "child pipeline: ci/child.yml"
    assert jobs["broken"]["errors"] and "forever" in jobs["broken"]["errors"][0]
    assert payload["valid"] is False


def test_lint_json_lists_allow_failure_exit_codes_as_gitlab_does(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    payload = json.loads(aicd(project, "lint", "--json").stdout)
    test = next(j for j in payload["jobs"] if j["name"] == "test")
    assert (test["allow_failure"], test["allow_failure_exit_codes"]) == (False, [3])


def test_plain_lint_says_valid_when_workflow_makes_no_pipeline(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p", {".gitlab-ci.yml": "workflow: {rules: [{if: $CI_COMMIT_TAG}]}\njob: {script: echo}\n"}
    )
    proc = aicd(project, "lint")
    assert proc.returncode == 0
    assert ".gitlab-ci.yml: valid, but no pipeline for branch main (source push)" in proc.stdout
    tagged = aicd(project, "lint", "--tag", "v1")
    assert ".gitlab-ci.yml: valid, 1 job" in tagged.stdout


def test_run_dry_run_lists_and_runs_nothing(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    proc = aicd(project, "run", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [j["name"] for j in json.loads(proc.stdout)["jobs"]] == ["build", "test", "child"]
    assert not (project / "ran-build").exists() and not (project / ".aicd").exists()
    refused = aicd(project, "run", "--dry-run", "build")
    assert refused.returncode == 2 and "--dry-run" in refused.stderr and "Traceback" not in refused.stderr


def test_bad_source_is_one_clear_message(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    proc = aicd(project, "lint", "--list", "--source", "nightly")
    assert proc.returncode == 2
    assert (
        proc.stderr.startswith("aicd: --source nightly: not a pipeline source")
        and "Traceback" not in proc.stderr
    )
