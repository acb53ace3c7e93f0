"""`aicd incident list|declare|resolve`: the incidents of the environments, and people's say in them.

Locally they are the environments `aicd deploy` recorded here (AICD_HOME / AICD_DATABASE_URL,
else `.aicd/`; scope AICD_ENV_SCOPE); with --server URL --project P, a server project's
(/api/v1/projects/P/incidents). Both print the same JSON with --json.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from aicd.cli.remote import remote_options
from aicd.cli.tables import echo_json, table, when
from aicd.cli.terminal import clean_lines
from aicd.errors import ConfigError

Json = dict[str, Any]
_project = click.option("--project", default=None, help="With --server: the project the environment is of.")


@click.group()
def incident() -> None:
    """Incidents: outages the monitor saw, rollbacks, and ones people declare."""


@incident.command("list")
@click.option("--env", "env", default=None, metavar="NAME", help="Only this environment's.")
@click.option("--open", "only_open", is_flag=True, help="Only those not resolved yet.")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True, help="The newest N.")
@_project
@remote_options
@click.option("--json", "as_json", is_flag=True)
def list_(
    env: str | None,
    only_open: bool,
    limit: int,
    project: str | None,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Incidents, newest first: kind, when, how long, why, how it ended."""
    if server:
        params = {"environment": env, "open": "true" if only_open else None, "limit": limit}
        items = _remote(server, token, project, "GET", "", params=params)
    else:
        items = _local_list(env, only_open, limit)
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo("no open incidents" if only_open else "no incidents recorded")
        return
    rows = [
        (f"#{i['id']}", i["environment"], i["kind"], when(i["opened_at"]), _lasted(i),
         i["title"], i.get("resolution") or "")
        for i in items
    ]  # fmt: skip
    table(rows, ("#", "ENVIRONMENT", "KIND", "OPENED", "LASTED", "TITLE", "RESOLUTION"))


@incident.command()
@click.argument("env")
@click.option("--title", required=True, help="What is wrong, in a few words.")
@click.option("--cause", default=None, help="Why, if known.")
@_project
@remote_options
@click.option("--json", "as_json", is_flag=True)
def declare(
    env: str,
    title: str,
    cause: str | None,
    project: str | None,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Declare an incident in ENV (its time counts as downtime until it is resolved)."""
    if server:
        record = _remote(
            server, token, project, "POST", "", body={"environment": env, "title": title, "cause": cause}
        )
    else:
        from aicd.reliability.monitor_incidents import declare_incident

        location, store = _open()
        with store:
            target = store.get_environment(env, scope=location.scope)
            record = declare_incident(store, target, title=title, cause=cause, actor=_actor()).to_json()
    if as_json:
        echo_json(record)
    else:
        click.echo(
            clean_lines(f"incident #{record['id']} declared in {record['environment']}: {record['title']}")
        )


@incident.command()
@click.argument("incident_id", metavar="ID", type=click.IntRange(1))
@click.option("--resolution", default=None, help="How it was fixed.")
@_project
@remote_options
@click.option("--json", "as_json", is_flag=True)
def resolve(
    incident_id: int,
    resolution: str | None,
    project: str | None,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Resolve incident ID (any kind: a declared one, or a monitor's false alarm)."""
    if server:
        record = _remote(
            server, token, project, "POST", f"/{incident_id}/resolve", body={"resolution": resolution}
        )
    else:
        from aicd.reliability.monitor_incidents import resolve_incident

        location, store = _open()
        with store:
            record = resolve_incident(
                store, incident_id, actor=_actor(), scope=location.scope, resolution=resolution
            ).to_json()
    if as_json:
        echo_json(record)
    else:
        click.echo(
            f"incident #{record['id']} ({record['kind']}) in {record['environment']} "
            f"resolved after {_lasted(record)}"
        )


def _lasted(item: Json) -> str:
    from aicd.reliability.humanize import format_duration

    end = item.get("resolved_at")
    took = (time.time() if end is None else end) - item["opened_at"]
    shown = f"{took:.1f}s" if took < 60 else format_duration(took)
    return f"open for {shown}" if end is None else shown


def _actor() -> str:
    return os.environ.get("GITLAB_USER_LOGIN") or os.environ.get("USER") or "local"


def _open() -> tuple[Any, Any]:
    from aicd.deploy.client import locate
    from aicd.store.deployments import open_deploy_store

    location = locate(Path.cwd())
    return location, open_deploy_store(location.database_url)


def _local_list(env: str | None, only_open: bool, limit: int) -> list[Json]:
    from aicd.deploy.client import check_env_name, has_database, locate
    from aicd.reliability.monitor_incidents import list_incidents

    if env is not None:
        check_env_name(env)
    location = locate(Path.cwd())
    if not has_database(location):
        if env is not None:
            from aicd.errors import NotFoundError

            raise NotFoundError(f"no environment {env!r}; deploy to it first with `aicd deploy --env {env}`")
        return []
    _, store = _open()
    with store:
        records = list_incidents(
            store, scope=location.scope, environment=env, only_open=only_open, limit=limit
        )
    return [r.to_json() for r in records]


def _remote(
    server: str,
    token: str | None,
    project: str | None,
    method: str,
    path: str,
    *,
    params: Json | None = None,
    body: Json | None = None,
) -> Any:
    from aicd.cli.remote import Client, job_token_from_env, segment

    if not project and not token and job_token_from_env():
        project = os.environ.get("CI_PROJECT_NAME")  # a job of a server: its own project
    if not project:
        raise ConfigError("with --server, name the project: --project NAME")
    with Client(server, token) as client:
        return client.request(
            method, f"/projects/{segment(project)}/incidents{path}", json=body, params=params
        )
