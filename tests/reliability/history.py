"""One recorded history in the deployment store, and its figures worked out by hand.

Day n is n days after Sunday 2024-01-07 00:00 UTC (T0). The window asked for is
[T0 - 2 d, T0 + 28 d): SINCE_ISO .. UNTIL_ISO.

production
  deployments (finished at 10:00 of the day; lead time = finished - commit):
    #1 day 1  succeeded    lead 2 h     <- first success: the service exists from day 1 10:00
    #2 day 2  succeeded    lead 4 h
    #3 day 3  rolled_back  lead 1 h     (change_failure incident linked)
    #4 day 8  succeeded    lead 30 h
    #5 day 15 succeeded    lead 6 h
    #6 day 22 failed       lead 1 h
  incidents:
    c  change_failure day 3 09:30 - 10:00 (30 min), deployment #3
    a  down           day 10 12:00 - 14:00
    b  slo            day 10 13:00 - 15:00 (overlaps a)
    d  down           day 27 22:00 - still open
staging: one failed deployment (day 5), nothing ever served: an empty window.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from aicd.store.db import connect
from aicd.store.deployments import DeployStore
from aicd.store.schema import deployments

H = 3600.0
D = 24 * H
T0 = 1704585600.0  # 2024-01-07T00:00:00Z, a Sunday
SINCE_ISO = "2024-01-05T00:00:00"  # T0 - 2 d (UTC: no zone given)
UNTIL_ISO = "2024-02-04T00:00:00"  # T0 + 28 d
SINCE, UNTIL = T0 - 2 * D, T0 + 28 * D
SLO = 0.995


def day(n: float, hour: float = 0) -> float:
    return T0 + n * D + hour * H


# -- the answers, by hand --------------------------------------------------------------------------
START = day(1, 10)  # max(since, first successful deployment)
OBSERVED = UNTIL - START  # 28 d - 1 d 10 h = 26 d 14 h = 638 h
DOWNTIME = 5 * H  # a u b = 12:00-15:00 = 3 h, plus d = 22:00-24:00 = 2 h; c is no downtime
UPTIME = 633 * H  # 638 - 5
FAILURES = 3  # episodes {c}, {a, b}, {d}
INCIDENTS = 4
OPEN_INCIDENTS = 1  # d
MTTF = 211 * H  # 633 / 3
RESTORE = 5.5 * H  # episodes c 0.5 h (until the rollback finished), {a, b} 12:00-15:00 3 h, d 2 h so far
MTTR = 6600.0  # 5.5 h / 3 = 110 min
MTBF = 211 * H + 6600.0
AVAILABILITY = 633 / 638
BUDGET = 0.005 * 638 * H  # 3.19 h = 11484 s
BUDGET_LEFT = BUDGET - DOWNTIME  # -1.81 h = -6516 s
BUDGET_LEFT_FRACTION = (3.19 - 5) / 3.19  # -0.567...
# DORA: successful deployments #1, #2, #4, #5 over the days touched (day 1 .. day 27): weeks of
# Jan 7 (days 1-6), 14, 21, 28: deploy days [2, 1, 1, 0] median 1 < 3; weeks with one [1, 1, 1, 0]
# median 1 -> Weekly, high.
DEPLOYMENTS = 4
PER_DAY = 4 / (638 / 24)  # 0.1505 a day
LEAD_TIME = 5 * H  # median of [2, 4, 6, 30] h = (4 + 6) / 2 -> One day, elite
CHANGE_FAILURE_RATE = 2 / 6  # #3 rolled back, #6 failed; of 6 -> 16-45%, medium
TIME_TO_RESTORE = 2 * H  # median of [0.5, 2, 2] h (d still open) -> One day, high


def record(url: str, *, scope: str = "") -> None:
    """Write the history above into the database at `url` (migrated to head)."""
    store = DeployStore(connect(url), owns_database=True)
    try:
        production = store.ensure_environment("production", scope=scope, tier="production")
        lead = {1: 2 * H, 2: 4 * H, 3: 1 * H, 4: 30 * H, 5: 6 * H, 6: 1 * H}
        plan = [(1, 1, "succeeded"), (2, 2, "succeeded"), (3, 3, "rolled_back")]
        plan += [(4, 8, "succeeded"), (5, 15, "succeeded"), (6, 22, "failed")]
        ids: dict[int, int] = {}
        for number, when, status in plan:
            finished = day(when, 10)
            ids[number] = _deploy(
                store, url, production.id, number, finished - 1800, finished, status, lead[number]
            )
        c = store.open_incident(
            production.id, "change_failure", "r3 failed its analysis", opened_by="analysis",
            deployment_id=ids[3], at=day(3, 9.5),
        )  # fmt: skip
        store.resolve_incident(c.id, resolved_by="rollout", at=day(3, 10))
        a = store.open_incident(
            production.id, "down", "health checks fail", opened_by="agent", at=day(10, 12)
        )
        b = store.open_incident(
            production.id, "slo", "error rate over SLO", opened_by="agent", at=day(10, 13)
        )
        store.resolve_incident(a.id, resolved_by="agent", at=day(10, 14))
        store.resolve_incident(b.id, resolved_by="agent", at=day(10, 15))
        store.open_incident(production.id, "down", "health checks fail", opened_by="agent", at=day(27, 22))

        staging = store.ensure_environment("staging", scope=scope, tier="staging")
        _deploy(store, url, staging.id, 1, day(5, 9), day(5, 10), "failed", H)
    finally:
        store.close()


def _deploy(
    store: DeployStore,
    url: str,
    env_id: int,
    number: int,
    started: float,
    finished: float,
    status: str,
    lead: float,
) -> int:
    record = store.begin_deployment(
        env_id,
        revision=f"r{number}",
        strategy="canary",
        actor="test",
        commit_sha="a" * 40,
        commit_at=finished - lead,
    )
    store.set_deployment(record.id, status=status, finished=True)
    database = connect(url)  # the times of a history are not "now": set them behind the store's back
    try:
        with database.writer.begin() as conn:
            conn.execute(
                update(deployments)
                .where(deployments.c.id == record.id)
                .values(started_at=started, finished_at=finished)
            )
    finally:
        database.dispose()
    return record.id


def production(report: dict[str, Any]) -> dict[str, Any]:
    """The production entry of a report's JSON."""
    (entry,) = [e for e in report["environments"] if e["environment"] == "production"]
    return dict(entry)
