"""aicd.pipeline: `.gitlab-ci.yml` -> a validated, frozen :class:`Pipeline`.

Public API:

- :func:`load_pipeline` builds the pipeline of a project for one run's
  context, raising :class:`~aicd.errors.PipelineError` with every problem
  found, or :class:`~aicd.errors.WorkflowFilteredOut` when `workflow:rules`
  create no pipeline.
- :func:`lint_pipeline` reports every problem (errors and warnings, sorted by
  place) and never raises for any input.

The heavy modules (YAML loading, the builder) are imported when first used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aicd.errors import PipelineError, WorkflowFilteredOut
from aicd.pipeline.ir import Pipeline, Variable

if TYPE_CHECKING:
    from aicd.pipeline.lint import LintReport
    from aicd.pipeline.rules import ChangedFiles

__all__ = ["LintReport", "Pipeline", "PipelineContext", "lint_pipeline", "load_pipeline"]


@dataclass(frozen=True)
class PipelineContext:
    """What the run knows besides the YAML."""

    predefined: Sequence[Variable] = ()  # CI_* variables
    variables: Sequence[Variable] = ()  # pipeline variables (CLI, files): highest precedence
    # None: unknown, `changes` is always true; a ChangedFiles: found when a `changes` clause asks
    changed_files: Sequence[str] | ChangedFiles | None = None
    # For `rules:changes:compare_to`: the files changed since a ref (None: unknown).
    changes_since: Callable[[str], Sequence[str] | None] | None = None
    # Trigger jobs with `trigger: include` of a local file become jobs that run a child
    # pipeline (the caller runs them); otherwise they are left out with a warning.
    child_pipelines: bool = False


def load_pipeline(
    project_dir: Path, file: str = ".gitlab-ci.yml", context: PipelineContext = PipelineContext()
) -> Pipeline:
    """The pipeline `file` of `project_dir` makes in `context`.

    Raises PipelineError with every error found (each located), or
    WorkflowFilteredOut when `workflow:rules` create no pipeline.
    """
    from aicd.pipeline.lint import analyse, sort_diagnostics

    result = analyse(Path(project_dir), file, context)
    errors = [d for d in result.diagnostics if d.severity == "error"]
    if errors:
        raise PipelineError(sort_diagnostics(errors))
    if result.filtered_out or result.pipeline is None:
        raise WorkflowFilteredOut(f"{file}: workflow:rules create no pipeline for this ref and source")
    jobs = result.pipeline.jobs
    if jobs and all(j.stage in (".pre", ".post") for j in jobs):
        # GitLab: "If a pipeline contains only jobs in the .pre or .post
        # stages, it does not run."
        raise WorkflowFilteredOut(
            f"{file}: no pipeline is created: it has only .pre/.post jobs "
            "(GitLab runs a pipeline only when a job is in another stage)"
        )
    return result.pipeline


def lint_pipeline(
    project_dir: Path, file: str = ".gitlab-ci.yml", context: PipelineContext = PipelineContext()
) -> LintReport:
    """Every problem of the pipeline file (errors and warnings, sorted); never raises for bad input."""
    from aicd.pipeline.lint import lint

    return lint(Path(project_dir), file, context)


def __getattr__(name: str) -> object:
    if name == "LintReport":
        from aicd.pipeline.lint import LintReport

        return LintReport
    raise AttributeError(name)
