"""DeployStore on SQLite and PostgreSQL: environments, revisions, deployments, events and incidents;
gapless numbering and one active deployment under concurrency (threads and processes); the
migration from 0002 with data in it, and back."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier as ProcessBarrier
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic import command
from sqlalchemy import delete, insert, inspect, select, update
from sqlalchemy.engine import Engine

from aicd.errors import ConfigError, ConflictError, NotFoundError
from aicd.store import current_revision, upgrade
from aicd.store.db import connect
from aicd.store.deployments import DeployStore, open_deploy_store
from aicd.store.migrate import alembic_config
from aicd.store.migrations import HEAD
from aicd.store.schema import deployments, incidents, models, pipelines, projects

NEW_TABLES = {"environments", "revisions", "deployments", "deploy_events", "incidents"}
SPEC = {"command": ["python", "serve.py"], "port": "$PORT", "health": {"path": "/healthz", "timeout_s": 2.5}}
T = TypeVar("T")


@pytest.fixture
def url(migrated_url: str, request: pytest.FixtureRequest) -> str:
    """A database at head with no deployment rows (the shared PostgreSQL schema is emptied here)."""
    if migrated_url.startswith("postgresql"):
        engine: Engine = request.getfixturevalue("pg_database")
        with engine.connect() as conn:
            conn.exec_driver_sql(
                "TRUNCATE shared.environments, shared.revisions, shared.deployments, shared.deploy_events, "
                "shared.incidents RESTART IDENTITY CASCADE"
            )
    return migrated_url


@pytest.fixture
def store(url: str) -> Iterator[DeployStore]:
    with open_deploy_store(url) as s:
        yield s


def _set(url: str, table: Any, row_id: int, **values: Any) -> None:
    """Change a row behind the store's back (times the API sets itself)."""
    database = connect(url)
    try:
        with database.writer.begin() as conn:
            conn.execute(update(table).where(table.c.id == row_id).values(**values))
    finally:
        database.dispose()


# -- environments ----------------------------------------------------------------------------------


def test_environments_are_made_once_per_scope_and_name(store: DeployStore) -> None:
    first = store.ensure_environment("staging")
    again = store.ensure_environment("staging")
    assert again.id == first.id and again.created_at == first.created_at
    assert (first.scope, first.status, first.tier, first.weights, first.url) == ("", "idle", None, {}, None)
    tiered = store.ensure_environment("staging", tier="staging")
    assert tiered.id == first.id and tiered.tier == "staging"
    assert store.ensure_environment("staging").tier == "staging"  # no tier given: kept
    other = store.ensure_environment("staging", scope="/srv/proj")
    assert other.id != first.id and other.scope == "/srv/proj"
    store.ensure_environment("production", tier="production")
    listed = [(e.scope, e.name) for e in store.list_environments()]
    assert listed == [("", "production"), ("", "staging"), ("/srv/proj", "staging")]
    assert [e.name for e in store.list_environments(scope="/srv/proj")] == ["staging"]
    assert store.list_environments(scope="/nope") == []
    assert store.find_environment("staging", scope="/srv/proj") == other
    assert store.find_environment("staging", scope="/other") is None
    assert store.get_environment("staging") == tiered
    assert tiered.to_json()["tier"] == "staging" and tiered.to_json()["weights"] == {}


def test_unknown_environments_and_bad_names_are_clear_errors(store: DeployStore) -> None:
    store.ensure_environment("staging")
    with pytest.raises(
        NotFoundError,
        match=r"^no environment 'stagin' \(did you mean \"staging\"\?\); "
        r"deploy to it first with `aicd deploy --env stagin`$",
    ):
        store.get_environment("stagin")
    with pytest.raises(NotFoundError, match=r"^no environment 'staging'; deploy to it first"):
        store.get_environment("staging", scope="/elsewhere")
    with pytest.raises(ConfigError, match="at most 100 characters"):
        store.ensure_environment("x" * 101)
    with pytest.raises(ConfigError, match="needs a name"):
        store.ensure_environment(" ")
    assert [e.name for e in store.list_environments()] == ["staging"]


def test_update_environment_sets_allowed_fields_only(store: DeployStore) -> None:
    env = store.ensure_environment("prod")
    changed = store.update_environment(
        env.id,
        status="healthy",
        url="http://127.0.0.1:8080",
        router_port=8080,
        stable_revision="r1",
        canary_revision="r2",
        weights={"r1": 90, "r2": 10},
        agent_pid=4242,
        state_dir="/var/aicd/prod",
        tier="production",
    )
    assert changed.weights == {"r1": 90, "r2": 10} and changed.router_port == 8080
    assert (changed.status, changed.stable_revision, changed.canary_revision) == ("healthy", "r1", "r2")
    assert (changed.agent_pid, changed.state_dir, changed.tier) == (4242, "/var/aicd/prod", "production")
    assert changed.updated_at >= env.updated_at and changed.created_at == env.created_at
    assert store.get_environment("prod") == changed
    cleared = store.update_environment(env.id, canary_revision=None, weights={"r1": 100}, agent_pid=None)
    assert (cleared.canary_revision, cleared.weights, cleared.agent_pid) == (None, {"r1": 100}, None)
    with pytest.raises(
        ValueError, match=r"cannot set environment field\(s\) stat \(did you mean \"status\"\?\)"
    ):
        store.update_environment(env.id, stat="down")
    with pytest.raises(ValueError, match=r"cannot set environment field.*name"):
        store.update_environment(env.id, name="other")
    with pytest.raises(
        ValueError, match=r"unknown environment status 'helthy' \(did you mean \"healthy\"\?\)"
    ):
        store.update_environment(env.id, status="helthy")
    with pytest.raises(NotFoundError, match="no environment with id 999"):
        store.update_environment(999, status="down")
    assert store.get_environment("prod") == cleared


# -- revisions -------------------------------------------------------------------------------------


def test_revisions_are_numbered_per_environment(store: DeployStore) -> None:
    staging = store.ensure_environment("staging")
    prod = store.ensure_environment("prod")
    r1 = store.new_revision(
        staging.id,
        release_dir="/rel/1",
        spec=SPEC,
        commit_sha="a" * 40,
        ref="main",
        pipeline_id=17,
        job_id="88",
        model_version="models:/iris/3",
    )
    assert (r1.name, r1.number, r1.status, r1.environment, r1.ports) == ("r1", 1, "starting", "staging", [])
    assert r1.spec == SPEC and (r1.pipeline_id, r1.job_id) == ("17", "88")
    assert (r1.commit_sha, r1.ref, r1.model_version, r1.stopped_at) == (
        "a" * 40,
        "main",
        "models:/iris/3",
        None,
    )
    r2 = store.new_revision(staging.id, release_dir="/rel/2", spec={})
    p1 = store.new_revision(prod.id, release_dir="/rel/p1", spec={})
    assert (r2.name, r2.number, p1.name) == ("r2", 2, "r1")
    running = store.update_revision(staging.id, "r1", status="running", ports=[20001, 20002])
    assert (running.status, running.ports) == ("running", [20001, 20002])
    stopped = store.update_revision(staging.id, "r1", status="stopped", stopped_at=1234.5)
    assert (stopped.status, stopped.ports, stopped.stopped_at) == ("stopped", [20001, 20002], 1234.5)
    assert store.get_revision(staging.id, "r1") == stopped
    assert [r.name for r in store.list_revisions(staging.id)] == ["r1", "r2"]
    assert store.list_revisions(store.ensure_environment("empty").id) == []
    assert r1.to_json()["spec"]["health"]["timeout_s"] == 2.5


def test_unknown_revisions_are_clear_errors(store: DeployStore) -> None:
    env = store.ensure_environment("staging")
    with pytest.raises(
        NotFoundError, match="environment 'staging' has no revision 'r1'; its revisions: none yet"
    ):
        store.get_revision(env.id, "r1")
    for _ in range(2):
        store.new_revision(env.id, release_dir="/rel", spec={})
    with pytest.raises(
        NotFoundError,
        match=r"^environment 'staging' has no revision 'rev1' \(did you mean \"r1\"\?\); "
        r"its revisions: r1, r2$",
    ):
        store.update_revision(env.id, "rev1", status="running")
    with pytest.raises(ValueError, match="unknown revision status 'up'"):
        store.update_revision(env.id, "r1", status="up")
    with pytest.raises(NotFoundError, match="no environment with id 77"):
        store.new_revision(77, release_dir="/rel", spec={})
    with pytest.raises(NotFoundError, match="no environment with id 77"):
        store.list_revisions(77)
    assert store.get_revision(env.id, "r1").status == "starting"


# -- deployments -----------------------------------------------------------------------------------


def test_one_active_deployment_per_environment(store: DeployStore) -> None:
    env = store.ensure_environment("prod")
    other = store.ensure_environment("staging")
    first = store.begin_deployment(
        env.id,
        revision="r1",
        strategy="canary",
        actor="ann",
        commit_sha="c" * 40,
        commit_at=1000.0,
        ref="main",
        pipeline_id=5,
        job_id=9,
        pipeline_url="http://ci/p/5",
    )
    assert (first.number, first.status, first.environment, first.previous_revision) == (
        1,
        "running",
        "prod",
        None,
    )
    assert (first.pipeline_id, first.job_id, first.commit_at, first.finished_at) == ("5", "9", 1000.0, None)
    assert store.active_deployment(env.id) == first
    paused = store.set_deployment(first.id, status="paused", reason="step 2: pause")
    with pytest.raises(
        ConflictError,
        match=r"^environment prod: deployment #1 \(r1, canary\) is in progress \(paused\); "
        r"promote or abort it first: `aicd promote prod` / `aicd abort prod`$",
    ):
        store.begin_deployment(env.id, revision="r2", strategy="recreate", actor="bob")
    assert store.begin_deployment(other.id, revision="r1", strategy="recreate", actor="bob").number == 1
    analysis = {"verdict": "pass", "score": 97.5, "measurements": [{"at": 1.0, "value": None}]}
    done = store.set_deployment(paused.id, status="succeeded", analysis=analysis, finished=True)
    assert done.status == "succeeded" and done.reason == "step 2: pause" and done.analysis == analysis
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert store.active_deployment(env.id) is None
    second = store.begin_deployment(
        env.id, revision="r2", strategy="blue-green", actor="bob", previous_revision="r1"
    )
    assert (second.number, second.previous_revision) == (2, "r1")  # the refused attempt left no gap
    assert store.get_deployment(env.id, 1) == done
    assert done.to_json()["analysis"] == analysis


def test_deployment_errors(store: DeployStore) -> None:
    env = store.ensure_environment("prod")
    with pytest.raises(NotFoundError, match=r"environment 'prod' has no deployment #1 \(it has none yet\)"):
        store.get_deployment(env.id, 1)
    store.begin_deployment(env.id, revision="r1", strategy="recreate", actor="a", status="succeeded")
    store.begin_deployment(env.id, revision="r2", strategy="recreate", actor="a", status="failed")
    with pytest.raises(NotFoundError, match=r"has no deployment #7 \(it has #1 to #2\)"):
        store.get_deployment(env.id, 7)
    with pytest.raises(NotFoundError, match="no environment with id 55"):
        store.get_deployment(55, 1)
    with pytest.raises(
        ValueError, match=r"unknown deployment strategy 'blue_green' \(did you mean \"blue-green\"\?\)"
    ):
        store.begin_deployment(env.id, revision="r3", strategy="blue_green", actor="a")
    with pytest.raises(ValueError, match="unknown deployment status 'done'"):
        store.set_deployment(1, status="done")
    with pytest.raises(NotFoundError, match="no deployment with id 99"):
        store.set_deployment(99, status="failed")
    with pytest.raises(NotFoundError, match="no environment with id 55"):
        store.begin_deployment(55, revision="r1", strategy="recreate", actor="a")
    assert store.begin_deployment(env.id, revision="r3", strategy="rollback", actor="a").number == 3


def test_list_deployments_filters_and_orders_newest_first(url: str, store: DeployStore) -> None:
    a = store.ensure_environment("a")
    b = store.ensure_environment("b", scope="/srv/x")
    made = []
    for env, started in ((a, 100.0), (b, 200.0), (a, 300.0), (a, 400.0)):
        dep = store.begin_deployment(env.id, revision="r", strategy="recreate", actor="t", status="succeeded")
        _set(url, deployments, dep.id, started_at=started)
        made.append(dep.id)

    def ids(**filters: Any) -> list[int]:
        return [d.id for d in store.list_deployments(**filters)]

    assert ids() == made[::-1]
    assert ids(environment="a") == [made[3], made[2], made[0]]
    assert ids(scope="/srv/x") == [made[1]]
    assert ids(scope="") == [made[3], made[2], made[0]]
    assert ids(environment="b", scope="") == []
    assert ids(since=200.0, until=400.0) == [made[2], made[1]]  # [since, until)
    assert ids(limit=2) == [made[3], made[2]]
    assert store.list_deployments(environment="a", limit=1)[0].started_at == 400.0


# -- events ----------------------------------------------------------------------------------------


def test_events_are_listed_oldest_first_with_filters(store: DeployStore) -> None:
    env = store.ensure_environment("prod")
    other = store.ensure_environment("prod", scope="/srv/p")
    dep = store.begin_deployment(env.id, revision="r2", strategy="canary", actor="ann")
    started = store.add_event(
        env.id,
        "deployment.started",
        "canary of r2 started",
        deployment_id=dep.id,
        revision="r2",
        actor="ann",
        at=10,
    )
    assert (started.environment, started.at, started.actor, started.data) == ("prod", 10.0, "ann", None)
    weight = store.add_event(
        env.id,
        "weight.set",
        "r2 takes 10%",
        deployment_id=dep.id,
        data={"weights": {"r1": 90, "r2": 10}},
        at=20,
    )
    crash = store.add_event(env.id, "instance.crashed", "r1 exited 137", revision="r1", at=30)
    elsewhere = store.add_event(other.id, "deployment.started", "other scope", at=15)
    assert crash.actor == "system" and crash.deployment_id is None

    def ids(**filters: Any) -> list[int]:
        return [e.id for e in store.list_events(**filters)]

    assert ids() == [started.id, weight.id, crash.id, elsewhere.id]  # by id: the order they were recorded
    assert ids(environment="prod", scope="") == [started.id, weight.id, crash.id]
    assert ids(scope="/srv/p") == [elsewhere.id]
    assert ids(deployment_id=dep.id) == [started.id, weight.id]
    assert ids(since=20) == [weight.id, crash.id]
    assert ids(scope="", limit=2) == [weight.id, crash.id]  # the last two, oldest first
    assert ids(after_id=weight.id) == [crash.id, elsewhere.id]
    assert store.list_events(deployment_id=dep.id)[1] == weight
    assert weight.to_json()["data"] == {"weights": {"r1": 90, "r2": 10}}
    with pytest.raises(NotFoundError, match="no environment with id 404"):
        store.add_event(404, "x", "y")


def test_deleting_rows_cascades_or_unlinks(url: str, store: DeployStore) -> None:
    env = store.ensure_environment("prod")
    keep = store.ensure_environment("keep")
    dep = store.begin_deployment(env.id, revision="r1", strategy="recreate", actor="a")
    event = store.add_event(env.id, "deployment.started", "go", deployment_id=dep.id)
    incident = store.open_incident(env.id, "change_failure", "bad", opened_by="judge", deployment_id=dep.id)
    store.new_revision(env.id, release_dir="/r", spec={})
    store.add_event(keep.id, "note", "stays")
    database = connect(url)
    try:
        with database.writer.begin() as conn:
            conn.execute(delete(deployments).where(deployments.c.id == dep.id))
        assert store.list_events(environment="prod")[0].deployment_id is None  # SET NULL
        assert store.get_incident(incident.id).deployment_id is None
        assert store.list_events(environment="prod")[0].id == event.id
        with database.writer.begin() as conn:
            conn.exec_driver_sql(f"DELETE FROM environments WHERE id = {env.id}")
    finally:
        database.dispose()
    assert [e.message for e in store.list_events()] == ["stays"]  # CASCADE
    assert store.list_incidents() == [] and store.list_deployments() == []
    with pytest.raises(NotFoundError):
        store.list_revisions(env.id)


# -- incidents -------------------------------------------------------------------------------------


def test_incidents_open_and_resolve_once(store: DeployStore) -> None:
    env = store.ensure_environment("prod")
    dep = store.begin_deployment(env.id, revision="r2", strategy="canary", actor="ann")
    down = store.open_incident(
        env.id,
        "down",
        "health checks fail",
        opened_by="agent",
        cause="r1 crash loop",
        data={"probes": 3},
        at=100,
    )
    assert (down.environment, down.kind, down.opened_at, down.resolved_at) == ("prod", "down", 100.0, None)
    failure = store.open_incident(
        env.id, "change_failure", "r2 failed analysis", opened_by="judge", deployment_id=dep.id
    )
    assert [i.id for i in store.open_incidents(env.id)] == [down.id, failure.id]
    assert [i.id for i in store.open_incidents(env.id, "change_failure")] == [failure.id]
    resolved = store.resolve_incident(down.id, resolved_by="bob", resolution="restarted", at=160)
    assert (resolved.resolved_at, resolved.resolved_by, resolved.resolution) == (160.0, "bob", "restarted")
    assert resolved.data == {"probes": 3} and resolved.cause == "r1 crash loop"
    assert store.get_incident(down.id) == resolved
    assert [i.id for i in store.open_incidents(env.id)] == [failure.id]
    with pytest.raises(
        ConflictError, match=rf"incident #{down.id} \(health checks fail\) was resolved already, at .* by bob"
    ):
        store.resolve_incident(down.id, resolved_by="cy")
    with pytest.raises(ValueError, match="before it opened"):
        store.resolve_incident(failure.id, resolved_by="cy", at=1.0)
    with pytest.raises(NotFoundError, match="no incident #999"):
        store.resolve_incident(999, resolved_by="cy")
    with pytest.raises(NotFoundError, match="no incident #999"):
        store.get_incident(999)
    with pytest.raises(
        ValueError, match=r"unknown incident kind 'outage'; one of: down, slo, change_failure, declared"
    ):
        store.open_incident(env.id, "outage", "x", opened_by="a")
    assert store.get_incident(down.id).resolved_by == "bob"  # the refused second resolution changed nothing
    assert resolved.to_json()["resolved_at"] == 160.0


def test_list_incidents_returns_those_overlapping_the_window(store: DeployStore) -> None:
    prod = store.ensure_environment("prod")
    stage = store.ensure_environment("stage", scope="/srv")
    # Window [100, 200). Intervals: before [10, 50) -> out; across the start [50, 120) -> in;
    # inside [130, 140) -> in; across the end [190, 250) -> in; after [200, 210) -> out (opened at until);
    # still open since 150 -> in; resolved exactly at since [40, 100) -> in: it touches the window, and
    # touching incidents form one failure episode (aicd.reliability.figures), which began before it.
    spans = {
        "before": (10, 50),
        "start": (50, 120),
        "inside": (130, 140),
        "end": (190, 250),
        "after": (200, 210),
    }
    spans_open = {"open": 150}
    ids: dict[str, int] = {}
    for title, (opened, resolved) in spans.items():
        inc = store.open_incident(prod.id, "slo", title, opened_by="t", at=opened)
        store.resolve_incident(inc.id, resolved_by="t", at=resolved)
        ids[title] = inc.id
    ids["open"] = store.open_incident(prod.id, "down", "open", opened_by="t", at=spans_open["open"]).id
    edge = store.open_incident(prod.id, "declared", "edge", opened_by="t", at=40)
    store.resolve_incident(edge.id, resolved_by="t", at=100)
    other = store.open_incident(stage.id, "down", "other env", opened_by="t", at=160)

    titles = [i.title for i in store.list_incidents(environment="prod", since=100, until=200)]
    assert titles == ["edge", "start", "inside", "open", "end"]  # by opening time
    everywhere = [i.title for i in store.list_incidents(since=100, until=200)]
    assert everywhere == ["edge", "start", "inside", "open", "other env", "end"]
    assert [i.id for i in store.list_incidents(scope="/srv")] == [other.id]
    assert len(store.list_incidents(environment="prod")) == 7
    assert [i.title for i in store.list_incidents(environment="prod", since=240)] == ["open", "end"]
    assert [i.title for i in store.list_incidents(environment="prod", until=40)] == ["before"]


# -- concurrency -----------------------------------------------------------------------------------


def _together(
    count: int, work: Callable[[int], T], warm: Callable[[], object] | None = None
) -> list[T | BaseException]:
    """Run work(0..count-1) in threads released at once (each calls `warm` first, e.g. to hold a
    pooled connection ready); results or exceptions, in order."""
    start = threading.Barrier(count)
    out: list[T | BaseException] = [RuntimeError("did not run")] * count

    def run(i: int) -> None:
        if warm is not None:
            warm()
        start.wait(timeout=30)
        try:
            out[i] = work(i)
        except BaseException as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return out


def test_counters_have_no_gaps_under_concurrency(store: DeployStore) -> None:
    """8 threads x 5 revisions, deployments and events in one environment at once."""
    env = store.ensure_environment("prod")

    def work(i: int) -> list[tuple[int, int]]:
        made = []
        for _ in range(5):
            rev = store.new_revision(env.id, release_dir=f"/rel/{i}", spec={"worker": i})
            dep = store.begin_deployment(
                env.id, revision=rev.name, strategy="recreate", actor=f"w{i}", status="succeeded"
            )
            store.add_event(env.id, "deployment.succeeded", f"w{i}", deployment_id=dep.id)
            made.append((rev.number, dep.number))
        return made

    results = _together(8, work)
    numbers = [pair for r in results if isinstance(r, list) for pair in r]
    assert len(numbers) == 40, [r for r in results if isinstance(r, BaseException)]
    assert sorted(r for r, _ in numbers) == list(range(1, 41))
    assert sorted(d for _, d in numbers) == list(range(1, 41))
    assert [r.name for r in store.list_revisions(env.id)] == [f"r{n}" for n in range(1, 41)]
    assert len(store.list_events(environment="prod")) == 40


def test_environment_creation_races_make_one_row(store: DeployStore) -> None:
    results = _together(8, lambda i: store.ensure_environment("new", tier="staging").id)
    assert all(isinstance(r, int) for r in results), results
    assert len(set(results)) == 1
    assert [e.name for e in store.list_environments()] == ["new"]


def test_of_concurrent_deployments_exactly_one_wins(store: DeployStore) -> None:
    env = store.ensure_environment("prod")
    results = _together(
        8,
        lambda i: store.begin_deployment(env.id, revision=f"r{i}", strategy="canary", actor=f"w{i}"),
        warm=store.list_environments,  # every thread's connection open: the race is real
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(e, ConflictError) for e in losers), losers
    assert winners[0].number == 1 and store.active_deployment(env.id) == winners[0]
    assert len(store.list_deployments()) == 1
    store.set_deployment(winners[0].id, status="aborted", finished=True)
    assert store.begin_deployment(env.id, revision="r9", strategy="recreate", actor="x").number == 2


def test_monitors_racing_open_one_incident_of_a_kind(store: DeployStore) -> None:
    env = store.ensure_environment("prod")
    results = _together(
        8,
        lambda i: store.open_incident_once(env.id, "down", f"down (monitor {i})", opened_by=f"m{i}"),
        warm=store.list_environments,  # every thread's connection open: the race is real
    )
    opened = [r for r in results if r is not None]
    assert len(opened) == 1 and not any(isinstance(r, BaseException) for r in results), results
    assert [i.id for i in store.open_incidents(env.id, "down")] == [opened[0].id]
    # another kind is not held back; once resolved, the kind opens again
    assert store.open_incident_once(env.id, "slo", "errors", opened_by="m") is not None
    store.resolve_incident(opened[0].id, resolved_by="m")
    assert store.open_incident_once(env.id, "down", "down again", opened_by="m") is not None


def _begin_in_process(url: str, env_id: int, me: int, start: ProcessBarrier, out: Queue[Any]) -> None:
    with open_deploy_store(url) as store:
        store.list_environments()  # connect before the race
        start.wait(timeout=60)
        try:
            dep = store.begin_deployment(env_id, revision=f"r{me}", strategy="blue-green", actor=f"p{me}")
            out.put((me, "won", dep.number))
        except ConflictError as exc:
            out.put((me, "conflict", str(exc)))
        except BaseException as exc:
            out.put((me, "error", repr(exc)))


def test_of_concurrent_processes_exactly_one_deploys(store: DeployStore, url: str) -> None:
    env = store.ensure_environment("prod")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    out: Queue[Any] = ctx.Queue()
    procs = [ctx.Process(target=_begin_in_process, args=(url, env.id, i, start, out)) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    outcomes = sorted(kind for _, kind, _ in results)
    assert outcomes == ["conflict", "conflict", "conflict", "won"], results
    assert [number for _, kind, number in results if kind == "won"] == [1]
    assert all("is in progress (running)" in str(text) for _, kind, text in results if kind == "conflict")


# -- migration -------------------------------------------------------------------------------------


def _alembic(url: str, action: str, target: str) -> None:
    database = connect(url)
    config = alembic_config()
    try:
        with database.writer.connect() as conn, conn.begin():
            config.attributes["connection"] = conn
            getattr(command, action)(config, target)
    finally:
        database.dispose()


def _tables(url: str) -> set[str]:
    database = connect(url)
    try:
        return set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()


def test_migration_from_0002_keeps_data_and_downgrades(db_url: str) -> None:
    _alembic(db_url, "upgrade", "0002")
    assert current_revision(db_url) == "0002" and not NEW_TABLES & _tables(db_url)
    database = connect(db_url)
    try:
        with database.writer.begin() as conn:
            project_id = conn.execute(
                insert(projects)
                .values(path="/p", created_at=1.0, last_pipeline_iid=1)
                .returning(projects.c.id)
            ).scalar_one()
            conn.execute(
                insert(pipelines).values(
                    project_id=project_id,
                    iid=1,
                    project_dir="/p",
                    ref="main",
                    sha="a" * 40,
                    source="push",
                    file="ci.yml",
                    status="success",
                    created_at=2.0,
                    run_dir="/r/1",
                )
            )
            conn.execute(insert(models).values(name="iris", last_version=0, created_at=3.0))
    finally:
        database.dispose()

    upgrade(db_url)
    assert current_revision(db_url) == HEAD
    assert _tables(db_url) >= NEW_TABLES
    with open_deploy_store(db_url) as store:
        env = store.ensure_environment("prod")
        dep = store.begin_deployment(env.id, revision="r1", strategy="recreate", actor="a")
        store.add_event(env.id, "deployment.started", "go", deployment_id=dep.id)
        store.open_incident(env.id, "declared", "drill", opened_by="a", deployment_id=dep.id)
        store.new_revision(env.id, release_dir="/r", spec={})

    _alembic(db_url, "downgrade", "0002")
    assert current_revision(db_url) == "0002" and not NEW_TABLES & _tables(db_url)
    upgrade(db_url)
    database = connect(db_url)
    try:
        with database.engine.connect() as conn:
            assert conn.execute(select(pipelines.c.sha, pipelines.c.status)).all() == [("a" * 40, "success")]
            assert conn.execute(select(models.c.name)).scalars().all() == ["iris"]
            assert conn.execute(select(incidents.c.id)).all() == []  # made again, empty
    finally:
        database.dispose()
    with open_deploy_store(db_url) as store:
        assert store.list_environments() == []


def test_open_deploy_store_creates_a_new_database(tmp_path: Path) -> None:
    with open_deploy_store(f"sqlite:///{tmp_path / 'new' / 'aicd.db'}") as store:
        env = store.ensure_environment("local")
        assert store.begin_deployment(env.id, revision="r1", strategy="recreate", actor="me").number == 1
