"""JobTokenStore on SQLite and PostgreSQL: a token is live only while it is not revoked, not
expired, and its job row is running; only its hash is kept."""

from __future__ import annotations

import time

from aicd.core.access import hash_token, new_job_token
from aicd.core.job_tokens import token_lifetime
from aicd.store.db import connect
from aicd.store.job_tokens import JobTokenStore
from aicd.store.records import NewJob
from aicd.store.repository import RunStore


def _running_job(url: str) -> tuple[int, int, int]:
    with RunStore.open(url) as runs:
        pipeline = runs.create_pipeline(
            project_dir="server:shop",
            ref="main",
            sha="a" * 40,
            source="push",
            file="ci.yml",
            run_dir_root="/r",
        )
        (job_id,) = runs.add_jobs(pipeline.id, [NewJob("train", "train", "on_success", False, "running")])
    database = connect(url)
    try:
        with database.engine.connect() as conn:
            project_id = conn.exec_driver_sql(
                "SELECT id FROM projects WHERE path = 'server:shop'"
            ).scalar_one()
            conn.exec_driver_sql(f"UPDATE projects SET name = 'shop' WHERE id = {int(project_id)}")
            conn.commit()
    finally:
        database.dispose()
    return int(project_id), pipeline.id, job_id


def test_a_job_token_lives_while_its_job_runs(migrated_url: str) -> None:
    project_id, pipeline_id, job_id = _running_job(migrated_url)
    database = connect(migrated_url)
    try:
        store = JobTokenStore(database)
        token = new_job_token()
        token_id = store.create(
            hash_token(token),
            project_id=project_id,
            pipeline_id=pipeline_id,
            job_id=job_id,
            expires_at=time.time() + 60,
            user_login="alice",
            protected_ref=True,
        )
        scope = store.scope_for_hash(hash_token(token))
        assert scope is not None
        assert (scope.project, scope.project_id, scope.pipeline_id, scope.job_id) == (
            "shop",
            project_id,
            pipeline_id,
            job_id,
        )
        assert (scope.commit_sha, scope.ref, scope.user_login, scope.protected_ref) == (
            "a" * 40,
            "main",
            "alice",
            True,
        )
        assert store.scope_for_hash(hash_token(token + "x")) is None
        assert store.scope_for_hash(token) is None  # the token itself is not what is stored
        # expired
        assert store.scope_for_hash(hash_token(token), now=time.time() + 61) is None
        # its job no longer running
        with RunStore.open(migrated_url) as runs:
            runs.update_job(job_id, status="success")
        assert store.scope_for_hash(hash_token(token)) is None
        with RunStore.open(migrated_url) as runs:
            runs.update_job(job_id, status="running")
        assert store.scope_for_hash(hash_token(token)) is not None
        # revoked
        store.revoke(token_id)
        store.revoke(token_id)  # twice: nothing more
        assert store.scope_for_hash(hash_token(token)) is None
        # a server starting revokes every token still live
        other = new_job_token()
        store.create(
            hash_token(other), project_id=project_id, pipeline_id=pipeline_id, job_id=job_id, expires_at=9e9
        )
        assert store.revoke_all() == 1
        assert store.scope_for_hash(hash_token(other)) is None
    finally:
        database.dispose()


def test_a_token_lives_at_most_the_job_timeout_and_margins() -> None:
    assert token_lifetime(60) == 60 + 300 + 300
    assert token_lifetime(None) == 3600 + 300 + 300
    assert token_lifetime(0) == 3600 + 300 + 300


def test_migration_0004_gives_existing_models_the_project_their_first_version_names(db_url: str) -> None:
    from alembic import command
    from sqlalchemy import insert, select

    from aicd.store import upgrade
    from aicd.store.migrate import alembic_config
    from aicd.store.schema import model_versions, models, projects

    def alembic(target: str) -> None:
        database = connect(db_url)
        config = alembic_config()
        try:
            with database.writer.connect() as conn, conn.begin():
                config.attributes["connection"] = conn
                command.upgrade(config, target)
        finally:
            database.dispose()

    alembic("0003")
    database = connect(db_url)
    try:
        with database.writer.begin() as conn:
            shop = conn.execute(
                insert(projects)
                .values(path="server:shop", name="shop", created_at=1.0)
                .returning(projects.c.id)
            ).scalar_one()
            conn.execute(insert(projects).values(path="/home/me/shop", created_at=1.0))  # a local one
            ids = {}
            for name in ("iris", "local", "orphan"):
                ids[name] = conn.execute(
                    insert(models).values(name=name, last_version=1, created_at=2.0).returning(models.c.id)
                ).scalar_one()
            for name, project in (("iris", "shop"), ("local", "/home/me/shop"), ("orphan", None)):
                conn.execute(
                    insert(model_versions).values(
                        model_id=ids[name], version=1, project=project, created_at=3.0
                    )
                )
    finally:
        database.dispose()
    upgrade(db_url)
    database = connect(db_url)
    try:
        with database.engine.connect() as conn:
            owners = dict(conn.execute(select(models.c.name, models.c.project_id)).all())
    finally:
        database.dispose()
    assert owners == {"iris": shop, "local": None, "orphan": None}
