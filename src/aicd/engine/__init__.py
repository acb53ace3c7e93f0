"""aicd.engine: run a resolved pipeline as a DAG on an executor."""

from aicd.engine.model import (
    EngineListener,
    JobResult,
    JobStatus,
    PipelineResult,
    RunOptions,
    failure_allowed,
)
from aicd.engine.scheduler import run_pipeline, select_jobs

__all__ = [
    "EngineListener",
    "JobResult",
    "JobStatus",
    "PipelineResult",
    "RunOptions",
    "failure_allowed",
    "run_pipeline",
    "select_jobs",
]
