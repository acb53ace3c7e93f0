"""`aicd run` writes job status changes in batches, a job's `running` before it runs (issue 17).

Real git repository, real bash jobs, the real SQLite store; the store is wrapped only to count
its write calls (a spy: every call goes through to the database).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from aicd.config import Settings
from aicd.core import local_run
from aicd.core.local_run import RunRequest, run_local
from aicd.store import Store, open_store
from aicd_testing import make_repo

# Each job reads its own row from the database while it runs: "running" must be committed by then.
CHECK = """\
import os, sqlite3
db = sqlite3.connect(os.environ["AICD_HOME"] + "/aicd.db")
row = db.execute("SELECT status FROM jobs WHERE id = ?", (int(os.environ["CI_JOB_ID"]),)).fetchone()
print("row", row[0])
"""


def pipeline(n: int) -> str:
    script = json.dumps(f"{sys.executable} check.py")
    jobs = [f"job{i}:\n  stage: build\n  script: [{script}]\n" for i in range(n)]
    jobs.append(f"last:\n  stage: test\n  needs: [job0]\n  script: [{script}]\n")
    return "\n".join(jobs)


class CountingStore:
    """The real store, counting the transactions that write job rows."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes = 0
        self.changes = 0

    def update_job(self, job_id: int, **fields: object) -> None:
        self.writes += 1
        self.changes += 1
        self.store.update_job(job_id, **fields)

    def update_jobs(self, updates: Any) -> None:
        self.writes += 1
        self.changes += len(updates)
        self.store.update_jobs(updates)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class Quiet:
    def pipeline_created(self, *args: object) -> None: ...
    def job_status(self, *args: object) -> None: ...
    def job_output(self, *args: object) -> None: ...


def test_status_changes_are_batched_and_running_is_committed_before_the_job_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": pipeline(12), "check.py": CHECK})
    spies: list[CountingStore] = []

    def counting(url: str) -> Any:
        spies.append(CountingStore(open_store(url)))
        return spies[-1]

    monkeypatch.setattr(local_run, "open_store_at", counting)
    result = asyncio.run(
        run_local(RunRequest(project_dir=repo, concurrency=4), Quiet(), settings=Settings())  # type: ignore[arg-type]
    )
    assert result.status == "success"
    assert len(result.jobs) == 13
    for job in result.jobs:
        assert job.log_path.read_text().count("row running") == 1, job.log_path.read_text()
    (spy,) = spies
    assert spy.changes == 26  # running and success of every job, none lost
    assert spy.writes < spy.changes  # some rounds carried several changes
    store = open_store(f"sqlite:///{repo / '.aicd' / 'aicd.db'}")
    try:
        rows = store.list_jobs(result.pipeline.id)
    finally:
        store.close()
    assert sorted(j.status for j in rows) == ["success"] * 13
