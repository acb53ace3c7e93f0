"""`aicd hooks`: signed webhooks for registry and deployment events (aicd.delivery.hooks)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from aicd.cli.tables import echo_json, table
from aicd.errors import ConfigError


def _home() -> Path:
    from aicd.delivery.registry import local_location

    home, _ = local_location(Path.cwd())
    return home


@click.group()
def hooks() -> None:
    """Webhooks (HMAC-signed like GitHub's) for model.registered, alias.moved, deployment.finished."""


@hooks.command("add")
@click.argument("url")
@click.option(
    "--event", "events", multiple=True, metavar="EVENT",
    help="model.registered, alias.moved or deployment.finished (repeat; default: all).",
)  # fmt: skip
@click.option(
    "--secret-env", metavar="VAR",
    help="Take the signing secret from this environment variable (default: aicd makes one, shown once).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
def add(url: str, events: tuple[str, ...], secret_env: str | None, as_json: bool) -> None:
    """Send events to URL, each signed with X-Hub-Signature-256."""
    from aicd.delivery.hooks import EVENTS, add_hook

    secret = None
    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            raise ConfigError(f"--secret-env {secret_env}: the variable is not set (or empty)")
    hook, plain = add_hook(_home(), url, events or EVENTS, secret=secret)
    shown = None if secret_env else plain
    if as_json:
        echo_json({**hook.public(), "secret": shown})
        return
    click.echo(f"hook {hook.id}: {', '.join(hook.events)} -> {hook.url}")
    if shown:
        click.echo(f"secret (shown once; check X-Hub-Signature-256 with it): {shown}")


@hooks.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """The hooks of this aicd home (no secrets)."""
    from aicd.delivery.hooks import load_hooks

    found = [h.public() for h in load_hooks(_home())]
    if as_json:
        echo_json(found)
    elif not found:
        click.echo("no hooks: `aicd hooks add URL` adds one")
    else:
        table([[h["id"], ", ".join(h["events"]), h["url"]] for h in found], ["ID", "EVENTS", "URL"])


@hooks.command("remove")
@click.argument("hook_id")
def remove(hook_id: str) -> None:
    """Stop sending events to hook HOOK_ID."""
    from aicd.delivery.hooks import remove_hook

    hook = remove_hook(_home(), hook_id)
    click.echo(f"hook {hook.id} removed ({hook.url})")


@hooks.command("log")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def log(limit: int, as_json: bool) -> None:
    """The last delivery attempts, oldest first."""
    from datetime import UTC, datetime

    from aicd.delivery.hooks import deliveries

    found = deliveries(_home(), limit)
    if as_json:
        echo_json(found)
        return
    rows = [
        [
            datetime.fromtimestamp(float(d.get("at", 0)), UTC).strftime("%Y-%m-%d %H:%M:%S"),
            str(d.get("event", "")),
            str(d.get("hook", "")),
            str(d.get("attempt", "")),
            str(d.get("status") or d.get("error") or ""),
            str(d.get("url", "")),
        ]
        for d in found
    ]
    table(rows, ["AT (UTC)", "EVENT", "HOOK", "ATTEMPT", "RESULT", "URL"])
