"""The figures in Prometheus' text format (prometheus-client), with pipeline and job counts.

Every sample is a number from the same `MetricsReport` that `aicd metrics --json`
prints; a figure that is None (nothing to measure) has no sample. Names and
labels are listed in docs/reliability.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from aicd.reliability.dora import LEVELS
from aicd.reliability.report import EnvironmentReport, MetricsReport
from aicd.reliability.run_stats import RunStat

CONTENT_TYPE = CONTENT_TYPE_LATEST
_ENV_LABELS = ["project", "environment"]

# (metric name, help, how to read it from one environment's report)
_Getter = Callable[[EnvironmentReport], float | None]
_RELIABILITY: tuple[tuple[str, str, _Getter], ...] = (
    (
        "aicd_reliability_observed_seconds",
        "Observed part of the window",
        lambda r: r.reliability.window.period_s,
    ),
    ("aicd_reliability_uptime_seconds", "Uptime in the window", lambda r: r.reliability.uptime_s),
    ("aicd_reliability_downtime_seconds", "Downtime in the window", lambda r: r.reliability.downtime_s),
    ("aicd_reliability_failures", "Failure episodes begun in the window", lambda r: r.reliability.failures),
    ("aicd_reliability_incidents", "Incidents opened in the window", lambda r: r.reliability.incidents),
    (
        "aicd_reliability_open_incidents",
        "Incidents open at the window's end",
        lambda r: r.reliability.open_incidents,
    ),
    (
        "aicd_reliability_mttf_seconds",
        "Mean time to failure: uptime / failures",
        lambda r: r.reliability.mttf_s,
    ),
    (
        "aicd_reliability_mttf_lower_bound",
        "1 when there was no failure: MTTF is at least the value",
        lambda r: float(r.reliability.mttf_lower_bound),
    ),
    (
        "aicd_reliability_mttr_seconds",
        "Mean time to restore service per failure (change failures until their rollback finished)",
        lambda r: r.reliability.mttr_s,
    ),
    (
        "aicd_reliability_mtbf_seconds",
        "Mean time between failures: MTTF + MTTR",
        lambda r: r.reliability.mtbf_s,
    ),
    ("aicd_reliability_availability_ratio", "Uptime / observed time", lambda r: r.reliability.availability),
    (
        "aicd_reliability_slo_target_ratio",
        "Availability objective",
        lambda r: r.reliability.error_budget.target,
    ),
    (
        "aicd_reliability_error_budget_seconds",
        "Downtime the SLO allows over the window",
        lambda r: r.reliability.error_budget.budget_s,
    ),
    (
        "aicd_reliability_error_budget_left_seconds",
        "Error budget minus downtime (negative: SLO missed)",
        lambda r: r.reliability.error_budget.left_s,
    ),
    (
        "aicd_reliability_error_budget_left_ratio",
        "Error budget left / error budget",
        lambda r: r.reliability.error_budget.left_fraction,
    ),
    (
        "aicd_dora_deployment_frequency_per_day",
        "Successful deployments per day",
        lambda r: r.dora.deployment_frequency.value,
    ),
    (
        "aicd_dora_deployments",
        "Successful deployments in the window",
        lambda r: r.dora.deployment_frequency.samples,
    ),
    ("aicd_dora_lead_time_seconds", "Median commit-to-deployment time", lambda r: r.dora.lead_time.value),
    (
        "aicd_dora_change_failure_rate_ratio",
        "Deployments that caused a failure / deployments",
        lambda r: r.dora.change_failure_rate.value,
    ),
    ("aicd_dora_time_to_restore_seconds", "Median incident duration", lambda r: r.dora.time_to_restore.value),
)


@dataclass(frozen=True)
class MetricsPage:
    """What one scrape shows: the report, the run counts, and project names by scope and id."""

    report: MetricsReport
    pipelines: list[RunStat] = field(default_factory=list)
    jobs: list[RunStat] = field(default_factory=list)
    project_by_scope: Mapping[str, str] = field(default_factory=dict)  # environment scope -> project name
    project_by_id: Mapping[int, str] = field(default_factory=dict)

    def project_of_scope(self, scope: str) -> str:
        return self.project_by_scope.get(scope, scope)


class _PageCollector(Collector):
    def __init__(self, page: MetricsPage) -> None:
        self.page = page

    def collect(self) -> Iterator[Metric]:
        yield from reliability_families(self.page)
        yield from run_families("pipeline", self.page.pipelines, self.page.project_by_id)
        yield from run_families("job", self.page.jobs, self.page.project_by_id)


def reliability_families(page: MetricsPage) -> Iterator[Metric]:
    reports = page.report.environments
    for name, text, getter in _RELIABILITY:
        family = GaugeMetricFamily(name, text, labels=_ENV_LABELS)
        for report in reports:
            value = getter(report)
            if value is not None:
                family.add_metric([page.project_of_scope(report.scope), report.environment], float(value))
        yield family
    level = GaugeMetricFamily(
        "aicd_dora_level",
        "1 for the DORA level of each key (fourkeys buckets), 0 for the other levels",
        labels=[*_ENV_LABELS, "key", "bucket", "level"],
    )
    for report in reports:
        for key in report.dora.keys:
            if key.level is None:
                continue
            for candidate in LEVELS:
                labels = [page.project_of_scope(report.scope), report.environment, key.name, key.bucket or ""]
                level.add_metric([*labels, candidate], 1.0 if candidate == key.level else 0.0)
    yield level


def run_families(kind: str, stats: Iterable[RunStat], project_by_id: Mapping[int, str]) -> Iterator[Metric]:
    """`aicd_<kind>s{project,status}` (how many are in each status now) and
    `aicd_<kind>_duration_seconds{project,status}` (count and sum of the timed ones)."""
    stats = list(stats)
    count = GaugeMetricFamily(
        f"aicd_{kind}s", f"{kind.capitalize()}s by status", labels=["project", "status"]
    )
    duration = SummaryMetricFamily(
        f"aicd_{kind}_duration_seconds",
        f"Duration of the {kind}s that started and ended, by status",
        labels=["project", "status"],
    )
    for stat in stats:
        labels = [project_by_id.get(stat.project_id, str(stat.project_id)), stat.status]
        count.add_metric(labels, float(stat.count))
        if stat.timed:
            duration.add_metric(labels, count_value=stat.timed, sum_value=stat.duration_sum_s)
    yield count
    yield duration


def render(page: MetricsPage) -> bytes:
    """The page in Prometheus' text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_PageCollector(page))
    return generate_latest(registry)
