"""JobLeaseStore: which runner runs a job attempt taken from the broker, and until when.

A worker *claims* an attempt (one row per attempt: the attempt id is the fencing
token, a second claim finds the row and is refused), *renews* its lease with each
heartbeat, and the attempt's lease *ends* when its result arrives, it is canceled,
or its heartbeats stop (`lease_expired`). An ended lease is never renewed again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row

from aicd.errors import ConflictError
from aicd.store.owned import DatabaseStore
from aicd.store.schema import job_leases, jobs


@dataclass(frozen=True)
class LeaseRecord:
    job_id: int
    runner_id: int
    claimed_at: float
    expires_at: float
    ended_at: float | None
    end: str | None

    @property
    def live(self) -> bool:
        return self.ended_at is None


def _record(row: Row[tuple[object, ...]]) -> LeaseRecord:
    m = row._mapping
    return LeaseRecord(
        job_id=int(m["job_id"]),
        runner_id=int(m["runner_id"]),
        claimed_at=float(m["claimed_at"]),
        expires_at=float(m["expires_at"]),
        ended_at=None if m["ended_at"] is None else float(m["ended_at"]),
        end=m["end"],
    )


class JobLeaseStore(DatabaseStore):
    def claim(
        self, job_id: int, runner_id: int, *, expires_at: float, mark_running: bool = False
    ) -> LeaseRecord | None:
        """The new lease of `runner_id` on attempt `job_id`; None when the attempt was claimed before.
        `mark_running`: the job's row becomes `running` (started now) in the same transaction (one
        commit, not two, on the way from the broker to the job)."""
        now = time.time()
        try:
            with self._write("claim a job attempt", conflict="claimed") as conn:
                conn.execute(
                    insert(job_leases).values(
                        job_id=job_id, runner_id=runner_id, claimed_at=now, expires_at=expires_at
                    )
                )
                if mark_running:
                    conn.execute(
                        update(jobs).where(jobs.c.id == job_id).values(status="running", started_at=now)
                    )
        except ConflictError:
            return None
        return LeaseRecord(job_id, runner_id, now, expires_at, None, None)

    def renew(self, job_id: int, *, expires_at: float) -> bool:
        """Move a live lease on; False when it ended (or never was)."""
        with self._write("renew a job lease") as conn:
            result = conn.execute(
                update(job_leases)
                .where(job_leases.c.job_id == job_id, job_leases.c.ended_at.is_(None))
                .values(expires_at=expires_at)
            )
        return bool(result.rowcount)

    def end(self, job_id: int, end: str) -> None:
        """The attempt's lease ends (finished, canceled, lease_expired, abandoned)."""
        with self._write("end a job lease") as conn:
            conn.execute(
                update(job_leases)
                .where(job_leases.c.job_id == job_id, job_leases.c.ended_at.is_(None))
                .values(ended_at=time.time(), end=end)
            )

    def live(self) -> list[LeaseRecord]:
        """Every lease not ended (attempts a worker may still run)."""
        with self._read("read job leases") as conn:
            rows = conn.execute(select(job_leases).where(job_leases.c.ended_at.is_(None))).all()
        return [_record(row) for row in rows]

    def get(self, job_id: int) -> LeaseRecord | None:
        with self._read("read a job lease") as conn:
            row = conn.execute(select(job_leases).where(job_leases.c.job_id == job_id)).first()
        return None if row is None else _record(row)
