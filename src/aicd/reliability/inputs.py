"""What the figures are computed from: recorded deployments and incidents, nothing typed in.

Plain frozen values (times are Unix seconds, as `time.time()`), so the
arithmetic knows nothing of the store; `report.py` builds them from it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Incident kinds whose time counts as downtime (the service was unavailable or
# out of its SLO). A `change_failure` incident is a failure but not downtime:
# see docs/reliability.md, "Downtime".
DOWNTIME_KINDS = frozenset({"down", "slo", "declared"})
INCIDENT_KINDS = frozenset({*DOWNTIME_KINDS, "change_failure"})

# Deployment statuses that ended with the change serving (or having served) production.
SUCCEEDED = "succeeded"
FAILED_STATUSES = frozenset({"failed", "rolled_back"})


@dataclass(frozen=True)
class Incident:
    """One incident: open from `opened_at` until `resolved_at` (None: still open)."""

    opened_at: float
    resolved_at: float | None
    kind: str  # down | slo | change_failure | declared
    deployment_id: int | None = None  # the deployment that caused it, when known

    def end(self, until: float) -> float:
        """When it stopped counting: its resolution, or `until` if still open then."""
        return until if self.resolved_at is None else min(self.resolved_at, until)


@dataclass(frozen=True)
class Deployment:
    """One finished deployment of an environment."""

    at: float  # when it finished
    status: str  # succeeded | failed | rolled_back | aborted | ...
    commit_at: float | None = None  # commit time of the deployed change, for lead time
    change_failure: bool = False  # recorded as having caused a failure in production
    id: int | None = None  # links incidents (Incident.deployment_id) to it
