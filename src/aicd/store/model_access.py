"""ModelAccessStore: who may read a project's models besides its members, and which of its
aliases are protected (moved or removed by maintainers only)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from aicd.errors import NotFoundError
from aicd.store.owned import DatabaseStore
from aicd.store.schema import audit_log, model_readers, projects

DEFAULT_PROTECTED_ALIASES = ("production",)


class ModelAccessStore(DatabaseStore):
    # -- protected aliases ----------------------------------------------------------------------

    def protected_aliases(self, project_id: int) -> tuple[str, ...]:
        """The project's protected aliases (`production` unless the project says otherwise)."""
        with self._read("read a project's protected aliases") as conn:
            value = conn.execute(
                select(projects.c.protected_aliases).where(projects.c.id == project_id)
            ).scalar_one_or_none()
        if value is None:
            return DEFAULT_PROTECTED_ALIASES
        return tuple(str(a) for a in value)

    def set_protected_aliases(self, project_id: int, aliases: Sequence[str], *, actor: str) -> None:
        now = time.time()
        with self._write("set a project's protected aliases") as conn:
            found = conn.execute(
                update(projects)
                .where(projects.c.id == project_id)
                .values(protected_aliases=list(aliases))
                .returning(projects.c.id)
            ).first()
            if found is None:
                raise NotFoundError(f"no project with id {project_id}")
            conn.execute(
                insert(audit_log).values(
                    at=now,
                    actor=actor,
                    action="project.protected_aliases",
                    project_id=project_id,
                    target=None,
                    details={"aliases": list(aliases)},
                )
            )

    # -- cross-project reads --------------------------------------------------------------------

    def readers(self, project_id: int) -> list[str]:
        """The names of the projects that may read `project_id`'s models."""
        query = (
            select(projects.c.name)
            .join(model_readers, model_readers.c.reader_project_id == projects.c.id)
            .where(model_readers.c.project_id == project_id)
            .order_by(projects.c.name)
        )
        with self._read("read a project's model readers") as conn:
            return [str(n) for n in conn.execute(query).scalars()]

    def granted_to(self, reader_ids: Sequence[int]) -> set[int]:
        """The projects whose models one of `reader_ids` was granted to read."""
        if not reader_ids:
            return set()
        query = select(model_readers.c.project_id).where(
            model_readers.c.reader_project_id.in_(list(reader_ids))
        )
        with self._read("read model read grants") as conn:
            return {int(p) for p in conn.execute(query).scalars()}

    def grant(self, project_id: int, reader_id: int, reader_name: str, *, actor: str) -> bool:
        """Let `reader_id` read `project_id`'s models; False when it could already."""
        now = time.time()
        with self._write("grant reading models") as conn:
            exists = conn.execute(
                select(model_readers.c.id).where(
                    model_readers.c.project_id == project_id, model_readers.c.reader_project_id == reader_id
                )
            ).first()
            if exists is not None:
                return False
            conn.execute(
                insert(model_readers).values(
                    project_id=project_id, reader_project_id=reader_id, created_at=now
                )
            )
            self._audit(conn, actor, "model_readers.grant", project_id, reader_name, now)
        return True

    def revoke(self, project_id: int, reader_id: int, reader_name: str, *, actor: str) -> bool:
        """Stop `reader_id` reading `project_id`'s models; False when it could not."""
        now = time.time()
        with self._write("revoke reading models") as conn:
            gone = conn.execute(
                delete(model_readers).where(
                    model_readers.c.project_id == project_id, model_readers.c.reader_project_id == reader_id
                )
            ).rowcount
            if not gone:
                return False
            self._audit(conn, actor, "model_readers.revoke", project_id, reader_name, now)
        return True

    @staticmethod
    def _audit(conn: Connection, actor: str, action: str, project_id: int, reader: str, now: float) -> None:
        conn.execute(
            insert(audit_log).values(
                at=now,
                actor=actor,
                action=action,
                project_id=project_id,
                target=reader,
                details={"reader": reader},
            )
        )
