"""What a resumed run of a server pipeline starts from (retry, play, crash recovery).

From the pipeline's IR and its job rows (the latest attempt of each job):

- jobs asked for again (`rerun`: retried ones, a played manual job) run:
  one that ran gets a new row with attempt + 1, one that never ran keeps its row;
- other finished jobs (success, failed, canceled) are *settled*: they keep
  their ids and results and count for their dependants, as GitLab does;
- the rest (skipped, manual, blocked, pending) are decided again, in their rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aicd.engine import JobStatus, SettledJob
from aicd.executors.artifacts import reports_dir
from aicd.executors.reports import parse_dotenv
from aicd.pipeline.ir import Job, Pipeline, Variable
from aicd.store.records import JobRecord

FINISHED = frozenset({"success", "failed", "canceled"})


@dataclass(frozen=True)
class ResumePlan:
    settled: dict[str, SettledJob] = field(default_factory=dict)
    prior_attempts: dict[str, int] = field(default_factory=dict)
    reuse: dict[str, int] = field(default_factory=dict)  # job name -> row id kept
    play: frozenset[str] = frozenset()
    pending: frozenset[str] = frozenset()  # rows already made pending for this run (left as they are)
    # rows of attempts still running on workers (adopted by a restarted server): they stay `running`
    # (their job tokens need it) until their result comes
    running: frozenset[str] = frozenset()


def latest_rows(rows: Iterable[JobRecord]) -> dict[str, JobRecord]:
    """The latest attempt of each job name (the row with the highest id)."""
    out: dict[str, JobRecord] = {}
    for row in rows:
        if row.name not in out or row.id > out[row.name].id:
            out[row.name] = row
    return out


def plan_resume(
    pipeline: Pipeline,
    rows: Iterable[JobRecord],
    run_dir: Path,
    *,
    rerun: Iterable[str] = (),
    play: Iterable[str] = (),
) -> ResumePlan:
    latest = latest_rows(rows)
    again = {*rerun, *play}
    plan = ResumePlan(play=frozenset(play), pending=frozenset(play))
    for job in pipeline.jobs:
        row = latest.get(job.name)
        if row is None:
            continue  # no row yet (the first run never got this far): a new one
        if job.name in again:
            if row.status in FINISHED:
                plan.prior_attempts[job.name] = row.attempt
            else:
                plan.reuse[job.name] = row.id
                plan.prior_attempts[job.name] = row.attempt - 1
        elif row.status in FINISHED:
            plan.settled[job.name] = SettledJob(
                job_id=row.id,
                status=JobStatus(row.status),
                attempts=row.attempt,
                allowed_failure=row.status != "success" and row.allow_failure,
                dotenv=settled_dotenv(job, run_dir, row.id) if row.status != "canceled" else (),
            )
        else:
            plan.reuse[job.name] = row.id
            plan.prior_attempts[job.name] = row.attempt - 1
    return plan


def settled_dotenv(job: Job, run_dir: Path, job_id: int) -> tuple[Variable, ...]:
    """The dotenv variables a finished job reported (its stored report files)."""
    if job.artifacts is None or not job.artifacts.reports.dotenv:
        return ()
    folder = reports_dir(run_dir, job_id)
    if not folder.is_dir():
        return ()
    found: list[Variable] = []
    for pattern in job.artifacts.reports.dotenv:
        paths = sorted(folder.glob(pattern)) if "$" not in pattern else sorted(folder.rglob("*.env"))
        for path in paths:
            if path.is_file():
                text = path.read_bytes().decode("utf-8", errors="replace")
                found += parse_dotenv(text, path.name)[0]
    return tuple(found)


def jobs_by_name(pipeline: Pipeline) -> Mapping[str, Job]:
    return {j.name: j for j in pipeline.jobs}
