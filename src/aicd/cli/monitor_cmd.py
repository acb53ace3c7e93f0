"""`aicd monitor`: probe the environments' live services, open and close incidents.

The same monitor runs inside `aicd server` for every project's environments; this command is
the standalone one, for the environments `aicd deploy` recorded here (AICD_HOME /
AICD_DATABASE_URL, else the project's `.aicd/`; scope AICD_ENV_SCOPE). Both may run at once:
an incident is never opened twice.

Exit status with --once: 0 when every environment probed is up, 1 when one is down or out of
its SLO, 2 for bad input.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aicd.cli.tables import echo_json
from aicd.cli.terminal import clean_lines

if TYPE_CHECKING:
    from aicd.reliability.monitor import Change, Monitor

FAILING = ("down", "slo")


@click.command()
@click.option("--env", "env", default=None, metavar="NAME", help="Only this environment (default: all).")
@click.option(
    "--interval",
    default=None,
    metavar="DURATION",
    help="Time between probes, e.g. 5s, 500ms (default: each environment's slo.probe_interval, else 5s).",
)
@click.option("--once", is_flag=True, help="Probe each environment once, print its state and exit.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per state change (--once: a list).")
def monitor(env: str | None, interval: str | None, once: bool, as_json: bool) -> None:
    """Probe each environment's address; an incident opens when it is down or breaks its SLO.

    Runs until Ctrl-C, printing one line per state change (up, down, slo, idle, stopped,
    waiting).
    """
    from aicd.deploy.client import check_env_name, has_database, locate
    from aicd.reliability.slo import parse_probe_interval
    from aicd.store.deployments import open_deploy_store

    seconds = parse_probe_interval(interval) if interval is not None else None
    if env is not None:
        check_env_name(env)
    location = locate(Path.cwd())
    if not has_database(location):
        from aicd.errors import NotFoundError

        if env is not None:
            raise NotFoundError(f"no environment {env!r}; deploy to it first with `aicd deploy --env {env}`")
        click.echo(
            "nothing to monitor: no environments here yet (`aicd deploy --env NAME` makes one)", err=True
        )
        if once and as_json:
            echo_json([])
        return
    from aicd.reliability.monitor import Monitor

    with open_deploy_store(location.database_url) as store:
        if env is not None:
            store.get_environment(env, scope=location.scope)  # NotFoundError with suggestions
        watcher = Monitor(
            store,
            home=location.home,
            database_url=location.database_url,
            scope=location.scope,
            environment=env,
            interval=seconds,
            on_change=None if once else _printer(as_json),
        )
        if once:
            _once(watcher, as_json)
            return
        shown = (
            f"every {seconds:g}s" if seconds is not None else "at each one's slo.probe_interval (default 5s)"
        )
        click.echo(clean_lines(f"monitoring {env or 'every environment'} {shown}; Ctrl-C to stop"), err=True)
        asyncio.run(_forever(watcher))


def _once(watcher: Monitor, as_json: bool) -> None:
    changes = asyncio.run(watcher.check_all())
    if as_json:
        echo_json([c.to_json() for c in changes])
    elif not changes:
        click.echo("no environments yet: `aicd deploy --env NAME` makes one")
    for change in changes if not as_json else []:
        _line(change)
    if any(c.state in FAILING for c in changes):
        sys.exit(1)


async def _forever(watcher: Monitor) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await watcher.run(stop)


def _printer(as_json: bool) -> Any:
    def show(change: Change) -> None:
        if as_json:
            import json

            click.echo(json.dumps(change.to_json(), sort_keys=True))
        else:
            _line(change)
        sys.stdout.flush()

    return show


def _line(change: Change) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(change.at))
    where = f"{change.scope}/{change.environment}" if change.scope else change.environment
    click.echo(clean_lines(f"{stamp}  {where}: {change.message}"))
