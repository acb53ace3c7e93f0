"""The jobs a pipeline would have, without running it (`aicd lint --list`, `aicd run --dry-run`).

:func:`ref_context` makes the predefined variables of a pipeline of another
kind than the checkout's (a `--source`, a `--branch` or a `--tag`);
:func:`list_pipeline` reads the file in that context and returns every job
with its stage, `when`, `allow_failure` (and exit codes, listed as GitLab
does: `allow_failure: false` plus the codes), `needs`, and the rule that put
it in. Trigger jobs are listed and marked. Jobs are listed even when other
parts of the file have errors, as long as the file could be read; a job
whose own definition has an error carries it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.errors import AicdError, ConfigError, Diagnostic
from aicd.pipeline import PipelineContext
from aicd.pipeline.ir import Job, Variable
from aicd.pipeline.predefined import pipeline_variables
from aicd.vcs import GitInfo

# CI_PIPELINE_SOURCE values GitLab documents (`tag` is accepted too: a push of a tag)
SOURCES = (
    "push",
    "merge_request_event",
    "schedule",
    "web",
    "api",
    "trigger",
    "pipeline",
    "parent_pipeline",
    "chat",
    "external",
    "external_pull_request_event",
    "webide",
    "ondemand_dast_scan",
    "ondemand_dast_validation",
    "security_orchestration_policy",
)


@dataclass(frozen=True)
class ListedJob:
    name: str
    stage: str
    when: str
    allow_failure: bool  # as GitLab lists it: false when only some exit codes may fail
    exit_codes: tuple[int, ...]  # allow_failure:exit_codes
    needs: tuple[str, ...] | None  # None: the job waits for the earlier stages
    rule: str  # the rule (or only/except) that put the job in
    trigger: str | None = None  # for a trigger job: what it starts
    start_in_s: float | None = None
    errors: tuple[str, ...] = ()  # problems of this job's own definition

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stage": self.stage,
            "when": self.when,
            "allow_failure": self.allow_failure,
            "allow_failure_exit_codes": list(self.exit_codes),
            "needs": None if self.needs is None else list(self.needs),
            "rule": self.rule,
            "trigger": self.trigger,
            "start_in_s": self.start_in_s,
            "errors": list(self.errors),
        }


@dataclass(frozen=True)
class Listing:
    source: str
    ref: str  # the branch or tag
    ref_kind: str  # "branch" or "tag"
    stages: tuple[str, ...] = ()
    jobs: tuple[ListedJob, ...] = ()  # in stage order, then file order; trigger jobs included
    excluded: tuple[tuple[str, str], ...] = ()  # (job, why it is left out)
    diagnostics: tuple[Diagnostic, ...] = ()
    filtered_out: bool = False  # workflow:rules create no pipeline
    workflow_rule: str | None = None  # the workflow rule that created it
    readable: bool = True  # False: the file could not be read at all (no job is known)
    variables: tuple[str, ...] = field(default=())  # the --variable keys given (never their values)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def allow_failure_as_listed(job: Job) -> tuple[bool, tuple[int, ...]]:
    """GitLab lists `allow_failure: {exit_codes: [...]}` as `allow_failure: false` with the codes."""
    if job.allow_failure and job.allow_failure_exit_codes:
        return False, job.allow_failure_exit_codes
    return job.allow_failure, ()


def ref_context(
    info: GitInfo,
    *,
    project_dir: Path,
    source: str = "push",
    branch: str | None = None,
    tag: str | None = None,
    target_branch: str | None = None,
    variables: Sequence[Variable] = (),
) -> tuple[PipelineContext, str, str, str]:
    """The context of a pipeline of `source` for `branch` or `tag` (default: the checkout's ref).

    Returns (context, source, ref, "branch" or "tag"). Raises AicdError for
    an unknown source or flags that do not fit together.
    """
    if branch is not None and tag is not None:
        raise ConfigError("--branch and --tag: give one of them (a pipeline runs for a branch or a tag)")
    if source == "tag":  # a tag pipeline is a push of a tag
        tag = tag or info.tag
        if tag is None:
            raise ConfigError("--source tag: give the tag with --tag NAME (the checkout has no tag)")
        source = "push"
    if source not in SOURCES:
        raise ConfigError(f"--source {source}: not a pipeline source; use one of: tag, {', '.join(SOURCES)}")
    if source == "merge_request_event" and tag is not None:
        raise ConfigError(
            "--source merge_request_event: a merge request is for a branch, not a tag (--branch)"
        )
    if tag is not None:
        info = dataclasses.replace(info, tag=tag, branch=None, ref_name=tag)
    elif branch is not None:
        info = dataclasses.replace(info, tag=None, branch=branch, ref_name=branch)
    predefined = pipeline_variables(
        info, pipeline_id=0, pipeline_iid=0, source=source, project_dir=project_dir, created_at=0.0
    )
    if source == "merge_request_event":
        predefined = _merge_request_variables(predefined, info, target_branch or info.default_branch)
    ref = info.tag if info.tag is not None else (info.branch or info.ref_name)
    kind = "tag" if info.tag is not None else "branch"
    context = PipelineContext(predefined=predefined, variables=tuple(variables), child_pipelines=True)
    return context, source, ref, kind


def _merge_request_variables(predefined: list[Variable], info: GitInfo, target: str) -> list[Variable]:
    """A merge request pipeline: no CI_COMMIT_BRANCH; the CI_MERGE_REQUEST_* variables rules test."""
    source_branch = info.branch or info.ref_name
    values = {v.key: v.value for v in predefined}
    extra = {
        "CI_MERGE_REQUEST_ID": "1",
        "CI_MERGE_REQUEST_IID": "1",
        "CI_MERGE_REQUEST_EVENT_TYPE": "detached",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": source_branch,
        "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA": "",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": target,
        "CI_MERGE_REQUEST_TARGET_BRANCH_PROTECTED": "false",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": info.parent_sha,
        "CI_MERGE_REQUEST_PROJECT_PATH": values.get("CI_PROJECT_PATH", ""),
        "CI_MERGE_REQUEST_PROJECT_URL": values.get("CI_PROJECT_URL", ""),
        "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH": values.get("CI_PROJECT_PATH", ""),
        "CI_MERGE_REQUEST_TITLE": info.title,
        "CI_MERGE_REQUEST_REF_PATH": "refs/merge-requests/1/head",
    }
    kept = [v for v in predefined if v.key != "CI_COMMIT_BRANCH"]
    return [*kept, *(Variable(k, v, expand=False) for k, v in extra.items())]


def list_pipeline(
    project_dir: Path,
    file: str,
    context: PipelineContext,
    *,
    source: str = "push",
    ref: str = "",
    ref_kind: str = "branch",
) -> Listing:
    """Every job the pipeline would have in `context`; never raises for bad input."""
    from aicd.pipeline.lint import analyse, sort_diagnostics

    keys = tuple(v.key for v in context.variables)
    head = Listing(source=source, ref=ref, ref_kind=ref_kind, variables=keys)
    try:
        result = analyse(Path(project_dir), file, context)
    except AicdError as exc:
        diagnostics = getattr(exc, "diagnostics", None) or [Diagnostic(str(exc), file)]
        return dataclasses.replace(head, diagnostics=tuple(diagnostics), readable=False)
    except Exception as exc:  # a bug: a diagnostic, never a traceback
        text = f"internal error while listing the pipeline ({type(exc).__name__}: {exc}); please report it"
        return dataclasses.replace(head, diagnostics=(Diagnostic(text, file),), readable=False)
    diagnostics = sort_diagnostics(result.diagnostics)
    built = result.listing
    if built is None:
        return dataclasses.replace(head, diagnostics=tuple(diagnostics), readable=False)
    errors_of: dict[str, list[str]] = {}
    for d in diagnostics:
        if d.severity == "error" and d.path.startswith("jobs."):
            errors_of.setdefault(_job_of_path(d.path, built.jobs, built.triggers), []).append(str(d))
    order = {stage: i for i, stage in enumerate(built.stages)}
    rows: list[tuple[tuple[int, bool, int, int, int], ListedJob]] = []
    all_jobs = [(job, None) for job in built.jobs] + [
        (job, (needs, what)) for job, needs, what in built.triggers
    ]
    for index, (job, trigger) in enumerate(all_jobs):
        row = _row(job, built.included, errors_of)
        if trigger is not None:
            row = dataclasses.replace(row, needs=trigger[0], trigger=trigger[1])
        where = job.location
        key = (order.get(job.stage, 0), where.file != file, where.line, where.column, index)
        rows.append((key, row))
    rows.sort(key=lambda r: r[0])
    trigger_names = {job.name for job, _, _ in built.triggers}
    excluded = tuple((n, why) for n, why in built.excluded if n not in trigger_names)
    return dataclasses.replace(
        head,
        stages=built.stages,
        jobs=tuple(r[1] for r in rows),
        excluded=excluded,
        diagnostics=tuple(diagnostics),
        filtered_out=result.filtered_out,
        workflow_rule=built.workflow_rule,
    )


def _row(job: Job, included: dict[str, str], errors_of: dict[str, list[str]]) -> ListedJob:
    allow, codes = allow_failure_as_listed(job)
    return ListedJob(
        name=job.name,
        stage=job.stage,
        when=job.when,
        allow_failure=allow,
        exit_codes=codes,
        needs=None if job.needs is None else tuple(n.job for n in job.needs),
        rule=included.get(job.name, "(no rules)"),
        start_in_s=job.start_in_s,
        errors=tuple(errors_of.get(job.base_name, ())),
        trigger=None if job.trigger is None else _child_text(job),
    )


def _child_text(job: Job) -> str:
    trigger = job.trigger
    assert trigger is not None
    text = f"child pipeline: {trigger.include}"
    if trigger.artifact_job is not None:
        text += f" (artifact of {trigger.artifact_job})"
    return text


def _job_of_path(path: str, jobs: Sequence[Job], triggers: Sequence[tuple[Job, Any, str]]) -> str:
    """The job (base name) a diagnostic path `jobs.<name>.<key>...` is about (names may hold dots)."""
    rest = path.removeprefix("jobs.")
    names = {j.base_name for j in jobs} | {j.base_name for j, _, _ in triggers}
    for name in sorted(names, key=len, reverse=True):
        if rest == name or rest.startswith(name + "."):
            return name
    return rest.split(".", 1)[0]
