"""lint_pipeline: every problem at once, sorted, located; never raises."""

from __future__ import annotations

import textwrap
from pathlib import Path

from aicd.pipeline import LintReport, PipelineContext, lint_pipeline
from aicd.pipeline.ir import Variable

CTX = PipelineContext(
    predefined=(Variable("CI_COMMIT_BRANCH", "main"), Variable("CI_COMMIT_REF_NAME", "main")),
)


def lint(tmp_path: Path, text: str, file: str = ".gitlab-ci.yml") -> LintReport:
    (tmp_path / file).write_text(textwrap.dedent(text))
    return lint_pipeline(tmp_path, file, CTX)


def test_valid_pipeline_has_a_pipeline_and_no_errors(tmp_path: Path) -> None:
    report = lint(
        tmp_path, "build:\n  stage: build\n  script: make\ntest:\n  needs: [build]\n  script: make test\n"
    )
    assert report.valid and report.errors == []
    assert report.pipeline is not None
    assert [j.name for j in report.pipeline.jobs] == ["build", "test"]


def test_every_error_sorted_by_line_with_file_line_column(tmp_path: Path) -> None:
    report = lint(
        tmp_path,
        """
        z-job:
          script: echo
          needs: [nope]
        a-job:
          stage: nowhere
          script: echo
        b-job:
          script: echo
          when: later
        variables: [X]
        """,
    )
    assert report.pipeline is None and not report.valid
    lines = [d.line for d in report.diagnostics]
    assert lines == sorted(lines)
    texts = [str(d) for d in report.errors]
    assert len(texts) == 4, texts
    assert texts[0].startswith(".gitlab-ci.yml:4:11: ") and 'needs "nope"' in texts[0]
    assert any(t.startswith(".gitlab-ci.yml:6:3: ") and 'stage "nowhere"' in t for t in texts)
    assert any(t.startswith(".gitlab-ci.yml:10:3: ") and "when must be one of" in t for t in texts)
    assert any(t.startswith(".gitlab-ci.yml:11:1: ") and "variables must be a mapping" in t for t in texts)
    assert all(d.path for d in report.errors)


def test_warnings_are_reported_with_a_valid_pipeline(tmp_path: Path) -> None:
    report = lint(tmp_path, "types: [a]\njob:\n  stage: a\n  image: alpine\n  script: echo\n")
    assert report.valid and report.pipeline is not None
    assert {d.severity for d in report.diagnostics} == {"warning"}
    texts = [str(d) for d in report.diagnostics]
    assert any("warning: types is deprecated" in t and t.startswith(".gitlab-ci.yml:1:1:") for t in texts)
    assert any("image is ignored: aicd runs jobs in the local shell (jobs: job)" in t for t in texts)


def test_duplicate_keys_warn_from_the_loader(tmp_path: Path) -> None:
    report = lint(tmp_path, "job:\n  script: echo\njob:\n  script: echo again\n")
    assert report.valid
    assert any(d.severity == "warning" and d.line for d in report.diagnostics)


def test_workflow_filtered_out_is_a_warning_and_no_pipeline(tmp_path: Path) -> None:
    report = lint(tmp_path, "workflow:\n  rules:\n    - if: $CI_COMMIT_TAG\njob:\n  script: echo\n")
    assert report.valid and report.pipeline is None
    assert any("workflow:rules create no pipeline" in d.message for d in report.warnings)


def test_lint_still_checks_jobs_when_workflow_filters_out(tmp_path: Path) -> None:
    report = lint(tmp_path, "workflow:\n  rules:\n    - when: never\njob:\n  scirpt: echo\n")
    assert any('unknown keyword "scirpt"' in d.message for d in report.errors)


def test_missing_file_is_a_diagnostic_not_an_exception(tmp_path: Path) -> None:
    report = lint_pipeline(tmp_path, "nope.yml", CTX)
    assert report.pipeline is None and len(report.errors) == 1
    assert report.errors[0].file == "nope.yml"


def test_lint_of_a_directory_is_a_diagnostic(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    report = lint_pipeline(tmp_path, "sub", CTX)
    assert report.errors and report.pipeline is None


def test_rules_problems_in_jobs_left_out_are_still_reported(tmp_path: Path) -> None:
    report = lint(tmp_path, "job:\n  script: echo\n  rules:\n    - if: $A == 'x'\n      wen: always\n")
    assert any("wen" in d.message and d.line == 5 for d in report.errors)
