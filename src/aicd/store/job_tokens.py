"""JobTokenStore: the CI_JOB_TOKEN of each job attempt a server runs, by its SHA-256 only.

A token is bound to one attempt (its row in `jobs`) and that attempt's project and
pipeline. It is live while it is not revoked, not expired, *and* its job row is
`running`: a server that was killed before it could revoke a token still refuses
it once recovery has ended the job.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from aicd.store.owned import DatabaseStore
from aicd.store.schema import job_tokens, jobs, pipelines, projects


@dataclass(frozen=True)
class JobTokenScope:
    """What a live job token acts for: its project, pipeline and job attempt (and their lineage)."""

    token_id: int
    project_id: int
    project: str  # the project's name
    pipeline_id: int
    job_id: int
    job_name: str
    commit_sha: str
    ref: str
    user_login: str | None
    expires_at: float
    protected_ref: bool = False  # its pipeline's ref is protected (default branch or tag)


class JobTokenStore(DatabaseStore):
    def create(
        self,
        token_hash: str,
        *,
        project_id: int,
        pipeline_id: int,
        job_id: int,
        expires_at: float,
        user_login: str | None = None,
        protected_ref: bool = False,
        job_fields: Mapping[str, object] | None = None,
    ) -> int:
        """Record a new token (its hash); returns its id. `job_fields`: the attempt's row gets them in
        the same transaction (an attempt for a worker: its row `pending`, one commit for both),
        unless the row is `running` (an attempt a restarted server adopted: its worker's token needs
        its row `running`)."""
        with self._write("record a job token") as conn:
            if job_fields:
                conn.execute(
                    update(jobs).where(jobs.c.id == job_id, jobs.c.status != "running").values(**job_fields)
                )
            return int(
                conn.execute(
                    insert(job_tokens)
                    .values(
                        token_hash=token_hash,
                        project_id=project_id,
                        pipeline_id=pipeline_id,
                        job_id=job_id,
                        created_at=time.time(),
                        expires_at=expires_at,
                        user_login=user_login,
                        protected_ref=protected_ref,
                    )
                    .returning(job_tokens.c.id)
                ).scalar_one()
            )

    def revoke(self, token_id: int) -> None:
        """End a token (the attempt ended); revoking twice changes nothing."""
        with self._write("revoke a job token") as conn:
            conn.execute(
                update(job_tokens)
                .where(job_tokens.c.id == token_id, job_tokens.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )

    def revoke_all(self, *, keep_jobs: Collection[int] = ()) -> int:
        """End every token still live (a server starting: no attempt of the last one still runs),
        but those of the attempts in `keep_jobs` (running on workers: the server adopts them)."""
        query = update(job_tokens).where(job_tokens.c.revoked_at.is_(None))
        if keep_jobs:
            query = query.where(job_tokens.c.job_id.not_in(list(keep_jobs)))
        with self._write("revoke job tokens") as conn:
            result = conn.execute(query.values(revoked_at=time.time()))
        return int(result.rowcount or 0)

    def scope_for_hash(self, token_hash: str, *, now: float | None = None) -> JobTokenScope | None:
        """The scope of a live token, or None (unknown, revoked, expired, or its job not running)."""
        now = time.time() if now is None else now
        query = (
            select(
                job_tokens.c.id,
                job_tokens.c.project_id,
                projects.c.name.label("project"),
                job_tokens.c.pipeline_id,
                job_tokens.c.job_id,
                jobs.c.name.label("job_name"),
                pipelines.c.sha,
                pipelines.c.ref,
                job_tokens.c.user_login,
                job_tokens.c.expires_at,
                job_tokens.c.protected_ref,
            )
            .join(projects, projects.c.id == job_tokens.c.project_id)
            .join(jobs, jobs.c.id == job_tokens.c.job_id)
            .join(pipelines, pipelines.c.id == jobs.c.pipeline_id)
            .where(
                job_tokens.c.token_hash == token_hash,
                job_tokens.c.revoked_at.is_(None),
                job_tokens.c.expires_at > now,
                jobs.c.status == "running",
                jobs.c.pipeline_id == job_tokens.c.pipeline_id,
            )
        )
        with self._read("check a job token") as conn:
            row = conn.execute(query).first()
        if row is None or row.project is None:
            return None
        return JobTokenScope(
            token_id=int(row.id),
            project_id=int(row.project_id),
            project=str(row.project),
            pipeline_id=int(row.pipeline_id),
            job_id=int(row.job_id),
            job_name=str(row.job_name),
            commit_sha=str(row.sha),
            ref=str(row.ref),
            user_login=row.user_login,
            expires_at=float(row.expires_at),
            protected_ref=bool(row.protected_ref),
        )
