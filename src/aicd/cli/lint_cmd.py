"""`aicd lint`: every problem of the pipeline file at once; `--list` (and `aicd run --dry-run`): its jobs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aicd.cli.render import print_diagnostics
from aicd.cli.tables import table
from aicd.cli.terminal import clean
from aicd.errors import Diagnostic
from aicd.pipeline import lint_pipeline
from aicd.pipeline.ir import Variable
from aicd.pipeline.listing import ListedJob, Listing, allow_failure_as_listed, list_pipeline, ref_context
from aicd.vcs import git_info


def lint_command(
    project_dir: Path,
    file: str,
    as_json: bool,
    *,
    list_jobs: bool = False,
    source: str = "push",
    branch: str | None = None,
    tag: str | None = None,
    target_branch: str | None = None,
    variables: Sequence[Variable] = (),
) -> int:
    """Exit code: 0 valid, 2 an error in the file (or in the flags)."""
    context, source, ref, ref_kind = ref_context(
        git_info(project_dir),
        project_dir=project_dir,
        source=source,
        branch=branch,
        tag=tag,
        target_branch=target_branch,
        variables=variables,
    )
    if list_jobs:
        listing = list_pipeline(project_dir, file, context, source=source, ref=ref, ref_kind=ref_kind)
        if as_json:
            sys.stdout.write(json.dumps(listing_json(listing)) + "\n")
        else:
            print_listing(listing, file)
        return 2 if listing.errors else 0
    report = lint_pipeline(project_dir, file, context)
    errors = [d for d in report.diagnostics if d.severity == "error"]
    if as_json:
        jobs = []
        if report.pipeline is not None:
            for j in report.pipeline.jobs:
                allow, codes = allow_failure_as_listed(j)
                jobs.append(
                    {
                        "name": j.name,
                        "stage": j.stage,
                        "when": j.when,
                        "allow_failure": allow,
                        "allow_failure_exit_codes": list(codes),
                        "needs": None if j.needs is None else [n.job for n in j.needs],
                    }
                )
        payload = {
            "valid": not errors,
            "diagnostics": [_diagnostic_json(d) for d in report.diagnostics],
            "stages": list(report.pipeline.stages) if report.pipeline else [],
            "jobs": jobs,
        }
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        print_diagnostics(report.diagnostics, sys.stdout)
        if not errors and report.pipeline is not None:
            n = len(report.pipeline.jobs)
            sys.stdout.write(f"{clean(file)}: valid, {n} job{'s' * (n != 1)}\n")
        elif not errors:
            # workflow:rules (or only .pre/.post jobs) make no pipeline here: still say the file is valid
            where = f"{ref_kind} {clean(ref)} (source {source})"
            sys.stdout.write(f"{clean(file)}: valid, but no pipeline for {where}\n")
    return 2 if errors else 0


def _diagnostic_json(d: Diagnostic) -> dict[str, Any]:
    return {
        "file": d.file,
        "line": d.line,
        "column": d.column,
        "path": d.path,
        "severity": d.severity,
        "message": d.message,
        "text": str(d),
    }


def listing_json(listing: Listing) -> dict[str, Any]:
    return {
        "valid": not listing.errors,
        "source": listing.source,
        "ref": listing.ref,
        "ref_kind": listing.ref_kind,
        "pipeline": listing.readable and not listing.filtered_out,
        "workflow_rule": listing.workflow_rule,
        "stages": list(listing.stages),
        "jobs": [j.as_json() for j in listing.jobs] if not listing.filtered_out else [],
        "excluded": [{"name": n, "reason": why} for n, why in listing.excluded],
        "diagnostics": [_diagnostic_json(d) for d in listing.diagnostics],
    }


def print_listing(listing: Listing, file: str) -> None:
    print_diagnostics(listing.diagnostics, sys.stdout)
    if not listing.readable:
        return
    what = f"{listing.ref_kind} {clean(listing.ref)} (source {listing.source})"
    if listing.filtered_out:
        sys.stdout.write(f"{clean(file)}: workflow:rules create no pipeline for {what}\n")
        return
    jobs = [j for j in listing.jobs if j.trigger is None]
    triggers = [j for j in listing.jobs if j.trigger is not None]
    counts = [f"{len(jobs)} job{'s' * (len(jobs) != 1)}"]
    if triggers:
        counts.append(f"{len(triggers)} trigger job{'s' * (len(triggers) != 1)}")
    if listing.excluded:
        counts.append(f"{len(listing.excluded)} left out")
    sys.stdout.write(f"{clean(file)}: pipeline for {what}: {', '.join(counts)}\n")
    if listing.workflow_rule:
        sys.stdout.write(f"workflow: {listing.workflow_rule}\n")
    if listing.jobs:
        sys.stdout.write("\n")
        table(
            [_cells(j) for j in listing.jobs],
            ("STAGE", "JOB", "WHEN", "ALLOW FAILURE", "NEEDS", "INCLUDED BY"),
        )
    if listing.excluded:
        sys.stdout.write("\nleft out:\n")
        table([("", name, why) for name, why in listing.excluded], ("", "JOB", "WHY"))
    sys.stdout.flush()


def _cells(job: ListedJob) -> tuple[str, ...]:
    name = job.name
    if job.trigger is not None:
        name += f"  [trigger: {job.trigger}]"
    if job.errors:
        name += f"  ({len(job.errors)} error{'s' * (len(job.errors) != 1)})"
    when = job.when
    if job.when == "delayed" and job.start_in_s is not None:
        when += f" ({job.start_in_s:g}s)"
    if job.exit_codes:
        allow = "no; yes for exit " + ", ".join(map(str, job.exit_codes))
    else:
        allow = "yes" if job.allow_failure else "no"
    needs = "(earlier stages)" if job.needs is None else ("[]" if not job.needs else ", ".join(job.needs))
    return job.stage, name, when, allow, needs, job.rule
