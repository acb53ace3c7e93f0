"""RunnerStore: the registered `aicd worker`s (runners), their tokens by SHA-256 only.

A runner has the tags it serves (GitLab's runner tags), whether it also takes
untagged jobs (`run_untagged`), whether an admin paused it, and what it last
told the server: when (`contacted_at`), its version and its host. Registration
and the admin's changes write their audit row in the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Row

from aicd.errors import NotFoundError
from aicd.store.owned import DatabaseStore
from aicd.store.schema import audit_log, runners


@dataclass(frozen=True)
class RunnerRecord:
    id: int
    description: str
    tags: tuple[str, ...]
    run_untagged: bool
    paused: bool
    created_at: float
    created_by: str | None
    contacted_at: float | None
    version: str | None
    host: str | None


def _record(row: Row[tuple[object, ...]]) -> RunnerRecord:
    m = row._mapping
    return RunnerRecord(
        id=int(m["id"]),
        description=str(m["description"] or ""),
        tags=tuple(str(t) for t in (m["tags"] or ())),
        run_untagged=bool(m["run_untagged"]),
        paused=bool(m["paused"]),
        created_at=float(m["created_at"]),
        created_by=m["created_by"],
        contacted_at=None if m["contacted_at"] is None else float(m["contacted_at"]),
        version=m["version"],
        host=m["host"],
    )


_COLUMNS = [c for c in runners.c if c.name != "token_hash"]


def _audit(conn: Connection, actor: str, action: str, target: str, details: Mapping[str, object]) -> None:
    conn.execute(
        insert(audit_log).values(
            at=time.time(), actor=actor, action=action, project_id=None, target=target, details=dict(details)
        )
    )


class RunnerStore(DatabaseStore):
    def create(
        self,
        token_hash: str,
        *,
        tags: Sequence[str],
        run_untagged: bool,
        description: str,
        created_by: str,
    ) -> RunnerRecord:
        """Record a new runner (its token's hash) and the audit entry; the new row."""
        with self._write("register a runner") as conn:
            runner_id = int(
                conn.execute(
                    insert(runners)
                    .values(
                        token_hash=token_hash,
                        description=description,
                        tags=sorted(tags),
                        run_untagged=run_untagged,
                        paused=False,
                        created_at=time.time(),
                        created_by=created_by,
                    )
                    .returning(runners.c.id)
                ).scalar_one()
            )
            details = {"tags": sorted(tags), "run_untagged": run_untagged, "description": description}
            _audit(conn, created_by, "runner.register", f"runner {runner_id}", details)
            row = conn.execute(select(*_COLUMNS).where(runners.c.id == runner_id)).one()
        return _record(row)

    def list(self) -> list[RunnerRecord]:
        with self._read("list runners") as conn:
            rows = conn.execute(select(*_COLUMNS).order_by(runners.c.id)).all()
        return [_record(row) for row in rows]

    def get(self, runner_id: int) -> RunnerRecord:
        """The runner; NotFoundError when there is none with this id."""
        with self._read("read a runner") as conn:
            row = conn.execute(select(*_COLUMNS).where(runners.c.id == runner_id)).first()
        if row is None:
            raise NotFoundError(f"no runner {runner_id}")
        return _record(row)

    def set_paused(self, runner_id: int, paused: bool, *, actor: str) -> RunnerRecord:
        """Pause (it takes no new job) or resume a runner; NotFoundError when there is none."""
        with self._write("pause or resume a runner") as conn:
            result = conn.execute(update(runners).where(runners.c.id == runner_id).values(paused=paused))
            if not result.rowcount:
                raise NotFoundError(f"no runner {runner_id}")
            action = "runner.pause" if paused else "runner.resume"
            _audit(conn, actor, action, f"runner {runner_id}", {})
            row = conn.execute(select(*_COLUMNS).where(runners.c.id == runner_id)).one()
        return _record(row)

    def delete(self, runner_id: int, *, actor: str) -> None:
        """Remove a runner: its token stops working at once. NotFoundError when there is none."""
        with self._write("delete a runner") as conn:
            result = conn.execute(delete(runners).where(runners.c.id == runner_id))
            if not result.rowcount:
                raise NotFoundError(f"no runner {runner_id}")
            _audit(conn, actor, "runner.delete", f"runner {runner_id}", {})

    def by_token_hash(self, token_hash: str) -> RunnerRecord | None:
        """The runner with this token's hash (nothing recorded), or None."""
        with self._read("read a runner") as conn:
            row = conn.execute(select(*_COLUMNS).where(runners.c.token_hash == token_hash)).first()
        return None if row is None else _record(row)

    def contact(
        self, token_hash: str, *, version: str | None, host: str | None, now: float | None = None
    ) -> RunnerRecord | None:
        """A worker with this token's hash got in touch: record when, its version and host.

        Returns the runner (paused ones too: a paused runner is online but is given no
        job), or None when no runner has this token.
        """
        at = time.time() if now is None else now
        with self._write("record a runner's contact") as conn:
            row = conn.execute(
                update(runners)
                .where(runners.c.token_hash == token_hash)
                .values(contacted_at=at, version=version, host=host)
                .returning(*_COLUMNS)
            ).first()
        return None if row is None else _record(row)
