"""The core API: what the CLI and the server both call."""

from aicd.core.local_run import RunObserver, RunRequest, RunResult, run_local

__all__ = ["RunObserver", "RunRequest", "RunResult", "run_local"]
