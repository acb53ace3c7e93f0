"""Plain records the store hands out (no ORM objects leave the store)."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_ID = 2**63 - 1  # row ids are signed 64-bit in both databases (BIGINT, SQLite INTEGER)


def parse_id(text: str) -> int | None:
    """A row id written in ASCII digits (1..MAX_ID), else None: "²" or 10**30 name no row."""
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None


@dataclass(frozen=True)
class PipelineRecord:
    """A stored pipeline run."""

    id: int
    iid: int  # per project counter (CI_PIPELINE_IID)
    project_dir: str
    ref: str
    sha: str
    source: str  # CI_PIPELINE_SOURCE
    file: str
    status: str  # created, running, success, failed, canceled, skipped
    created_at: float  # epoch seconds
    started_at: float | None
    finished_at: float | None
    run_dir: str  # folder holding this run's logs and artifacts
    error: str | None = None  # e.g. lint messages when the pipeline could not start
    name: str | None = None  # workflow:name
    variables: dict[str, str] | None = field(default=None, hash=False)  # variables given for this run


@dataclass(frozen=True)
class JobRecord:
    """A stored job attempt."""

    id: int
    pipeline_id: int
    name: str
    stage: str
    status: str  # created, pending, running, success, failed, canceled, skipped, manual
    when: str
    allow_failure: bool
    attempt: int
    retried: bool  # True for an attempt that was superseded by a retry
    exit_code: int | None
    failure_reason: str | None
    started_at: float | None
    finished_at: float | None
    log_path: str | None
    tests_total: int | None = None
    tests_passed: int | None = None
    tests_failed: int | None = None
    tests_skipped: int | None = None
    coverage: float | None = None
    created_at: float | None = None  # epoch seconds when the row was added
    artifacts_dir: str | None = None
    metrics: dict[str, float] | None = field(default=None, hash=False)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class NewJob:
    """A job row to add (Store.add_jobs); attempt > 1 is a retry."""

    name: str
    stage: str
    when: str
    allow_failure: bool
    status: str = "created"
    attempt: int = 1
