"""`aicd metrics`: reliability (MTTF, MTTR, MTBF, availability, error budget) and DORA's four keys.

Locally it reads the environments `aicd deploy` recorded (the same home and database as
`aicd run`); with --server it asks the server's /api/v1/reliability. Both give the same JSON
(aicd.reliability.report.MetricsReport), which --json prints and the tables are drawn from.
Locally, environments whose agent runs add their live model quality per revision (``live_quality``:
labels joined through ``POST /_aicd/feedback``, accuracy, MAE, RMSE; docs/feedback.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from aicd.cli.remote import remote_options
from aicd.cli.tables import echo_json, table
from aicd.errors import NotFoundError
from aicd.reliability.figures import DEFAULT_SLO
from aicd.reliability.humanize import format_duration, format_percent, format_rate
from aicd.reliability.report import DEFAULT_SINCE

Json = dict[str, Any]

RELIABILITY_MEANING = (
    "MTTR: mean time to restore service per failure (a change failure until its rollback finished); "
    "availability and downtime: only time down or outside the SLO; MTBF = MTTF + MTTR."
)
MEANINGS = (
    "Time to restore: median per incident (fourkeys). Levels: DORA's performance levels (2019 report) "
    "of each figure; --json also has fourkeys' buckets (docs/reliability.md)."
)


@click.command()
@click.option("--env", "env", default=None, metavar="NAME", help="Only this environment (default: all).")
@click.option(
    "--since",
    default=DEFAULT_SINCE,
    show_default=True,
    help="Window start: a duration back from --until (30d, 12h, 2w), a date (2024-05-01), or 'all'.",
)
@click.option("--until", default=None, help="Window end: Unix seconds or an ISO 8601 time (default: now).")
@click.option("--slo", type=float, default=DEFAULT_SLO, show_default=True, help="Availability objective.")
@click.option("--project", default=None, help="With --server: only this project's environments.")
@remote_options
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def metrics(
    env: str | None,
    since: str,
    until: str | None,
    slo: float,
    project: str | None,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Reliability and DORA figures per environment, from recorded deployments and incidents."""
    if server:
        data = _remote(server, token, env=env, since=since, until=until, slo=slo, project=project)
    else:
        if project is not None:
            raise click.UsageError("--project needs --server (locally there is one project: this one)")
        data = _local(env=env, since=since, until=until, slo=slo)
    if as_json:
        echo_json(data)
    else:
        _draw(data)


def _local(*, env: str | None, since: str, until: str | None, slo: float) -> Json:
    from aicd.deploy.client import check_env_name, locate
    from aicd.reliability.report import build_report, parse_since, parse_time, select_environments

    if env is not None:
        check_env_name(env)
    end = parse_time(until)
    start = parse_since(since, end)
    location = locate(Path.cwd())
    url = location.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        if env is not None:  # nothing recorded yet (and no database to create for it)
            raise NotFoundError(f"no environment {env!r}; deploy to it first with `aicd deploy --env {env}`")
        return {"since": start, "until": end, "slo_target": slo, "environments": []}
    from aicd.store.deployments import open_deploy_store

    with open_deploy_store(url) as store:
        environments = select_environments(store, environment=env, scope=location.scope)
        data = build_report(store, environments, since=start, until=end, slo_target=slo).to_json()
    for report in data.get("environments") or []:
        live = _live_quality(location, str(report.get("environment")))
        if live is not None:
            report["live_quality"] = live
    return data


def _live_quality(location: Any, name: str) -> Json | None:
    """Per-revision live quality from the environment's agent (None when it does not run)."""
    from aicd.deploy import client, control
    from aicd.errors import AicdError

    try:
        path = client.agent_socket(location, name)
        if not control.reachable(path):
            return None
        snap = control.request(path, {"op": "metrics"}, timeout=10)
    except (AicdError, OSError, ValueError):
        return None
    out: Json = {}
    for revision, counters in (snap.get("revisions") or {}).items():
        quality = dict(counters.get("quality") or {})
        quality.pop("abs_errors", None)
        out[revision] = {"requests": counters.get("requests", 0), **quality}
    return {"revisions": out, "feedback": snap.get("feedback") or {}}


def _remote(
    server: str,
    token: str | None,
    *,
    env: str | None,
    since: str,
    until: str | None,
    slo: float,
    project: str | None,
) -> Json:
    from aicd.cli.remote import Client

    params = {"env": env, "since": since, "until": until, "slo": slo, "project": project}
    with Client(server, token) as client:
        data = client.get("/reliability", params=params)
    assert isinstance(data, dict)
    return data


def _draw(data: Json) -> None:
    reports: list[Json] = data.get("environments") or []
    if not reports:
        click.echo("no environments yet: deploy to one with `aicd deploy --env NAME`")
        return
    since = "the first deployment" if data.get("since") is None else _utc(data["since"])
    click.echo(f"From {since} to {_utc(data['until'])}; SLO {format_percent(data['slo_target'], digits=3)}")
    click.echo()
    with_project = any(r.get("project") or r.get("scope") for r in reports)
    names = [
        ([r.get("project") or r.get("scope") or ""] if with_project else []) + [r["environment"]]
        for r in reports
    ]
    head = ["PROJECT"] if with_project else []
    table(
        [[*name, *_reliability_row(r["reliability"])] for name, r in zip(names, reports, strict=True)],
        [
            *head,
            "ENVIRONMENT",
            "OBSERVED",
            "AVAILABILITY",
            "DOWNTIME",
            "FAILURES",
            "MTTF",
            "MTTR",
            "MTBF",
            "BUDGET LEFT",
        ],
    )
    click.echo()
    click.echo(RELIABILITY_MEANING)
    click.echo()
    table(
        [[*name, *_dora_row(r["dora"])] for name, r in zip(names, reports, strict=True)],
        [*head, "ENVIRONMENT", "DEPLOYMENT FREQUENCY", "LEAD TIME", "CHANGE FAILURE RATE", "TIME TO RESTORE"],
    )
    live = [
        [
            *name,
            rev,
            str(q["requests"]),
            str(q["labels"]),
            _share(q.get("accuracy")),
            _num(q.get("mae")),
            _num(q.get("rmse")),
        ]
        for name, r in zip(names, reports, strict=True)
        for rev, q in ((r.get("live_quality") or {}).get("revisions") or {}).items()
    ]
    if live:
        click.echo()
        table(live, [*head, "ENVIRONMENT", "REVISION", "REQUESTS", "LABELS", "LIVE ACCURACY", "MAE", "RMSE"])
    if any(r["reliability"]["mttf_lower_bound"] for r in reports):
        click.echo("\n≥: no failure in the window, so MTTF and MTBF are at least the time observed.")
    click.echo(MEANINGS)


def _share(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1%}"


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4g}"


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _reliability_row(f: Json) -> list[str]:
    if not f["window"]["observed_s"]:
        return ["nothing observed", "-", "-", "-", "-", "-", "-", "-"]
    budget = f["error_budget"]
    left = format_duration(budget["left_s"])
    if budget["left_fraction"] is not None:
        left += f" ({format_percent(budget['left_fraction'], digits=0)})"
    return [
        format_duration(f["window"]["observed_s"]),
        format_percent(f["availability"], digits=3),
        format_duration(f["downtime_s"]),
        str(f["failures"]),
        format_duration(f["mttf_s"], lower_bound=f["mttf_lower_bound"]),
        format_duration(f["mttr_s"]),
        format_duration(f["mtbf_s"], lower_bound=f["mtbf_lower_bound"]),
        left,
    ]


def _dora_row(d: Json) -> list[str]:
    frequency, lead, failure, restore = (
        d["deployment_frequency"],
        d["lead_time"],
        d["change_failure_rate"],
        d["time_to_restore"],
    )
    return [
        _key(frequency, format_rate(frequency["value"])),
        _key(lead, format_duration(lead["value"])),
        _key(failure, _ratio(failure)),
        _key(restore, format_duration(restore["value"])),
    ]


def _ratio(key: Json) -> str:
    if key["value"] is None:
        return "-"
    return f"{format_percent(key['value'], digits=0)} ({key['failed_deployments']}/{key['deployments']})"


def _key(key: Json, value: str) -> str:
    """The measured figure first, then its level and the level's band: '5h 00m — elite (< 1 day)'."""
    if key.get("measured_level") is None:
        return "-"
    return f"{value} — {key['measured_level']} ({key['measured_band']})"
