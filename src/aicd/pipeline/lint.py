"""Run the front end (load, then build) and report every problem; the core of `aicd lint`.

:func:`analyse` is what :func:`aicd.pipeline.load_pipeline` uses too: it
turns every problem a user can cause into a located diagnostic, including
the loader's errors, YAML nested too deep for the parser, and files too big
to hold. :func:`lint` goes further and never raises at all: an unexpected
failure becomes an "internal error" diagnostic that asks for a report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aicd.errors import AicdError, Diagnostic, PipelineError
from aicd.pipeline.ir import Pipeline

if TYPE_CHECKING:
    from aicd.pipeline import PipelineContext
    from aicd.pipeline.build import BuildResult


@dataclass(frozen=True)
class LintReport:
    """Every problem of a pipeline file, and its pipeline when there is none."""

    diagnostics: list[Diagnostic] = field(default_factory=list)  # errors and warnings, by file/line
    pipeline: Pipeline | None = None  # None when there is an error or workflow:rules filter it out

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity != "error"]

    @property
    def valid(self) -> bool:
        return not self.errors


def sort_diagnostics(items: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted(items, key=lambda d: (d.file, d.line, d.column))


def analyse(project_dir: Path, file: str, context: PipelineContext) -> BuildResult:
    """Load and build; every user-caused problem is in the result's diagnostics, each error located.

    An error about the whole file (too big, not UTF-8...) is placed at its line 1, column 1.
    """
    result = _analyse(project_dir, file, context)
    result.diagnostics = [_place(d, file) for d in result.diagnostics]
    return result


def _place(d: Diagnostic, file: str) -> Diagnostic:
    if d.severity != "error" or d.line:
        return d
    return dataclasses.replace(d, file=d.file or file, line=1, column=1)


def _analyse(project_dir: Path, file: str, context: PipelineContext) -> BuildResult:
    from aicd.pipeline.build import BuildContext, BuildResult, build_pipeline
    from aicd.pipeline.loader import load_document
    from aicd.pipeline.rules import RuleContext
    from aicd.pipeline.variables import resolve

    lookup = resolve([*context.predefined, *context.variables])
    rule_ctx = RuleContext(
        variables=lookup,
        project_dir=project_dir,
        changed_files=context.changed_files,
        changes_since=context.changes_since,
    )
    try:
        root, document = load_document(project_dir, file, rule_ctx)
        build_ctx = BuildContext(
            predefined=context.predefined,
            variables=context.variables,
            changed_files=context.changed_files,
            project_dir=project_dir,
            file=file,
            changes_since=context.changes_since,
            child_pipelines=context.child_pipelines,
        )
        return build_pipeline(root, build_ctx, document.warnings)
    except PipelineError as exc:
        return BuildResult(sort_diagnostics(exc.diagnostics))
    except RecursionError:
        text = "the YAML is nested too deeply to read: flatten the structure"
        return BuildResult([Diagnostic(text, file, 1, 1)])
    except MemoryError:
        return BuildResult([Diagnostic("the pipeline is too large to hold in memory", file, 1, 1)])


def lint(project_dir: Path, file: str, context: PipelineContext) -> LintReport:
    """Every problem, sorted by place; never raises."""
    try:
        result = analyse(project_dir, file, context)
    except AicdError as exc:
        diagnostics = getattr(exc, "diagnostics", None) or [Diagnostic(str(exc), file)]
        return LintReport(sort_diagnostics(diagnostics), None)
    except Exception as exc:  # a bug: report it as a diagnostic, never a traceback
        text = f"internal error while checking the pipeline ({type(exc).__name__}: {exc}); please report it"
        return LintReport([Diagnostic(text, file)], None)
    diagnostics = list(result.diagnostics)
    if result.filtered_out and not result.errors:
        diagnostics.append(
            Diagnostic(
                "workflow:rules create no pipeline for this ref and source: no job would run",
                file,
                severity="warning",
            )
        )
    pipeline = result.pipeline if not result.errors and not result.filtered_out else None
    return LintReport(sort_diagnostics(diagnostics), pipeline)
