"""GitLab's run/skip/block rules and retry rule, as plain functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicd.engine.decision import decide, retry_wanted, upstream_status
from aicd.engine.model import JobResult
from aicd.engine.status import JobStatus, failure_allowed
from aicd.executors.base import JobOutcome
from aicd.pipeline.ir import Job, Retry


def result(status: str, *, allow: bool = False, allowed: bool = False, name: str = "x") -> JobResult:
    job = Job(name=name, base_name=name, stage="test", allow_failure=allow)
    return JobResult(job, 1, JobStatus(status), allowed_failure=allowed)


OK = result("success")
FAIL = result("failed")
WARN = result("failed", allow=True, allowed=True)
SKIP = result("skipped")
CANCELED = result("canceled")
OPTIONAL = result("manual", allow=True)
BLOCKING = result("manual", name="gate")
BLOCKED = JobResult(Job(name="b", base_name="b", stage="test"), 2, blocked_by="gate")


@pytest.mark.parametrize(
    ("deps", "dag", "expected"),
    [
        ([], False, "success"),
        ([], True, "success"),
        ([OK, WARN], False, "success"),
        ([OK, WARN], True, "success"),
        ([OK, SKIP], False, "success"),
        ([OK, SKIP], True, "skipped"),
        ([SKIP], False, "skipped"),
        ([OK, OPTIONAL], False, "success"),
        ([OK, OPTIONAL], True, "skipped"),
        ([OPTIONAL], False, "skipped"),
        ([OK, FAIL], False, "failed"),
        ([SKIP, FAIL], False, "failed"),
        ([SKIP, FAIL], True, "skipped"),
        ([OK, CANCELED], False, "canceled"),
        ([FAIL, CANCELED], False, "failed"),
        ([OK, BLOCKING], False, "blocked"),
        ([OK, BLOCKING], True, "blocked"),
        ([FAIL, BLOCKING], False, "blocked"),
        ([OK, BLOCKED], False, "blocked"),
    ],
)
def test_upstream_status(deps: list[JobResult], dag: bool, expected: str) -> None:
    assert upstream_status(deps, dag=dag)[0] == expected


def test_blocked_names_the_manual_job() -> None:
    assert upstream_status([OK, BLOCKED], dag=False) == ("blocked", "gate")
    assert upstream_status([BLOCKING], dag=True) == ("blocked", "gate")


@pytest.mark.parametrize(
    ("when", "upstream", "dag", "expected"),
    [
        ("on_success", "success", False, "run"),
        ("on_success", "skipped", False, "run"),
        ("on_success", "skipped", True, "skip"),
        ("on_success", "failed", False, "skip"),
        ("on_success", "canceled", False, "skip"),
        ("manual", "success", True, "run"),
        ("manual", "failed", False, "skip"),
        ("delayed", "failed", False, "skip"),
        ("on_failure", "failed", True, "run"),
        ("on_failure", "success", False, "skip"),
        ("on_failure", "skipped", True, "skip"),
        ("always", "failed", False, "run"),
        ("always", "skipped", True, "run"),
        ("always", "canceled", False, "skip"),
        ("always", "blocked", False, "block"),
        ("on_failure", "blocked", True, "block"),
    ],
)
def test_decide(when: str, upstream: str, dag: bool, expected: str) -> None:
    assert decide(when, upstream, dag=dag) == expected  # type: ignore[arg-type]


def outcome(
    status: str = "failed", code: int | None = 1, reason: str | None = "script_failure"
) -> JobOutcome:
    return JobOutcome(status, code, reason, 0.0, 1.0, Path("log"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("retry", "out", "attempt", "expected"),
    [
        (Retry(max=0), outcome(), 1, False),
        (Retry(max=2), outcome(), 2, True),
        (Retry(max=2), outcome(), 3, False),
        (Retry(max=2), outcome("canceled", None, "canceled"), 1, False),
        (Retry(max=2), outcome("success", 0, None), 1, False),
        (Retry(max=1, when=("script_failure",)), outcome(), 1, True),
        (Retry(max=1, when=("script_failure",)), outcome(reason="job_execution_timeout"), 1, False),
        (Retry(max=1, when=("job_execution_timeout",)), outcome(reason="job_execution_timeout"), 1, True),
        (Retry(max=1, when=("unknown_failure",)), outcome(reason=None), 1, True),
        (Retry(max=1, when=("unknown_failure",)), outcome(reason="runner_system_failure"), 1, False),
        (Retry(max=1, when=(), exit_codes=(137,)), outcome(code=137), 1, True),
        (Retry(max=1, when=(), exit_codes=(137,)), outcome(code=1), 1, False),
        (Retry(max=1, when=("script_failure",), exit_codes=(137,)), outcome(code=1), 1, True),
        (Retry(max=1, when=("api_failure",), exit_codes=(137,)), outcome(code=1), 1, False),
    ],
)
def test_retry_wanted(retry: Retry, out: JobOutcome, attempt: int, expected: bool) -> None:
    assert retry_wanted(retry, out, attempt) is expected


def test_failure_allowed() -> None:
    lenient = Job(name="j", base_name="j", stage="test", allow_failure=True)
    codes = Job(name="j", base_name="j", stage="test", allow_failure=True, allow_failure_exit_codes=(3,))
    strict = Job(name="j", base_name="j", stage="test")
    assert failure_allowed(lenient, outcome())
    assert failure_allowed(codes, outcome(code=3))
    assert not failure_allowed(codes, outcome(code=4))
    assert not failure_allowed(codes, None)
    assert not failure_allowed(strict, outcome())


def test_finished_statuses() -> None:
    assert {s for s in JobStatus if s.is_finished} == {"success", "failed", "canceled", "skipped"}
