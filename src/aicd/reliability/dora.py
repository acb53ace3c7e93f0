"""DORA's four keys with the definitions and buckets of Google's fourkeys project.

Followed: github.com/dora-team/fourkeys, METRICS.md and the dashboard's
queries (dashboard/fourkeys_dashboard.json): "Deployment Frequency",
"Lead Time to Change Bucket", "Median Time to Restore Services" and
"Change Failure Rate". docs/reliability.md lists each query and where this
code departs from it (seconds instead of truncated minutes and hours, the
observed window instead of "the last three months", levels).

Each key has two readings: fourkeys' ``bucket`` (and its ``level``), computed exactly as the
dashboard does, and the ``measured_level`` of the figure itself in the performance levels of the
2019 State of DevOps report (:func:`measured_level`), which is what `aicd metrics` shows: over a
short window fourkeys' day-and-week deployment frequency bucket can contradict the figure
(1064 deployments a day in one afternoon is "Weekly" there).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aicd.reliability.inputs import FAILED_STATUSES, SUCCEEDED, Deployment, Incident
from aicd.reliability.window import Window

ELITE, HIGH, MEDIUM, LOW = "elite", "high", "medium", "low"
LEVELS = (ELITE, HIGH, MEDIUM, LOW)

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 168 * HOUR
MONTH = 730 * HOUR  # fourkeys' month: 730 hours
SIX_MONTHS = 6 * MONTH

# fourkeys' duration buckets (lead time in minutes, time to restore in hours;
# here in seconds): upper bound (exclusive) -> label.
_DURATION_BUCKETS = ((DAY, "One day"), (WEEK, "One week"), (MONTH, "One month"), (SIX_MONTHS, "Six months"))
_LONGEST = "One year"

_FREQUENCY_LEVEL = {"Daily": ELITE, "Weekly": HIGH, "Monthly": MEDIUM, "Yearly": LOW}
_LEAD_TIME_LEVEL = {"One day": ELITE, "One week": HIGH, "One month": MEDIUM, "Six months": LOW, _LONGEST: LOW}
_RESTORE_LEVEL = {"One day": HIGH, "One week": MEDIUM, "One month": LOW, "Six months": LOW, _LONGEST: LOW}
_FAILURE_RATE_LEVEL = {"0-15%": ELITE, "16-45%": MEDIUM, "46-60%": LOW}

# The 2019 State of DevOps report's performance levels, read on the measured figure. Deployment
# frequency: elite "on-demand (multiple deploys per day)", high between once a day and once a
# week, medium between once a week and once a month, low less often. Lead time: under a day,
# a week, a month. Time to restore: under an hour, a day; the report's medium ("less than one
# day", as high) reads "less than a week" here. Change failure rate: the report gives elite,
# high and medium performers the same 0-15 % and low ones 46-60 %; 16-45 %, which it leaves out,
# is medium here, as in fourkeys.
_DURATION_LEVELS = {
    "lead_time": ((DAY, ELITE, "< 1 day"), (WEEK, HIGH, "< 1 week"), (MONTH, MEDIUM, "< 1 month")),
    "time_to_restore": ((HOUR, ELITE, "< 1 hour"), (DAY, HIGH, "< 1 day"), (WEEK, MEDIUM, "< 1 week")),
}
_DURATION_LOW = {"lead_time": "1 month or more", "time_to_restore": "1 week or more"}


def measured_level(name: str, value: float | None) -> tuple[str, str] | None:
    """(level, band) of a key's measured figure in the 2019 report's performance levels."""
    if value is None:
        return None
    if name == "deployment_frequency":  # deployments per day
        if value > 1:
            return ELITE, "on demand, several a day"
        if value >= 1 / 7:
            return HIGH, "daily to weekly"
        return (MEDIUM, "weekly to monthly") if value >= DAY / MONTH else (LOW, "monthly or less often")
    if name == "change_failure_rate":
        if value <= 0.15:
            return ELITE, "0-15%"
        return (MEDIUM, "16-45%") if value < 0.46 else (LOW, "46% or more")
    for bound, level, band in _DURATION_LEVELS[name]:
        if value < bound:
            return level, band
    return LOW, _DURATION_LOW[name]


# Lead times under a whole minute are left out, as fourkeys does
# (`TIMESTAMP_DIFF(..., MINUTE) > 0`: "ignore automated pushes").
MIN_LEAD_TIME_S = 60.0


@dataclass(frozen=True)
class DoraKey:
    """One of the four keys: its value, how many samples it rests on, its bucket and level.

    `value` is None (and bucket and level too) when there is nothing to measure.
    """

    name: str  # deployment_frequency | lead_time | change_failure_rate | time_to_restore
    value: float | None
    unit: str  # per_day | seconds | ratio
    samples: int
    bucket: str | None
    level: str | None
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        measured = measured_level(self.name, self.value)
        return {
            "value": self.value,
            "unit": self.unit,
            "samples": self.samples,
            "bucket": self.bucket,  # fourkeys' bucket, exactly as its dashboard computes it
            "level": self.level,  # fourkeys' bucket's level
            "measured_level": measured[0] if measured else None,  # the figure's level (2019 report)
            "measured_band": measured[1] if measured else None,
            **self.detail,
        }


@dataclass(frozen=True)
class DoraFigures:
    window: Window
    deployment_frequency: DoraKey
    lead_time: DoraKey
    change_failure_rate: DoraKey
    time_to_restore: DoraKey

    @property
    def keys(self) -> tuple[DoraKey, DoraKey, DoraKey, DoraKey]:
        return (self.deployment_frequency, self.lead_time, self.change_failure_rate, self.time_to_restore)

    def to_json(self) -> dict[str, Any]:
        return {"window": self.window.to_json(), **{key.name: key.to_json() for key in self.keys}}


def duration_bucket(seconds: float) -> str:
    """fourkeys' bucket of a lead time or a time to restore."""
    for bound, label in _DURATION_BUCKETS:
        if seconds < bound:
            return label
    return _LONGEST


def failure_rate_bucket(rate: float) -> str:
    """fourkeys' bucket of a change failure rate (0..1)."""
    if rate <= 0.15:
        return "0-15%"
    return "16-45%" if rate < 0.46 else "46-60%"


def restore_level(seconds: float) -> str:
    """Level of a median time to restore: under an hour is elite (the 2019 DORA report)."""
    return ELITE if seconds < HOUR else _RESTORE_LEVEL[duration_bucket(seconds)]


def _utc_day(at: float) -> date:
    return datetime.fromtimestamp(at, UTC).date()


def window_days(window: Window) -> list[date]:
    """The UTC calendar days the observed period touches (none when it is empty)."""
    if window.empty:
        return []
    first, end = _utc_day(window.start), datetime.fromtimestamp(window.until, UTC)
    last = end.date()
    if end.time() == datetime.min.time():
        last -= timedelta(days=1)  # `until` is exactly midnight: that day is not observed
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _week(day: date) -> date:
    """The Sunday that starts the week of `day` (BigQuery's TIMESTAMP_TRUNC(..., WEEK))."""
    return day - timedelta(days=(day.weekday() + 1) % 7)


def frequency_bucket(days: Sequence[date], deployed: set[date]) -> str | None:
    """fourkeys' deployment frequency bucket over `days`, given the days with a deployment.

    Per week: was there a deployment, and on how many days. Daily: the median
    number of days with a deployment per week is at least 3. Weekly: the median
    week has one. Monthly: per week, the number of weeks with a deployment in
    that week's month; its median is at least 1. Else Yearly.
    """
    if not days:
        return None
    weeks: dict[date, set[date]] = {}
    for day in days:
        weeks.setdefault(_week(day), set())
        if day in deployed:
            weeks[_week(day)].add(day)
    days_deployed = [len(found) for found in weeks.values()]
    week_deployed = [1 if found else 0 for found in weeks.values()]
    per_month: dict[tuple[int, int], int] = {}
    for week, flag in zip(weeks, week_deployed, strict=True):
        per_month[(week.year, week.month)] = per_month.get((week.year, week.month), 0) + flag
    monthly = [per_month[(week.year, week.month)] for week in weeks]
    if statistics.median(days_deployed) >= 3:
        return "Daily"
    if statistics.median(week_deployed) >= 1:
        return "Weekly"
    if statistics.median(monthly) >= 1:
        return "Monthly"
    return "Yearly"


def deployment_frequency(deployments: Sequence[Deployment], window: Window) -> DoraKey:
    succeeded = [d for d in deployments if d.status == SUCCEEDED and window.contains(d.at)]
    days = window_days(window)
    bucket = frequency_bucket(days, {_utc_day(d.at) for d in succeeded})
    per_day = len(succeeded) / (window.period_s / DAY) if not window.empty else None
    return DoraKey(
        name="deployment_frequency",
        value=per_day,
        unit="per_day",
        samples=len(succeeded),
        bucket=bucket,
        level=_FREQUENCY_LEVEL[bucket] if bucket else None,
        detail={
            "deployments": len(succeeded),
            "per_week": per_day * 7 if per_day is not None else None,
            "days": len(days),
        },
    )


def lead_time(deployments: Sequence[Deployment], window: Window) -> DoraKey:
    samples = [
        d.at - d.commit_at
        for d in deployments
        if d.status == SUCCEEDED
        and window.contains(d.at)
        and d.commit_at is not None
        and d.at - d.commit_at >= MIN_LEAD_TIME_S
    ]
    median = statistics.median(samples) if samples else None
    bucket = duration_bucket(median) if median is not None else None
    return DoraKey(
        name="lead_time",
        value=median,
        unit="seconds",
        samples=len(samples),
        bucket=bucket,
        level=_LEAD_TIME_LEVEL[bucket] if bucket else None,
        detail={},
    )


def caused_failure(deployment: Deployment, linked: set[int]) -> bool:
    """Failed, rolled back, flagged as a change failure, or named by an incident."""
    return (
        deployment.status in FAILED_STATUSES
        or deployment.change_failure
        or (deployment.id is not None and deployment.id in linked)
    )


def change_failure_rate(
    deployments: Sequence[Deployment], incidents: Sequence[Incident], window: Window
) -> DoraKey:
    """Deployments that caused a failure / deployments, over the deployments that finished in the window.

    Counted: succeeded, failed and rolled-back deployments, and any other
    (aborted) one that caused a failure; an aborted deployment that caused
    none was withdrawn before it was judged and counts for neither side.
    """
    linked = {i.deployment_id for i in incidents if i.deployment_id is not None}
    counted = [
        d
        for d in deployments
        if window.contains(d.at)
        and (d.status == SUCCEEDED or d.status in FAILED_STATUSES or caused_failure(d, linked))
    ]
    failed = sum(1 for d in counted if caused_failure(d, linked))
    rate = failed / len(counted) if counted else None
    bucket = failure_rate_bucket(rate) if rate is not None else None
    return DoraKey(
        name="change_failure_rate",
        value=rate,
        unit="ratio",
        samples=len(counted),
        bucket=bucket,
        level=_FAILURE_RATE_LEVEL[bucket] if bucket else None,
        detail={"failed_deployments": failed, "deployments": len(counted)},
    )


def time_to_restore(incidents: Sequence[Incident], window: Window) -> DoraKey:
    """Median duration of the incidents opened in the window and resolved (fourkeys skips open ones)."""
    opened = [i for i in incidents if window.contains(i.opened_at)]
    samples = [i.resolved_at - i.opened_at for i in opened if i.resolved_at is not None]
    median = statistics.median(samples) if samples else None
    return DoraKey(
        name="time_to_restore",
        value=median,
        unit="seconds",
        samples=len(samples),
        bucket=duration_bucket(median) if median is not None else None,
        level=restore_level(median) if median is not None else None,
        detail={"unresolved": len(opened) - len(samples)},
    )


def compute_dora(
    deployments: Sequence[Deployment], incidents: Sequence[Incident], window: Window
) -> DoraFigures:
    """The four keys of one environment over `window`."""
    return DoraFigures(
        window=window,
        deployment_frequency=deployment_frequency(deployments, window),
        lead_time=lead_time(deployments, window),
        change_failure_rate=change_failure_rate(deployments, incidents, window),
        time_to_restore=time_to_restore(incidents, window),
    )
