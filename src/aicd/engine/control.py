"""Acting on a pipeline while `run_pipeline` runs it (the server's job cancel)."""

from __future__ import annotations

from typing import Protocol


class _Target(Protocol):
    def cancel_job(self, name: str) -> bool: ...


class RunControl:
    """Give one to `run_pipeline(control=...)`; its methods act on that run while it lasts.

    Calls come from the event loop's thread. Before the run starts and after
    it ended they do nothing and return False.
    """

    def __init__(self) -> None:
        self._run: _Target | None = None

    def bind(self, run: _Target | None) -> None:
        self._run = run

    @property
    def active(self) -> bool:
        return self._run is not None

    def cancel_job(self, name: str) -> bool:
        """Cancel job `name`: a running one is stopped, one not started yet ends `canceled`;
        its dependants are then decided as for any canceled job. False when the job is
        not in the run or already settled (finished, manual, blocked)."""
        run = self._run
        return run.cancel_job(name) if run is not None else False
