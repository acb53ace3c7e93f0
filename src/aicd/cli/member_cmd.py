"""`aicd project member`: who has which role on a project of an aicd server (maintainers, admins)."""

from __future__ import annotations

import json
from typing import Any

import click

from aicd.cli.remote import Client, remote_options, segment
from aicd.cli.tables import table as _table
from aicd.cli.terminal import clean_lines
from aicd.errors import ConfigError, NotFoundError, PermissionDeniedError

ROLES = ("viewer", "developer", "maintainer")


def _members(client: Client, project: str) -> list[dict[str, Any]]:
    return list(client.get(f"/projects/{segment(project)}/members"))


def _user_id(client: Client, project: str, user: str, *, members_only: bool) -> int:
    """USER as an id: a number, a member's name, or (admins) any user's name."""
    if user.isdigit():
        return int(user)
    for member in _members(client, project):
        if member["name"] == user:
            return int(member["user_id"])
    if members_only:
        raise NotFoundError(f"server: user {user!r} has no role on project {project!r}")
    try:
        users = client.get("/users")
    except PermissionDeniedError:
        raise ConfigError(
            f"cannot look up user {user!r} by name (only admins may list users): give the user's id"
        ) from None
    for found in users:
        if found["name"] == user:
            return int(found["id"])
    raise NotFoundError(f"server: no user named {user!r}")


@click.group("member")
def member() -> None:
    """Roles on a project: viewer < developer < maintainer (maintainers and admins)."""


@member.command("list")
@click.argument("project")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@remote_options
def member_list(project: str, as_json: bool, server: str | None, token: str | None) -> None:
    """List PROJECT's members and their roles."""
    with Client(server, token) as client:
        found = _members(client, project)
    if as_json:
        click.echo(json.dumps(found, indent=2, sort_keys=True))
        return
    _table([(m["user_id"], m["name"], m["role"]) for m in found], ("id", "user", "role"))


@member.command("set")
@click.argument("project")
@click.argument("user")
@click.argument("role", type=click.Choice(ROLES))
@remote_options
def member_set(project: str, user: str, role: str, server: str | None, token: str | None) -> None:
    """Give USER (a name or an id) ROLE on PROJECT, or change it."""
    with Client(server, token) as client:
        user_id = _user_id(client, project, user, members_only=False)
        done = client.put(f"/projects/{segment(project)}/members/{user_id}", json={"role": role})
    click.echo(clean_lines(f"{done['name']} is {done['role']} on {project}"))


@member.command("remove")
@click.argument("project")
@click.argument("user")
@remote_options
def member_remove(project: str, user: str, server: str | None, token: str | None) -> None:
    """Take USER's (a name or an id) role on PROJECT away."""
    with Client(server, token) as client:
        user_id = _user_id(client, project, user, members_only=True)
        client.delete(f"/projects/{segment(project)}/members/{user_id}")
    click.echo(clean_lines(f"{user} has no role on {project} any more"))


__all__ = ["member"]
