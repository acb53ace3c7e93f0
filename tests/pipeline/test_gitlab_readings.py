"""Pipelines GitLab reads that aicd misread (issue 13, part 1): one minimal pipeline for each."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aicd.errors import PipelineError
from aicd.pipeline import PipelineContext, lint_pipeline, load_pipeline
from aicd.pipeline.ir import Pipeline, Variable


def _ctx(project_path: str = "group/project", ref: str = "release/1.0") -> PipelineContext:
    return PipelineContext(
        predefined=(
            Variable("CI_COMMIT_BRANCH", ref, expand=False),
            Variable("CI_COMMIT_REF_NAME", ref, expand=False),
            Variable("CI_PIPELINE_SOURCE", "push", expand=False),
            Variable("CI_PROJECT_PATH", project_path, expand=False),
        )
    )


def load(tmp_path: Path, text: str, context: PipelineContext | None = None) -> Pipeline:
    (tmp_path / ".gitlab-ci.yml").write_text(textwrap.dedent(text))
    return load_pipeline(tmp_path, ".gitlab-ci.yml", context or _ctx())


def lint_texts(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / ".gitlab-ci.yml").write_text(textwrap.dedent(text))
    return [str(d) for d in lint_pipeline(tmp_path, ".gitlab-ci.yml", _ctx()).diagnostics]


def test_cache_as_a_list_of_references_is_flattened(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        .pip:
          cache:
            - {key: pip, paths: [.pip/]}
            - {key: venv, paths: [.venv/]}
        .npm:
          cache: {key: npm, paths: [node_modules/]}
        job:
          script: echo
          cache:
            - !reference [.pip, cache]
            - !reference [.npm, cache]
        """,
    )
    assert [c.key for c in p.job("job").cache] == ["pip", "venv", "npm"]


def test_flattened_cache_still_counts_at_most_four(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(
        textwrap.dedent(
            """
            .many:
              cache: [{key: a, paths: [a]}, {key: b, paths: [b]}, {key: c, paths: [c]}]
            job:
              script: echo
              cache: [!reference [.many, cache], !reference [.many, cache]]
            """
        )
    )
    with pytest.raises(PipelineError, match="has 6 entries; GitLab allows at most 4"):
        load_pipeline(tmp_path, ".gitlab-ci.yml", _ctx())


ONLY_IN_PROJECT = """
job:
  script: echo
  only: ['/^release/.*$/@group/project']
other:
  script: echo
  except: ['/^release/.*$/@group/project']
"""


def test_only_regex_with_a_project_path_runs_only_in_that_project(tmp_path: Path) -> None:
    here = load(tmp_path, ONLY_IN_PROJECT, _ctx("group/project"))
    assert [j.name for j in here.jobs] == ["job"]
    elsewhere = load(tmp_path, ONLY_IN_PROJECT, _ctx("someone/fork"))
    assert [j.name for j in elsewhere.jobs] == ["other"]
    other_ref = load(tmp_path, ONLY_IN_PROJECT, _ctx("group/project", ref="main"))
    assert [j.name for j in other_ref.jobs] == ["other"]


def test_only_regex_with_a_project_path_still_checks_the_regex(tmp_path: Path) -> None:
    found = lint_texts(tmp_path, "job:\n  script: echo\n  only: ['/^release/(/@group/project']\n")
    assert any("is not a valid regular expression" in t for t in found), found


@pytest.mark.parametrize(
    ("keyword", "text", "seconds"),
    [
        ("timeout", "two hours", 7200),
        ("timeout", "1 day and 3 hours", 97200),
        ("start_in", "ten minutes", 600),
    ],
)
def test_durations_in_words(tmp_path: Path, keyword: str, text: str, seconds: float) -> None:
    when = "\n  when: delayed" if keyword == "start_in" else ""
    p = load(tmp_path, f"job:\n  script: echo\n  {keyword}: {text}{when}\n")
    job = p.job("job")
    assert (job.timeout_s if keyword == "timeout" else job.start_in_s) == seconds


def test_expire_in_in_words(tmp_path: Path) -> None:
    p = load(tmp_path, "job:\n  script: echo\n  artifacts:\n    paths: [x]\n    expire_in: one week\n")
    assert p.job("job").artifacts is not None


def test_dependencies_on_a_job_of_the_same_stage(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        a: {script: echo}
        b: {script: echo, dependencies: [a]}
        c: {script: echo, needs: [a], dependencies: [a]}
        """,
    )
    assert p.job("b").dependencies == ("a",) and p.job("c").dependencies == ("a",)
    # without needs, b runs alongside a and gets none of its artifacts: said once, for b only
    notes = [w for w in p.warnings if "same stage" in w]
    assert len(notes) == 1 and "needs: [a]" in notes[0] and 'job "b"' in notes[0]


@pytest.mark.parametrize(
    ("rule", "allow_failure"),
    [
        ("{if: $CI_COMMIT_BRANCH}", True),  # GitLab issue 362225: the job's when: manual decides
        ("{if: $CI_COMMIT_BRANCH, when: manual}", True),
        ("{if: $CI_COMMIT_BRANCH, allow_failure: false}", False),
    ],
)
def test_job_level_manual_with_rules_may_fail(tmp_path: Path, rule: str, allow_failure: bool) -> None:
    p = load(tmp_path, f"job:\n  script: echo\n  when: manual\n  rules: [{rule}]\n")
    assert (p.job("job").when, p.job("job").allow_failure) == ("manual", allow_failure)


def test_a_manual_rule_alone_blocks(tmp_path: Path) -> None:
    p = load(tmp_path, "job:\n  script: echo\n  rules: [{if: $CI_COMMIT_BRANCH, when: manual}]\n")
    assert (p.job("job").when, p.job("job").allow_failure) == ("manual", False)


def test_error_in_a_template_is_reported_once_at_the_template(tmp_path: Path) -> None:
    found = lint_texts(
        tmp_path,
        """
        .tpl:
          script: echo
          timeout: banana
        a:
          extends: .tpl
        b:
          extends: .tpl
        d:
          script: echo
          timeout: nope
        """,
    )
    banana = [t for t in found if "banana" in t]
    assert len(banana) == 1, found
    assert banana[0].startswith(".gitlab-ci.yml:4:3: ")
    assert 'template ".tpl" (used by jobs "a", "b"' in banana[0]
    # an error in a job's own text stays the job's
    assert any('job "d": timeout is not a duration' in t for t in found), found


def test_a_job_named_default_is_a_reserved_name(tmp_path: Path) -> None:
    found = lint_texts(tmp_path, "default:\n  stage: test\n  script: echo\njob:\n  script: echo\n")
    assert any('"default" is a reserved name' in t and "rename the job" in t for t in found), found
    assert not any("did you mean" in t for t in found), found


def test_an_error_in_an_included_job_stays_the_jobs_even_after_a_template(tmp_path: Path) -> None:
    (tmp_path / "inc.yml").write_text(".tpl:\n  script: echo\njob-a:\n  script: echo\n  timeout: banana\n")
    found = lint_texts(
        tmp_path, "include: [{local: inc.yml}]\njob-a:\n  variables: {X: '1'}\nb:\n  extends: .tpl\n"
    )
    assert any(t.startswith('inc.yml:5:3: job "job-a": timeout') for t in found), found
