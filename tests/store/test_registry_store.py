"""RegistryStore on SQLite and PostgreSQL: gapless numbering (several processes at once), aliases,
lineage queries, and what an error leaves behind (nothing)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from aicd.errors import NotFoundError, StoreError
from aicd.store.registry import (
    ACTION_ALIAS_DELETE,
    ACTION_ALIAS_SET,
    NewVersion,
    RegistryStore,
    open_registry,
)
from aicd.store.repository import RunStore

SHA_A = "a" * 40
SHA_B = "b1" + "c" * 38


@pytest.fixture
def url(migrated_url: str, request: pytest.FixtureRequest) -> str:
    """A database at head with no registry rows (the shared PostgreSQL schema is emptied here)."""
    if migrated_url.startswith("postgresql"):
        engine: Engine = request.getfixturevalue("pg_database")
        with engine.connect() as conn:
            conn.exec_driver_sql(
                "TRUNCATE shared.models, shared.model_versions, shared.model_aliases, shared.audit_log "
                "RESTART IDENTITY CASCADE"
            )
    return migrated_url


@pytest.fixture
def store(url: str) -> Iterator[RegistryStore]:
    with open_registry(url) as s:
        yield s


def _new(
    commit: str | None = SHA_A, pipeline_id: int | None = None, metrics: dict[str, object] | None = None
) -> NewVersion:
    return NewVersion(
        artifact_digest="sha256:" + "0" * 64,
        artifact_name="model.joblib",
        artifact_size=3,
        metrics={"accuracy": 0.9} if metrics is None else metrics,  # type: ignore[arg-type]
        tags={"k": "v"},
        commit_sha=commit,
        ref="main",
        pipeline_id=pipeline_id,
        job_id=None if pipeline_id is None else 1,
        project="local/p",
        created_by="tester",
    )


def test_versions_are_numbered_per_model_and_the_model_is_made_on_first_use(store: RegistryStore) -> None:
    first = store.register_version("iris", _new(), description="flowers")
    second = store.register_version("iris", _new(commit=SHA_B))
    other = store.register_version("wine", _new())
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.model == "iris" and first.uri == "models:/iris/1"
    assert first.metrics == {"accuracy": 0.9} and first.tags == {"k": "v"}
    assert first.commit_sha == SHA_A and first.ref == "main" and first.created_by == "tester"
    model = store.get_model("iris")
    assert model.last_version == 2 and model.description == "flowers"
    assert [m.name for m in store.list_models()] == ["iris", "wine"]
    assert [v.version for v in store.list_versions("iris")] == [2, 1]
    assert store.latest_version("iris").version == 2
    assert store.get_version("iris", 1).commit_sha == SHA_A


def test_aliases_move_and_their_history_is_kept(store: RegistryStore) -> None:
    for _ in range(3):
        store.register_version("iris", _new())
    record, previous = store.set_alias("iris", "production", 1, actor="ann")
    assert (record.version, previous) == (1, None)
    record, previous = store.set_alias("iris", "production", 3, actor="bob")
    assert (record.version, previous) == (3, 1)
    assert store.resolve_alias("iris", "production").version == 3
    assert store.get_version("iris", 3).aliases == ("production",)
    assert store.get_version("iris", 1).aliases == ()
    assert store.get_model("iris").aliases == {"production": 3}
    removed = store.delete_alias("iris", "production", actor="cy")
    assert removed.version == 3
    with pytest.raises(NotFoundError, match="has no alias 'production'; its aliases: none yet"):
        store.resolve_alias("iris", "production")
    history = store.alias_history("iris")
    assert [(e.action, e.actor, e.previous, e.version) for e in history] == [
        (ACTION_ALIAS_DELETE, "cy", 3, None),
        (ACTION_ALIAS_SET, "bob", 1, 3),
        (ACTION_ALIAS_SET, "ann", None, 1),
    ]


def test_register_with_an_alias_points_it_in_the_same_step(store: RegistryStore) -> None:
    store.register_version("iris", _new())
    record = store.register_version("iris", _new(), alias="staging")
    assert record.version == 2 and record.aliases == ("staging",)
    assert store.list_aliases("iris")[0].version == 2


def test_unknown_names_are_clear_errors(store: RegistryStore) -> None:
    store.register_version("iris", _new())
    store.set_alias("iris", "production", 1)
    with pytest.raises(
        NotFoundError, match=r"no model named 'irsi' \(did you mean \"iris\"\?\); models: iris"
    ):
        store.get_model("irsi")
    with pytest.raises(NotFoundError, match=r"model 'iris' has no version 5 \(it has version 1\)"):
        store.get_version("iris", 5)
    with pytest.raises(NotFoundError, match=r"no alias 'prodution' \(did you mean \"production\"\?\)"):
        store.resolve_alias("iris", "prodution")
    with pytest.raises(NotFoundError, match="has no version 9"):
        store.set_alias("iris", "production", 9)
    with pytest.raises(NotFoundError, match="no alias 'nope'"):
        store.delete_alias("iris", "nope")
    assert store.resolve_alias("iris", "production").version == 1  # untouched


def test_a_failed_registration_leaves_no_gap(store: RegistryStore) -> None:
    store.register_version("iris", _new())
    # Not JSON: the version's insert fails after the counter moved (SQLite: StoreError; psycopg
    # raises TypeError itself). The core API never passes such metrics; here it makes the failure.
    with pytest.raises((StoreError, TypeError)):
        store.register_version("iris", _new(metrics={"x": object()}))
    with pytest.raises((StoreError, TypeError)):
        store.register_version("newmodel", _new(metrics={"x": object()}))
    assert store.register_version("iris", _new()).version == 2
    assert [m.name for m in store.list_models()] == ["iris"]  # the failed first version made no model


def test_lineage_from_commit_prefix_and_to_the_pipeline(url: str, store: RegistryStore) -> None:
    with RunStore.open(url) as runs:
        pipeline = runs.create_pipeline(
            project_dir="/p", ref="main", sha=SHA_B, source="push", file=".gitlab-ci.yml", run_dir_root="/r"
        )
        from aicd.store.records import NewJob

        [job_id] = runs.add_jobs(pipeline.id, [NewJob("register", "register", "on_success", False)])
    ours = store.register_version(
        "iris", NewVersion(commit_sha=SHA_B, pipeline_id=pipeline.id, job_id=job_id, ref="main")
    )
    foreign = store.register_version("iris", _new(commit=SHA_A, pipeline_id=pipeline.id))
    store.register_version("wine", NewVersion(commit_sha=SHA_B))
    found = store.versions_for_commit("b1cc")
    assert [(v.model, v.version) for v in found] == [("wine", 1), ("iris", 1)]
    assert store.versions_for_commit(SHA_B.upper().lower()) == found
    assert store.versions_for_commit("b1c_") == []  # LIKE wildcards are literal
    assert store.versions_for_commit("dead") == []
    link = store.pipeline_link(ours)
    assert link is not None and link.pipeline_id == pipeline.id and link.sha == SHA_B
    assert (link.job_name, link.job_status) == ("register", "created")
    assert store.pipeline_link(foreign) is None  # same id, other commit: another CI's pipeline


def _register_many(url: str, worker: int, count: int) -> list[int]:
    with open_registry(url) as store:
        return [store.register_version("iris", _new(pipeline_id=worker)).version for _ in range(count)]


def test_concurrent_processes_get_gapless_unique_versions(url: str) -> None:
    """8 processes x 5 registrations of the same (new) model at once: versions 1..40, once each."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        results = pool.starmap(_register_many, [(url, worker, 5) for worker in range(8)])
    numbers = sorted(n for batch in results for n in batch)
    assert numbers == list(range(1, 41))
    with open_registry(url) as store:
        assert store.get_model("iris").last_version == 40
        assert sorted(v.version for v in store.list_versions("iris")) == list(range(1, 41))


def test_open_registry_creates_a_new_database(tmp_path: Path) -> None:
    with open_registry(f"sqlite:///{tmp_path / 'new' / 'aicd.db'}") as store:
        assert store.list_models() == []
        assert store.register_version("m", NewVersion()).version == 1
