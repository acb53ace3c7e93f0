"""`aicd env list|status|history|start|stop|logs`: the environments and what runs in them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from aicd.cli.tables import echo_json, table, when
from aicd.cli.terminal import clean_lines

Json = dict[str, Any]


def _location() -> Any:
    from aicd.deploy import client

    return client.locate(Path.cwd())


def _store(location: Any) -> Any:
    """The deployment store here; NotFoundError (no database made) when nothing was deployed yet."""
    from aicd.deploy.client import has_database
    from aicd.errors import NotFoundError
    from aicd.store.deployments import open_deploy_store

    if not has_database(location):
        raise NotFoundError(
            f"no environments in {location.home} yet: `aicd deploy --env NAME` makes one "
            "(AICD_HOME picks another home)"
        )
    return open_deploy_store(location.database_url)


@click.group()
def env() -> None:
    """Environments: what is deployed where, and their history."""


@env.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """Every environment: status, stable and canary revisions, address."""
    from aicd.deploy import client

    location = _location()
    envs: list[Any] = []
    last: dict[str, list[Any]] = {}
    if client.has_database(location):
        with _store(location) as store:
            envs = store.list_environments(scope=location.scope)
            last = {
                e.name: store.list_deployments(environment=e.name, scope=location.scope, limit=1)
                for e in envs
            }
    rows = []
    data = []
    for e in envs:
        running = client.agent_running(location, e.name)
        item = {**e.to_json(), "agent": "running" if running else "stopped"}
        dep = last[e.name][0] if last[e.name] else None
        item["last_deployment"] = dep.to_json() if dep else None
        data.append(item)
        status = e.status if running or e.status in ("idle", "stopped") else f"{e.status} (agent stopped)"
        rows.append(
            (e.name, status, e.stable_revision or "-", e.canary_revision or "-", e.url or "-",
             f"#{dep.number} {dep.status}" if dep else "-", when(dep.started_at) if dep else "")
        )  # fmt: skip
    if as_json:
        echo_json(data)
    elif not rows:
        click.echo("no environments yet: `aicd deploy --env staging` creates one")
    else:
        table(rows, ("ENVIRONMENT", "STATUS", "STABLE", "CANARY", "URL", "LAST DEPLOYMENT", "AT"))


@env.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def status(name: str, as_json: bool) -> None:
    """The live state of NAME: revisions, instances, weights, traffic."""
    from aicd.deploy import client, control

    location = _location()
    with _store(location) as store:
        record = store.get_environment(name, scope=location.scope)
    if not client.agent_running(location, name):
        data: Json = {"environment": record.to_json(), "agent": "stopped"}
        if as_json:
            echo_json(data)
        else:
            click.echo(
                f"{name}: {record.status}; its agent is not running (`aicd env start {name}` brings it back)"
            )
        return
    data = control.request(client.agent_socket(location, name), {"op": "status"})
    if as_json:
        echo_json(data)
        return
    click.echo(clean_lines(f"{name}: {data['status']} at {data.get('url')}"))
    active = data.get("active_deployment")
    if active:
        click.echo(
            f"deployment #{active['number']} ({active['revision']}, {active['strategy']}) "
            f"is {active['status']}"
        )
    rows = []
    for rev in data["revisions"]:
        for inst in rev["instances"]:
            rows.append(
                (rev["revision"], rev["role"], rev["weight"], inst["index"], inst["state"], inst["pid"],
                 inst["port"], inst["restarts"], rev["requests"], rev["errors"])
            )  # fmt: skip
    if rows:
        table(
            rows,
            (
                "REVISION",
                "ROLE",
                "WEIGHT",
                "INSTANCE",
                "STATE",
                "PID",
                "PORT",
                "RESTARTS",
                "REQUESTS",
                "ERRORS",
            ),
        )


@env.command()
@click.argument("name")
@click.option("--events", is_flag=True, help="Every recorded event, not just the deployments.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def history(name: str, events: bool, limit: int, as_json: bool) -> None:
    """The deployments of NAME, newest first (with --events: every event, oldest first)."""
    location = _location()
    with _store(location) as store:
        store.get_environment(name, scope=location.scope)
        if events:
            items = store.list_events(environment=name, scope=location.scope)[-limit:]
        else:
            items = store.list_deployments(environment=name, scope=location.scope, limit=limit)
    if as_json:
        echo_json([i.to_json() for i in items])
    elif events:
        table(
            [(when(e.at), e.kind, e.revision or "", e.actor, e.message) for e in items],
            ("AT", "KIND", "REVISION", "BY", "MESSAGE"),
        )
    else:
        rows = [
            (f"#{d.number}", d.revision, d.strategy, d.status, (d.commit_sha or "")[:8], d.pipeline_id or "",
             d.actor, when(d.started_at), _took(d.started_at, d.finished_at), d.reason or "")
            for d in items
        ]  # fmt: skip
        table(
            rows,
            ("#", "REVISION", "STRATEGY", "STATUS", "COMMIT", "PIPELINE", "BY", "STARTED", "TOOK", "REASON"),
        )


def _took(start: float, end: float | None) -> str:
    return "" if end is None else f"{end - start:.1f}s"


@env.command()
@click.argument("name")
def start(name: str) -> None:
    """Start NAME's agent again (after a reboot): finds or restarts its services, same address."""
    from aicd.deploy import client, control

    location = _location()
    with _store(location) as store:
        store.get_environment(name, scope=location.scope)
    data = control.request(client.ensure_agent(location, name), {"op": "status"})
    click.echo(clean_lines(f"{name}: {data['status']} at {data.get('url')}"))


@env.command()
@click.argument("name")
def stop(name: str) -> None:
    """Stop NAME's services and its agent (its address stops answering)."""
    from aicd.deploy import client, control

    location = _location()
    with _store(location) as store:
        store.get_environment(name, scope=location.scope)
    if not client.agent_running(location, name):
        click.echo(clean_lines(f"{name}: its agent is not running"))
        return
    control.request(client.agent_socket(location, name), {"op": "stop"})
    click.echo(clean_lines(f"{name}: stopping"))


@env.command()
@click.argument("name")
@click.option("--revision", "-r", default=None, help="Only this revision's instances.")
@click.option("--lines", "-n", type=click.IntRange(1, 100000), default=40, show_default=True)
def logs(name: str, revision: str | None, lines: int) -> None:
    """The end of the service logs of NAME's instances."""
    from aicd.deploy import client

    location = _location()
    with _store(location) as store:
        store.get_environment(name, scope=location.scope)
    folder = client.environment_dir(location, name) / "supervisor" / "logs"
    files = sorted(folder.glob(f"{revision}.*.log" if revision else "*.log"))
    if not files:
        click.echo(clean_lines(f"{name}: no service logs{f' of {revision}' if revision else ''} yet"))
    for path in files:
        click.echo(clean_lines(f"==> {path.name} <=="))
        text = path.read_text(errors="replace").splitlines()[-lines:]
        for line in text:
            click.echo(line)
