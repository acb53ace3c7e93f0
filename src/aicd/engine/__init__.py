"""aicd.engine: run a resolved pipeline as a DAG on an executor.

Knows nothing of YAML, files or SQL: it takes the IR (aicd.pipeline.ir), an
Executor (aicd.executors.base) and an EngineListener that records what
happens.
"""

from aicd.engine.control import RunControl
from aicd.engine.events import EngineListener
from aicd.engine.model import JobResult, PipelineResult, RunOptions, SettledJob
from aicd.engine.plan import select_jobs
from aicd.engine.resource_groups import ResourceGroups
from aicd.engine.scheduler import run_pipeline
from aicd.engine.status import JobStatus, failure_allowed

__all__ = [
    "EngineListener",
    "JobResult",
    "JobStatus",
    "PipelineResult",
    "ResourceGroups",
    "RunControl",
    "RunOptions",
    "SettledJob",
    "failure_allowed",
    "run_pipeline",
    "select_jobs",
]
