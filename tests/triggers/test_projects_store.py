"""ProjectStore on SQLite and PostgreSQL: projects, variables, refs, webhook deliveries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aicd.errors import ConflictError, NotFoundError
from aicd.store.db import Database, connect
from aicd.store.projects_repo import ProjectStore
from aicd.store.repository import RunStore


@pytest.fixture
def database(store_url: str) -> Iterator[Database]:
    db = connect(store_url)
    yield db
    db.dispose()


def test_projects(database: Database) -> None:
    store = ProjectStore(database)
    created = store.create("demo", "/srv/repo", "main", ".gitlab-ci.yml", 30.0, "encrypted")
    assert (created.name, created.key, created.poll_interval_s, created.has_webhook_secret) == (
        "demo", "server:demo", 30.0, True,
    )  # fmt: skip
    assert store.get("demo") == store.get(created.id) == store.get(str(created.id)) == created
    with pytest.raises(ConflictError, match="already exists"):
        store.create("demo", "/other", "main", ".gitlab-ci.yml", None, None)
    other = store.create("other", "/other", "dev", "ci.yml", None, None)
    assert [p.name for p in store.list()] == ["demo", "other"]
    assert not other.has_webhook_secret and store.webhook_secret_encrypted(other.id) is None
    assert store.webhook_secret_encrypted(created.id) == "encrypted"

    updated = store.update(created.id, poll_interval_s=None, webhook_secret=None, default_branch="dev")
    assert (updated.poll_interval_s, updated.has_webhook_secret, updated.default_branch) == (
        None,
        False,
        "dev",
    )
    with pytest.raises(ValueError, match="name"):
        store.update(created.id, name="x")

    # A local `aicd run` project (no name) is not a server project.
    runs = RunStore(database)
    local = runs.create_pipeline(
        project_dir="/home/me/proj", ref="main", sha="a", source="push", file="f", run_dir_root="/r"
    )
    with pytest.raises(NotFoundError):
        store.get(local.id if local.id != created.id else 999)
    # Pipelines of a server project count on its row; deleting the project deletes them.
    pipeline = runs.create_pipeline(
        project_dir=created.key, ref="main", sha="a", source="push", file="f", run_dir_root="/r"
    )
    assert pipeline.iid == 1
    store.delete(created.id)
    with pytest.raises(NotFoundError):
        runs.get_pipeline(pipeline.id)
    with pytest.raises(NotFoundError):
        store.get("demo")
    with pytest.raises(NotFoundError):
        store.delete(created.id)
    assert [p.name for p in store.list()] == ["other"]


def test_variables_refs_and_deliveries(database: Database) -> None:
    store = ProjectStore(database)
    project = store.create("demo", "/srv/repo", "main", ".gitlab-ci.yml", None, None).id
    first = store.set_variable(project, "B", "enc-b", masked=True)
    store.set_variable(project, "A", "enc-a", protected=True, file=True)
    again = store.set_variable(project, "B", "enc-b2")
    assert again.id == first.id and again.value_encrypted == "enc-b2" and not again.masked
    assert [(v.key, v.protected, v.file) for v in store.list_variables(project)] == [
        ("A", True, True), ("B", False, False),
    ]  # fmt: skip
    store.delete_variable(project, "A")
    with pytest.raises(NotFoundError):
        store.delete_variable(project, "A")
    with pytest.raises(NotFoundError):
        store.set_variable(999, "X", "e")

    assert store.get_refs(project) == {}
    store.set_refs(project, {"refs/heads/main": "a", "refs/tags/v1": "b"})
    store.set_ref(project, "refs/heads/main", "c")
    store.set_refs(project, {"refs/tags/v1": None})
    assert store.get_refs(project) == {"refs/heads/main": "c"}
    store.clear_refs(project)
    assert store.get_refs(project) == {}

    assert store.record_deliveries(project, "github", ["d1", "body:x"]) is True
    assert store.record_deliveries(project, "github", ["d2", "body:x"]) is False  # same body
    assert store.record_deliveries(project, "github", ["d1", "body:y"]) is False  # same delivery id
    assert store.record_delivery(project, "gitlab", "d1") is True  # another provider
    store.set_delivery_pipeline(project, "gitlab", "d1", 5)
    store.forget_deliveries(project, "gitlab", ["d1"])
    assert store.record_delivery(project, "gitlab", "d1") is True
