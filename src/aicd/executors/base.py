"""The small interface every executor implements.

The engine decides *what* runs *when*; an executor turns one job attempt
into a process (or a remote task) and reports what happened. Files
(workspace, artifacts, cache, reports) are the executor's business; the
engine hands it only names and variables.

Lifecycle: ``handle = await executor.start(request, on_output)`` then
``outcome = await handle.wait()``; ``await handle.cancel(reason)`` at any
time makes ``wait()`` return soon with status ``canceled`` (or ``failed``
with reason ``job_execution_timeout`` when the reason is ``"timeout"``),
with the job's whole process tree gone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from aicd.pipeline.ir import Job, Variable

OutcomeStatus = Literal["success", "failed", "canceled"]
FailureReason = Literal[
    "script_failure",
    "job_execution_timeout",
    "canceled",
    "runner_system_failure",
    "stuck_or_timeout_failure",
    "missing_dependency_failure",
    "unknown_failure",
]

# Called once per line (without the trailing newline), already masked, as
# on_output(kind, text): kind "cmd" for an echoed script command (shown as
# `$ cmd`), "out" for the job's own output, "info" for aicd's own messages
# (artifact uploads, cache, warnings).
OutputKind = Literal["cmd", "out", "info"]
OutputCallback = Callable[[OutputKind, str], None]


@dataclass(frozen=True)
class ArtifactSource:
    """Artifacts of an earlier job to restore into this job's workspace."""

    job_name: str
    job_id: int


# A run's pipeline (its IR as JSON) in its run folder: what the UI draws the graph from, and
# what a server's run is resumed from.
IR_FILE = "pipeline.json"


def job_log_path(run_dir: Path, job_id: int) -> Path:
    """Where a job attempt's full log lives: `<run_dir>/logs/<job_id>.log`."""
    return Path(f"{run_dir}/logs/{job_id}.log")  # (one Path made, not three: per job, at every change)


@dataclass(frozen=True)
class JobRequest:
    """Everything an executor needs to run one attempt of one job."""

    job: Job
    job_id: int  # unique within the store; also CI_JOB_ID
    attempt: int  # 1-based
    pipeline_id: int
    run_dir: Path  # the run's folder: logs/, artifacts/ of every job live under it
    # Fully ordered variables, lowest precedence first: predefined (pipeline
    # and job), YAML (job.variables), dotenv of dependencies, pipeline
    # variables. Later definitions of a key win. The executor expands them.
    variables: tuple[Variable, ...]
    artifact_sources: tuple[ArtifactSource, ...] = ()
    log_path: Path | None = None  # where to write the full log; default under run_dir


@dataclass(frozen=True)
class TestSummary:
    """Counts of a job's JUnit reports."""

    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class JobOutcome:
    """How one attempt of a job ended."""

    status: OutcomeStatus
    exit_code: int | None
    failure_reason: FailureReason | None
    started_at: float  # time.time()
    finished_at: float
    log_path: Path
    dotenv: tuple[Variable, ...] = ()  # from artifacts:reports:dotenv
    tests: TestSummary | None = None  # from artifacts:reports:junit
    metrics: dict[str, float] = field(default_factory=dict)  # from reports:metrics
    coverage: float | None = None  # from the coverage regex over the log
    artifacts_dir: Path | None = None  # where this job's artifacts were stored
    error: str | None = None  # a system message when the job could not run


class JobHandle(Protocol):
    def wait(self) -> Awaitable[JobOutcome]:
        """The job's outcome, once it ended (a coroutine, or a future that must not be cancelled:
        cancelling what it gives never cancels the job)."""
        ...

    async def cancel(self, reason: str = "canceled") -> None: ...


class Executor(Protocol):
    name: str

    async def start(self, request: JobRequest, on_output: OutputCallback) -> JobHandle: ...

    async def close(self) -> None:
        """Release anything held across jobs (pools, temp folders)."""
        ...
