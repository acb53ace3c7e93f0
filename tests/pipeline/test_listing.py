"""Listing a pipeline without running it (issue 13, part 4): the core under `aicd lint --list`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aicd.errors import AicdError
from aicd.pipeline.ir import Variable
from aicd.pipeline.listing import Listing, list_pipeline, ref_context
from aicd.vcs import git_info
from aicd_testing import make_repo

PIPELINE = """
workflow:
  rules:
    - if: $CI_COMMIT_TAG
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_PIPELINE_SOURCE == "schedule"
    - if: $CI_COMMIT_BRANCH
stages: [build, test, deploy]
build:
  stage: build
  script: echo
test:
  stage: test
  script: echo
  needs: [build]
  allow_failure: {exit_codes: [3, 4]}
  parallel:
    matrix:
      - PY: ["3.11", "3.12"]
review:
  stage: test
  script: echo
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
      when: manual
nightly:
  stage: test
  script: echo
  rules:
    - if: $CI_PIPELINE_SOURCE == "schedule"
    - if: $FORCE_NIGHTLY
      when: delayed
      start_in: ten minutes
release:
  stage: deploy
  script: echo
  only: [tags]
docs:
  stage: deploy
  needs: []
  trigger:
    include: ci/docs.yml
    strategy: depend
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("listing") / "p", {".gitlab-ci.yml": PIPELINE})


def listing(
    project: Path,
    *,
    source: str = "push",
    branch: str | None = None,
    tag: str | None = None,
    variables: dict[str, str] | None = None,
) -> Listing:
    context, source, ref, kind = ref_context(
        git_info(project),
        project_dir=project,
        source=source,
        branch=branch,
        tag=tag,
        variables=[Variable(k, v) for k, v in (variables or {}).items()],
    )
    return list_pipeline(project, ".gitlab-ci.yml", context, source=source, ref=ref, ref_kind=kind)


def names(found: Listing) -> list[str]:
    return [j.name for j in found.jobs]


def test_branch_push_lists_jobs_in_stage_order_with_their_rule(project: Path) -> None:
    found = listing(project)
    assert (found.source, found.ref, found.ref_kind) == ("push", "main", "branch")
    assert found.workflow_rule == "rules[3] if: $CI_COMMIT_BRANCH"
    assert names(found) == ["build", "test: [3.11]", "test: [3.12]", "docs"]
    assert dict(found.excluded) == {
        "review": "no rule matched",
        "nightly": "no rule matched",
        "release": "only: does not match",
    }
    build, test = found.jobs[0], found.jobs[1]
    assert (build.stage, build.when, build.needs, build.rule) == ("build", "on_success", None, "(no rules)")
    assert test.needs == ("build",)
    # GitLab lists allow_failure: {exit_codes} as allow_failure: false plus the codes
    assert (test.allow_failure, test.exit_codes) == (False, (3, 4))
    assert not found.errors


def test_trigger_jobs_are_listed_and_marked(project: Path) -> None:
    docs = listing(project).jobs[-1]
    assert docs.name == "docs" and docs.stage == "deploy"
    assert docs.trigger == "child pipeline: ci/docs.yml" and docs.needs == ()


def test_merge_request_pipeline(project: Path) -> None:
    found = listing(project, source="merge_request_event", branch="feature")
    assert found.workflow_rule is not None and "merge_request_event" in found.workflow_rule
    assert names(found) == ["review"]
    review = found.jobs[0]
    assert (review.when, review.allow_failure) == ("manual", False)
    assert review.rule.startswith("rules[0] if: $CI_PIPELINE_SOURCE")
    assert "jobs without rules or only do not run in merge request pipelines" in dict(found.excluded)["build"]


def test_tag_pipeline(project: Path) -> None:
    for found in (listing(project, tag="v1.0"), listing(project, source="tag", tag="v1.0")):
        assert (found.source, found.ref, found.ref_kind) == ("push", "v1.0", "tag")
        assert "release" in names(found)
        assert dict((j.name, j.rule) for j in found.jobs)["release"] == 'only: ["tags"]'


def test_schedule_and_variables(project: Path) -> None:
    assert "nightly" in names(listing(project, source="schedule"))
    forced = listing(project, variables={"FORCE_NIGHTLY": "1"})
    nightly = next(j for j in forced.jobs if j.name == "nightly")
    assert (nightly.when, nightly.start_in_s, nightly.rule) == ("delayed", 600, "rules[1] if: $FORCE_NIGHTLY")


def test_workflow_filters_out(project: Path) -> None:
    web = listing(project, source="web")
    assert not web.filtered_out and web.workflow_rule == "rules[3] if: $CI_COMMIT_BRANCH"
    (project / "wf.yml").write_text("workflow: {rules: [{if: $CI_COMMIT_TAG}]}\njob: {script: echo}\n")
    context, source, ref, kind = ref_context(git_info(project), project_dir=project)
    found = list_pipeline(project, "wf.yml", context, source=source, ref=ref, ref_kind=kind)
    assert found.filtered_out and found.workflow_rule is None and not found.errors


def test_jobs_are_listed_even_when_another_job_has_an_error(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(
        textwrap.dedent(
            """
            good: {script: echo}
            broken: {script: echo, timeout: forever}
            ghost: {script: echo, needs: [nowhere]}
            """
        )
    )
    context, source, ref, kind = ref_context(git_info(tmp_path), project_dir=tmp_path)
    found = list_pipeline(tmp_path, ".gitlab-ci.yml", context, source=source, ref=ref, ref_kind=kind)
    assert len(found.errors) == 2
    by_name = {j.name: j for j in found.jobs}
    assert set(by_name) == {"good", "broken", "ghost"}
    assert by_name["good"].errors == ()
    assert len(by_name["broken"].errors) == 1 and "forever" in by_name["broken"].errors[0]
    assert "nowhere" in by_name["ghost"].errors[0]


def test_an_unreadable_file_lists_nothing_and_says_why(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text("job: [unclosed\n")
    context, *_ = ref_context(git_info(tmp_path), project_dir=tmp_path)
    found = list_pipeline(tmp_path, ".gitlab-ci.yml", context)
    assert not found.readable and found.jobs == () and found.errors


@pytest.mark.parametrize(
    ("source", "branch", "tag", "fragment"),
    [
        ("pushh", None, None, "--source pushh: not a pipeline source"),
        ("push", "a", "b", "give one of them"),
        ("tag", None, None, "--tag NAME"),
        ("merge_request_event", None, "v1", "not a tag"),
    ],
)
def test_bad_flags_say_what_to_do(
    project: Path, source: str, branch: str | None, tag: str | None, fragment: str
) -> None:
    with pytest.raises(AicdError) as info:
        listing(project, source=source, branch=branch, tag=tag)
    assert fragment in str(info.value)
