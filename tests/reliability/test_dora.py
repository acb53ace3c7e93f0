"""DORA's four keys (fourkeys' definitions and buckets) on histories worked out by hand.

Calendar: day 0 is Sunday 2024-01-07 00:00 UTC, the start of a fourkeys week
(BigQuery weeks begin on Sunday). `_at(n)` is noon of day n.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from aicd.reliability import Deployment, Incident, compute_dora, observe
from aicd.reliability.dora import (
    duration_bucket,
    failure_rate_bucket,
    frequency_bucket,
    measured_level,
    restore_level,
    window_days,
)

H = 3600.0
D = 24 * H
SUN = datetime(2024, 1, 7, tzinfo=UTC).timestamp()


def _at(day: float, hour: float = 12) -> float:
    return SUN + day * D + hour * H


def _ok(
    day: float, *, commit_at: float | None = None, change_failure: bool = False, id: int | None = None
) -> Deployment:
    return Deployment(_at(day), "succeeded", commit_at=commit_at, change_failure=change_failure, id=id)


def test_daily_when_the_median_week_has_three_deploy_days() -> None:
    window = observe(since=SUN, until=SUN + 28 * D, service_start=SUN)  # 4 whole weeks
    # Monday, Tuesday, Wednesday of each week: days_deployed per week = [3, 3, 3, 3], median 3 >= 3
    deployments = [_ok(7 * w + d) for w in range(4) for d in (1, 2, 3)]
    # a failed deployment on the other days changes nothing: only successful ones count
    deployments += [Deployment(at=_at(7 * w + 5), status="failed") for w in range(4)]
    key = compute_dora(deployments, [], window).deployment_frequency
    assert (key.bucket, key.level) == ("Daily", "elite")
    assert key.samples == 12
    assert key.value == pytest.approx(12 / 28)  # per day
    assert key.detail["per_week"] == pytest.approx(3.0)  # 12 / 28 * 7
    assert key.detail["days"] == 28


def test_weekly_monthly_yearly() -> None:
    four_weeks = observe(since=SUN, until=SUN + 28 * D, service_start=SUN)
    # one deployment in weeks 0, 1, 2: days_deployed [1, 1, 1, 0] median 1 < 3;
    # week_deployed [1, 1, 1, 0] median 1 >= 1 -> Weekly
    weekly = compute_dora([_ok(1), _ok(8), _ok(15)], [], four_weeks).deployment_frequency
    assert (weekly.bucket, weekly.level) == ("Weekly", "high")
    # deployments in weeks 0 and 1 only: week_deployed [1, 1, 0, 0] median 0.5 < 1;
    # all four weeks start in January: monthly_deploys = 2 for each week, median 2 >= 1 -> Monthly
    monthly = compute_dora([_ok(1), _ok(8)], [], four_weeks).deployment_frequency
    assert (monthly.bucket, monthly.level) == ("Monthly", "medium")
    # 12 weeks (Jan 7 .. Mar 30); weeks starting Jan 7, 14, 21, 28 | Feb 4, 11, 18, 25 | Mar 3, 10, 17, 24
    twelve_weeks = observe(since=SUN, until=SUN + 84 * D, service_start=SUN)
    # one deployment in week 0 only: monthly_deploys [1, 1, 1, 1, 0 x 8], median 0 -> Yearly
    yearly = compute_dora([_ok(2)], [], twelve_weeks).deployment_frequency
    assert (yearly.bucket, yearly.level) == ("Yearly", "low")
    # one in January and one in February: monthly_deploys [1 x 4, 1 x 4, 0 x 4], median 1 -> Monthly
    twice = compute_dora([_ok(2), _ok(30)], [], twelve_weeks).deployment_frequency
    assert twice.bucket == "Monthly"
    assert twice.value == pytest.approx(2 / 84)


def test_frequency_counts_partial_weeks_as_fourkeys_does() -> None:
    # Wednesday Jan 10 to Saturday Jan 20 (11 days): weeks of Jan 7 (Wed-Sat, 4 days) and Jan 14 (7 days)
    days = [date(2024, 1, d) for d in range(10, 21)]
    # deployed Wed, Thu, Fri of the first week and nothing in the second: days_deployed [3, 0]
    # median 1.5 < 3; week_deployed [1, 0] median 0.5 < 1; monthly [1, 1] median 1 -> Monthly
    assert frequency_bucket(days, {date(2024, 1, 10), date(2024, 1, 11), date(2024, 1, 12)}) == "Monthly"
    assert frequency_bucket([], set()) is None


def test_window_days_are_utc_days_the_period_touches() -> None:
    window = observe(since=SUN + 6 * H, until=SUN + 2 * D, service_start=0)
    # 06:00 on day 0 to exactly midnight ending day 1: days 0 and 1, not day 2
    assert window_days(window) == [date(2024, 1, 7), date(2024, 1, 8)]
    later = observe(since=SUN + 6 * H, until=SUN + 2 * D + 1, service_start=0)
    assert len(window_days(later)) == 3


def test_lead_time_is_the_median_from_commit_to_deployment() -> None:
    window = observe(since=SUN, until=SUN + 28 * D, service_start=SUN)
    deployments = [
        _ok(1, commit_at=_at(1) - 0.5 * H),  # 30 min
        _ok(2, commit_at=_at(2) - 2 * H),  # 2 h
        _ok(3, commit_at=_at(3) - 5 * H),  # 5 h
        _ok(4, commit_at=_at(4) - 30),  # 30 s: under a whole minute, left out (fourkeys)
        _ok(5),  # no commit time: left out
        Deployment(at=_at(6), status="failed", commit_at=_at(6) - 10 * D),  # not successful: left out
    ]
    key = compute_dora(deployments, [], window).lead_time
    # median of [0.5, 2, 5] h = 2 h < 24 h -> "One day", elite
    assert key.value == pytest.approx(2 * H)
    assert (key.samples, key.bucket, key.level) == (3, "One day", "elite")
    # an even count: median of [2 d, 4 d] = 3 d -> < 168 h -> "One week", high
    two = compute_dora([_ok(10, commit_at=_at(8)), _ok(12, commit_at=_at(8))], [], window).lead_time
    assert two.value == pytest.approx(3 * D)
    assert (two.bucket, two.level) == ("One week", "high")
    assert compute_dora([], [], window).lead_time.value is None


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [
        (24 * H - 1, "One day"),
        (24 * H, "One week"),  # fourkeys: `< 24 * 60` minutes is one day, so 24 h exactly is not
        (10 * D, "One month"),  # 240 h < 730 h
        (40 * D, "Six months"),  # 960 h >= 730 h, < 4380 h
        (200 * D, "One year"),  # 4800 h >= 4380 h
    ],
)
def test_duration_buckets(seconds: float, bucket: str) -> None:
    assert duration_bucket(seconds) == bucket


def test_change_failure_rate() -> None:
    window = observe(since=SUN, until=SUN + 28 * D, service_start=SUN)
    deployments = [
        _ok(1, id=1),
        _ok(2, id=2),
        _ok(3, id=3),
        _ok(4, id=4, change_failure=True),  # flagged by the rollout (canary judged bad later)
        _ok(5, id=5),  # an incident names it (below)
        _ok(6, id=6),
        Deployment(at=_at(7), status="failed", id=7),
        Deployment(at=_at(8), status="rolled_back", id=8),
        Deployment(at=_at(9), status="aborted", id=9),  # withdrawn, no failure: not counted
        Deployment(at=_at(10), status="aborted", id=10),  # an incident names it: counted, failed
        _ok(40, id=11),  # outside the window
        Deployment(at=_at(11), status="rejected", id=12),  # a shadow/experiment loser: not counted
    ]
    incidents = [
        Incident(_at(5, 13), _at(5, 14), "down", deployment_id=5),
        Incident(_at(10), None, "slo", 10),
    ]
    key = compute_dora(deployments, incidents, window).change_failure_rate
    # counted: 1-8 and 10 = 9; failed: 4, 5, 7, 8, 10 = 5; 5 / 9 = 0.556 -> "46-60%", low
    assert (key.detail["deployments"], key.detail["failed_deployments"]) == (9, 5)
    assert key.value == pytest.approx(5 / 9)
    assert (key.bucket, key.level) == ("46-60%", "low")
    # 1 failed of 10 -> 10 % -> "0-15%", elite
    ten = [_ok(d) for d in range(9)] + [Deployment(at=_at(9), status="rolled_back")]
    low = compute_dora(ten, [], window).change_failure_rate
    assert low.value == pytest.approx(0.1) and (low.bucket, low.level) == ("0-15%", "elite")
    assert compute_dora([], [], window).change_failure_rate.value is None
    # a rejected candidate that an incident names did fail production: counted, failed
    named = compute_dora(
        [_ok(1, id=1), Deployment(at=_at(2), status="rejected", id=2)],
        [Incident(_at(2), _at(2, 13), "down", deployment_id=2)],
        window,
    ).change_failure_rate
    assert (named.detail["deployments"], named.detail["failed_deployments"]) == (2, 1)


@pytest.mark.parametrize(
    ("rate", "bucket"),
    [
        (0.0, "0-15%"),
        (3 / 20, "0-15%"),
        (0.2, "16-45%"),
        (9 / 20, "16-45%"),
        (23 / 50, "46-60%"),
        (1.0, "46-60%"),
    ],
)
def test_failure_rate_buckets(rate: float, bucket: str) -> None:
    # fourkeys: rate <= .15 -> "0-15%"; < .46 -> "16-45%"; else "46-60%"
    assert failure_rate_bucket(rate) == bucket


def test_time_to_restore_is_the_median_incident_duration() -> None:
    window = observe(since=SUN, until=SUN + 28 * D, service_start=SUN)
    incidents = [
        Incident(_at(1), _at(1) + 20 * 60, "down"),  # 20 min
        Incident(_at(2), _at(2) + 40 * 60, "change_failure"),  # 40 min
        Incident(_at(3), _at(3) + 3 * H, "slo"),  # 3 h
        Incident(_at(4), None, "down"),  # still open: fourkeys leaves it out
        Incident(SUN - D, SUN + D, "down"),  # opened before the window: left out
    ]
    key = compute_dora([], incidents, window).time_to_restore
    # median of [20, 40, 180] min = 40 min: bucket "One day"; under an hour -> elite
    assert key.value == pytest.approx(40 * 60)
    assert (key.samples, key.detail["unresolved"]) == (3, 1)
    assert (key.bucket, key.level) == ("One day", "elite")
    # [2 h, 4 h] -> 3 h: "One day", high
    hours = [Incident(_at(1), _at(1) + 2 * H, "down"), Incident(_at(2), _at(2) + 4 * H, "down")]
    three = compute_dora([], hours, window).time_to_restore
    assert three.value == pytest.approx(3 * H) and (three.bucket, three.level) == ("One day", "high")
    assert compute_dora([], [], window).time_to_restore.level is None


@pytest.mark.parametrize(
    ("seconds", "level"),
    [(59 * 60, "elite"), (H, "high"), (23 * H, "high"), (2 * D, "medium"), (10 * D, "low"), (60 * D, "low")],
)
def test_restore_levels(seconds: float, level: str) -> None:
    assert restore_level(seconds) == level


def test_empty_window_has_no_figures() -> None:
    window = observe(since=SUN, until=SUN + 28 * D, service_start=None)
    dora = compute_dora([_ok(1, commit_at=_at(0))], [Incident(_at(1), _at(2), "down")], window)
    for key in dora.keys:
        assert (key.value, key.bucket, key.level, key.samples) == (None, None, None, 0)
    data = dora.to_json()
    assert set(data) == {
        "window",
        "deployment_frequency",
        "lead_time",
        "change_failure_rate",
        "time_to_restore",
    }
    assert data["lead_time"] == {
        "value": None,
        "unit": "seconds",
        "samples": 0,
        "bucket": None,
        "level": None,
        "measured_level": None,
        "measured_band": None,
    }


def test_the_figure_is_read_in_doras_published_levels_and_fourkeys_bucket_is_kept() -> None:
    # The demo: 1064 successful deployments a day over a few minutes of one afternoon. fourkeys'
    # bucket counts days and weeks with a deployment: one day of one week -> "Weekly", high,
    # beside a figure that is plainly on demand. The measured level reads the figure itself.
    window = observe(since=SUN + 14 * H, until=SUN + 14 * H + 300, service_start=SUN + 14 * H)
    deployments = [Deployment(SUN + 14 * H + 60 + n * 0.05, "succeeded") for n in range(3694)]
    key = compute_dora(deployments, [], window).deployment_frequency
    assert (key.bucket, key.level) == ("Weekly", "high")  # fourkeys' exact computation, kept
    assert key.value == pytest.approx(3694 / (300 / D))
    data = key.to_json()
    assert (data["bucket"], data["level"]) == ("Weekly", "high")
    assert (data["measured_level"], data["measured_band"]) == ("elite", "on demand, several a day")


@pytest.mark.parametrize(
    ("name", "value", "level", "band"),
    [
        ("deployment_frequency", 2.0, "elite", "on demand, several a day"),
        ("deployment_frequency", 1.0, "high", "daily to weekly"),
        ("deployment_frequency", 1 / 7, "high", "daily to weekly"),
        ("deployment_frequency", 1 / 20, "medium", "weekly to monthly"),
        ("deployment_frequency", 1 / 60, "low", "monthly or less often"),
        ("deployment_frequency", 0.0, "low", "monthly or less often"),
        ("lead_time", 5 * H, "elite", "< 1 day"),
        ("lead_time", 3 * D, "high", "< 1 week"),
        ("lead_time", 10 * D, "medium", "< 1 month"),
        ("lead_time", 40 * D, "low", "1 month or more"),
        ("time_to_restore", 2.0, "elite", "< 1 hour"),
        ("time_to_restore", 2 * H, "high", "< 1 day"),
        ("time_to_restore", 3 * D, "medium", "< 1 week"),
        ("time_to_restore", 8 * D, "low", "1 week or more"),
        ("change_failure_rate", 0.15, "elite", "0-15%"),
        ("change_failure_rate", 1 / 3, "medium", "16-45%"),
        ("change_failure_rate", 0.5, "low", "46% or more"),
    ],
)
def test_measured_levels(name: str, value: float, level: str, band: str) -> None:
    assert measured_level(name, value) == (level, band)
    assert measured_level(name, None) is None
