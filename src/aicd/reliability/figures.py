"""MTTF, MTTR, MTBF, availability and error budget from recorded incidents.

Definitions (docs/reliability.md has the reasons):

- observed period: `[max(since, first deployment), until)` (`window.observe`);
- downtime: the length of the union of the `down`, `slo` and `declared`
  incidents, clipped to the period (an incident still open runs to `until`);
- failures: failure episodes that begin in the period; incidents of any kind
  that overlap (or touch) form one episode, so one outage seen by two
  detectors is one failure;
- restore time: the summed length of the failure episodes (each up to `until`): how long
  it took to restore service after each failure. A change failure's episode lasts until its
  rollback finished, though it is no downtime;
- uptime = period - downtime; MTTF = uptime / failures (no failure: the
  uptime, flagged as a lower bound); MTTR = restore time / failures (the mean time to restore
  service per failure, the same episodes DORA's time to restore takes the median of);
  MTBF = MTTF + MTTR; availability = uptime / period (real downtime only);
- error budget for an SLO target T: (1 - T) x period; left = budget - downtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aicd.errors import ConfigError
from aicd.reliability.inputs import DOWNTIME_KINDS, Incident
from aicd.reliability.window import Interval, Window, clip, merge, union_length

DEFAULT_SLO = 0.995


@dataclass(frozen=True)
class ErrorBudget:
    """How much downtime the SLO target allows over the period, and what is left."""

    target: float  # e.g. 0.995
    budget_s: float  # (1 - target) * period
    spent_s: float  # downtime
    left_s: float  # budget - spent; negative when the SLO is missed
    left_fraction: float | None  # left / budget; None for an empty period

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "budget_s": self.budget_s,
            "spent_s": self.spent_s,
            "left_s": self.left_s,
            "left_fraction": self.left_fraction,
        }


@dataclass(frozen=True)
class ReliabilityFigures:
    """Reliability of one environment over one window. Durations in seconds."""

    window: Window
    uptime_s: float
    downtime_s: float
    failures: int  # failure episodes that began in the period
    restore_s: float  # the summed length of those episodes: the time to restore service after them
    incidents: int  # incidents opened in the period (any kind)
    open_incidents: int  # incidents still open at the window's end
    mttf_s: float | None  # None only for an empty period
    mttf_lower_bound: bool  # no failure: MTTF is at least the uptime
    mttr_s: float | None  # None when there was no failure
    mtbf_s: float | None
    mtbf_lower_bound: bool
    availability: float | None  # None for an empty period
    error_budget: ErrorBudget

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window.to_json(),
            "uptime_s": self.uptime_s,
            "downtime_s": self.downtime_s,
            "failures": self.failures,
            "restore_s": self.restore_s,
            "incidents": self.incidents,
            "open_incidents": self.open_incidents,
            "mttf_s": self.mttf_s,
            "mttf_lower_bound": self.mttf_lower_bound,
            "mttr_s": self.mttr_s,
            "mtbf_s": self.mtbf_s,
            "mtbf_lower_bound": self.mtbf_lower_bound,
            "availability": self.availability,
            "error_budget": self.error_budget.to_json(),
        }


def check_slo(target: float) -> float:
    """`target` if it is a usable availability objective (0 < T < 1), else ConfigError."""
    if not 0 < target < 1:
        raise ConfigError(f"the SLO target must be a fraction between 0 and 1, such as 0.995; got {target}")
    return target


def downtime_intervals(incidents: Iterable[Incident], window: Window) -> list[Interval]:
    """The disjoint stretches of downtime inside the window."""
    clipped = (
        clip((incident.opened_at, incident.end(window.until)), window)
        for incident in incidents
        if incident.kind in DOWNTIME_KINDS
    )
    return merge(interval for interval in clipped if interval is not None)


def failure_episodes(incidents: Iterable[Incident], window: Window) -> list[Interval]:
    """Episodes (overlapping or touching incidents of any kind, merged) that begin in the window."""
    spans = [
        (incident.opened_at, max(incident.opened_at, incident.end(window.until)))
        for incident in incidents
        if incident.opened_at < window.until
    ]
    return [episode for episode in merge(spans) if window.contains(episode[0])]


def compute_reliability(
    incidents: Sequence[Incident], window: Window, *, slo_target: float = DEFAULT_SLO
) -> ReliabilityFigures:
    """The reliability figures of the incidents recorded for one environment, over `window`."""
    check_slo(slo_target)
    period = max(window.period_s, 0.0)
    downtime = union_length(downtime_intervals(incidents, window))
    uptime = period - downtime
    episodes = failure_episodes(incidents, window)
    failures = len(episodes)
    restore = sum(end - start for start, end in episodes)
    opened = sum(1 for incident in incidents if window.contains(incident.opened_at))
    still_open = sum(
        1
        for incident in incidents
        if incident.opened_at < window.until
        and (incident.resolved_at is None or incident.resolved_at > window.until)
    )
    if period <= 0:
        mttf: float | None = None
        mttr: float | None = None
        mtbf: float | None = None
        lower_bound = False
    elif failures == 0:
        mttf, mttr, mtbf, lower_bound = uptime, None, uptime, True
    else:
        mttf, mttr = uptime / failures, restore / failures
        mtbf, lower_bound = mttf + mttr, False
    budget = (1 - slo_target) * period
    left = budget - downtime
    return ReliabilityFigures(
        window=window,
        uptime_s=uptime,
        downtime_s=downtime,
        failures=failures,
        restore_s=restore,
        incidents=opened,
        open_incidents=still_open,
        mttf_s=mttf,
        mttf_lower_bound=lower_bound,
        mttr_s=mttr,
        mtbf_s=mtbf,
        mtbf_lower_bound=lower_bound,
        availability=uptime / period if period > 0 else None,
        error_budget=ErrorBudget(
            target=slo_target,
            budget_s=budget,
            spent_s=downtime,
            left_s=left,
            left_fraction=left / budget if budget > 0 else None,
        ),
    )
