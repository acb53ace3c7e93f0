"""aicd.executors: turn one job attempt into a process (local) or a remote task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aicd.executors.base import (
    ArtifactSource,
    Executor,
    JobHandle,
    JobOutcome,
    JobRequest,
    OutputCallback,
    TestSummary,
)

if TYPE_CHECKING:
    from aicd.executors.local import LocalExecutor

__all__ = [
    "ArtifactSource",
    "Executor",
    "JobHandle",
    "JobOutcome",
    "JobRequest",
    "LocalExecutor",
    "OutputCallback",
    "TestSummary",
]


def __getattr__(name: str) -> object:
    # LocalExecutor is imported on first use: importing the package for the
    # protocol alone (a remote worker, the engine) stays cheap.
    if name == "LocalExecutor":
        from aicd.executors.local import LocalExecutor

        return LocalExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
