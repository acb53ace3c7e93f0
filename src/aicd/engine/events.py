"""What the engine tells the outside world (the store, the CLI) while it runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aicd.engine.status import JobStatus
from aicd.executors.base import JobOutcome
from aicd.pipeline.ir import Job


class EngineListener(Protocol):
    """Told every state change; job ids come from it (the store).

    Calls come from the event loop's thread, never concurrently. An exception
    raised by the listener stops the run (every job is canceled) and is
    raised again by `run_pipeline`.
    """

    def allocate_job_ids(self, jobs: Sequence[Job]) -> list[int]:
        """One id per job, in the same order; called once, before anything runs."""
        ...

    def allocate_retry_id(self, job: Job, attempt: int) -> int:
        """A new id for attempt `attempt` (2, 3, ...) of `job`."""
        ...

    def job_status(
        self, job: Job, job_id: int, attempt: int, status: JobStatus, outcome: JobOutcome | None
    ) -> None: ...

    def job_output(self, job: Job, job_id: int, kind: str, text: str) -> None:
        """One line: kind "cmd", "out" (from the executor) or "info" (the executor's or the engine's)."""
        ...

    def pipeline_status(self, status: str) -> None:
        """ "running" once at the start, then the final status."""
        ...
