"""GitLab's rules for whether a job runs, and whether a failed attempt is retried.

Whether a job runs is decided once, when every job it waits for is settled
(finished, left `manual`, or blocked). As GitLab does, the statuses of those
jobs are first folded into one *upstream status*, then the job's `when`
says which upstream statuses let it run:

=============  ==========================================  ===========
when           runs when the upstream status is            else
=============  ==========================================  ===========
on_success     success (stage order: success or skipped)   skipped
manual         like on_success, then waits to be played    skipped
delayed        like on_success, then waits `start_in`      skipped
on_failure     failed                                      skipped
always         success, failed or skipped                  skipped
=============  ==========================================  ===========

and an upstream status of `blocked` leaves the job `created` whatever its
`when`. The folding (GitLab's composite status): a job that failed with
`allow_failure` counts as a success with a warning; an unplayed manual job
with `allow_failure: true` is ignored, one with `allow_failure: false`
blocks; with `needs` (a DAG job), any skipped or ignored need makes the
upstream `skipped`; otherwise any failure makes it `failed`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from aicd.engine.model import JobResult
from aicd.engine.status import JobStatus
from aicd.executors.base import JobOutcome
from aicd.pipeline.ir import Retry, When

Upstream = Literal["success", "failed", "skipped", "canceled", "blocked"]
Action = Literal["run", "skip", "block"]

_VALID: dict[str, frozenset[Upstream]] = {
    "on_success": frozenset({"success", "skipped"}),
    "on_failure": frozenset({"failed"}),
    "always": frozenset({"success", "failed", "skipped"}),
}

# GitLab failure reason -> the `retry:when` words that cover it (besides `always`).
_RETRY_WHEN: dict[str, frozenset[str]] = {
    "script_failure": frozenset({"script_failure"}),
    "job_execution_timeout": frozenset({"job_execution_timeout", "stuck_or_timeout_failure"}),
    "runner_system_failure": frozenset({"runner_system_failure"}),
    "unknown_failure": frozenset({"unknown_failure"}),
}


def _kind(r: JobResult) -> str:
    status = r.status
    if status == JobStatus.SUCCESS:
        return "success"
    if status in (JobStatus.FAILED, JobStatus.CANCELED):
        return "warning" if r.allowed_failure else str(status)
    if status == JobStatus.SKIPPED:
        return "skipped"
    if status == JobStatus.MANUAL:
        return "ignored" if r.job.allow_failure else "manual"
    return "created"  # blocked (or, defensively, anything not settled)


def upstream_status(deps: Iterable[JobResult], *, dag: bool) -> tuple[Upstream, str | None]:
    """The upstream status of a job waiting for `deps`, and the blocking manual job if blocked.

    `dag`: the job uses `needs` (else it waits for every job of earlier stages).
    """
    deps = list(deps)
    kinds = {_kind(r) for r in deps}
    if dag and kinds & {"skipped", "ignored"}:
        return "skipped", None
    if not kinds or kinds <= {"success", "warning", "skipped", "ignored"}:
        return ("skipped" if kinds and kinds <= {"skipped", "ignored"} else "success"), None
    if kinds <= {"canceled", "success", "warning", "skipped", "ignored"}:
        return "canceled", None
    if kinds & {"created", "manual"}:
        return "blocked", _blocker(deps)
    return "failed", None


def _blocker(deps: list[JobResult]) -> str | None:
    for r in deps:
        if r.status == JobStatus.MANUAL and not r.job.allow_failure:
            return r.job.name
        if r.blocked_by is not None:
            return r.blocked_by
    return None


def decide(when: When, upstream: Upstream, *, dag: bool) -> Action:
    """Run, skip, or stay blocked (`created`)."""
    if upstream == "blocked":
        return "block"
    if when in ("on_success", "manual", "delayed"):
        return "run" if upstream == "success" or (upstream == "skipped" and not dag) else "skip"
    valid = _VALID.get(when)
    return "run" if valid is not None and upstream in valid else "skip"


def retry_wanted(retry: Retry, outcome: JobOutcome, attempt: int) -> bool:
    """Whether failed attempt number `attempt` (1-based) is retried.

    As GitLab: while `attempt <= retry.max`, a failure is retried when its
    reason is in `retry.when` (or `when` has `always`), or when its exit code
    is in `retry.exit_codes`. `retry: {max, exit_codes}` without `when` means
    the exit codes only (the front end gives it an empty `when`). A
    canceled attempt is never retried.
    """
    if outcome.status != "failed" or attempt > retry.max:
        return False
    if retry.exit_codes and outcome.exit_code is not None and outcome.exit_code in retry.exit_codes:
        return True
    when = set(retry.when)
    if "always" in when:
        return True
    reason = outcome.failure_reason or "unknown_failure"
    return bool(_RETRY_WHEN.get(reason, frozenset({reason})) & when)
