"""Fixtures: a real `aicd server` on PostgreSQL sending jobs through the real RabbitMQ to real
`aicd worker` processes, each with its own home (nothing shared through the file system).

Each test gets its own queue prefix (AICD_QUEUE_PREFIX), so tests running at once under
pytest-xdist never see each other's messages; its queues are deleted afterwards. Each test
holds the broker lock shared; one marked `broker_restart` holds it alone (no other test's
broker connections are dropped under it). RabbitMQ not running fails the tests with a clear
message; it never skips them. The helpers are in workers_cluster.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from workers_cluster import BROKER_URL, LEASE_S, Cluster, ServerProc, broker_lock, broker_reachable

from pg_testing import fresh_database

WAIT_TIMEOUT_S = 900  # a test may first wait for the broker while another restarts it


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(WAIT_TIMEOUT_S))


@pytest.fixture(scope="module")
def pg_workers_database() -> Iterator[Engine]:
    with fresh_database("aicd_wrk") as engine:
        yield engine


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    broker_reachable()
    with broker_lock(alone=request.node.get_closest_marker("broker_restart") is not None):
        yield from _cluster(request, tmp_path)


def _cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    engine: Engine = request.getfixturevalue("pg_workers_database")
    schema = f"s_{secrets.token_hex(4)}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = engine.url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    prefix = f"t{secrets.token_hex(5)}.jobs"
    env = {
        "AICD_BROKER_URL": BROKER_URL,
        "AICD_QUEUE_PREFIX": prefix,
        "AICD_LEASE_TIMEOUT_S": str(LEASE_S),
    }
    env.update(getattr(request, "param", {}) or {})
    server = ServerProc(tmp_path / "home", url, poll=False, env=env)
    server.start()
    found = Cluster(server, prefix, tmp_path)
    try:
        yield found
    finally:
        found.close()
        server.stop(check=False)
