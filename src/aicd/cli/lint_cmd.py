"""`aicd lint`: every problem of the pipeline file at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aicd.cli.render import print_diagnostics
from aicd.cli.terminal import clean
from aicd.pipeline import PipelineContext, lint_pipeline
from aicd.pipeline.predefined import pipeline_variables
from aicd.vcs import git_info


def lint_command(project_dir: Path, file: str, as_json: bool) -> int:
    info = git_info(project_dir)
    predefined = pipeline_variables(
        info, pipeline_id=0, pipeline_iid=0, source="push", project_dir=project_dir, created_at=0.0
    )
    report = lint_pipeline(project_dir, file, PipelineContext(predefined=predefined))
    errors = [d for d in report.diagnostics if d.severity == "error"]
    if as_json:
        jobs = []
        if report.pipeline is not None:
            jobs = [
                {
                    "name": j.name,
                    "stage": j.stage,
                    "when": j.when,
                    "allow_failure": j.allow_failure,
                    "needs": None if j.needs is None else [n.job for n in j.needs],
                }
                for j in report.pipeline.jobs
            ]
        payload = {
            "valid": not errors,
            "diagnostics": [
                {
                    "file": d.file,
                    "line": d.line,
                    "column": d.column,
                    "path": d.path,
                    "severity": d.severity,
                    "message": d.message,
                    "text": str(d),
                }
                for d in report.diagnostics
            ],
            "stages": list(report.pipeline.stages) if report.pipeline else [],
            "jobs": jobs,
        }
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        print_diagnostics(report.diagnostics, sys.stdout)
        if not errors and report.pipeline is not None:
            n = len(report.pipeline.jobs)
            sys.stdout.write(f"{clean(file)}: valid, {n} job{'s' * (n != 1)}\n")
    return 2 if errors else 0
