"""`aicd project model-readers` and `aicd project protected-aliases`: who else reads a project's
models, and which of its aliases only maintainers move (an aicd server: --server/--token)."""

from __future__ import annotations

import json
from typing import Any

import click

from aicd.cli.remote import Client, remote_options, segment

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _echo(value: dict[str, Any], as_json: bool, key: str, label: str) -> None:
    if as_json:
        click.echo(json.dumps(value, indent=2))
        return
    items = value[key]
    click.echo(f"{label} of project {value['project']}: {', '.join(items) if items else 'none'}")


@click.command("model-readers")
@click.argument("name")
@click.option(
    "--add", "add", multiple=True, metavar="PROJECT", help="Let PROJECT read NAME's models (repeat)."
)
@click.option(
    "--remove", "remove", multiple=True, metavar="PROJECT", help="Stop PROJECT reading them (repeat)."
)
@json_option
@remote_options
def model_readers(
    name: str,
    add: tuple[str, ...],
    remove: tuple[str, ...],
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """The projects that may read project NAME's models (changing them: maintainer)."""
    base = f"/projects/{segment(name)}/model-readers"
    with Client(server, token) as client:
        result: dict[str, Any] | None = None
        for reader in add:
            result = client.put(f"{base}/{segment(reader)}")
        for reader in remove:
            result = client.delete(f"{base}/{segment(reader)}")
        if result is None:
            result = client.get(base)
    _echo(dict(result), as_json, "readers", "model readers")


@click.command("protected-aliases")
@click.argument("name")
@click.argument("aliases", nargs=-1)
@click.option("--none", "none_", is_flag=True, help="Protect no alias.")
@json_option
@remote_options
def protected_aliases(
    name: str, aliases: tuple[str, ...], none_: bool, as_json: bool, server: str | None, token: str | None
) -> None:
    """Show, or set to ALIASES, the aliases of project NAME's models that only maintainers move or
    remove (default: production)."""
    if aliases and none_:
        raise click.UsageError("give ALIASES or --none, not both")
    path = f"/projects/{segment(name)}/protected-aliases"
    with Client(server, token) as client:
        if aliases or none_:
            result = client.put(path, json={"aliases": list(aliases)})
        else:
            result = client.get(path)
    _echo(dict(result), as_json, "aliases", "protected aliases")
