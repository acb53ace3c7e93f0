"""`aicd user`, `aicd token`, `aicd audit`: accounts and the audit log of an aicd server (remote mode)."""

from __future__ import annotations

import json
from typing import Any

import click

from aicd.cli.remote import Client, remote_options, segment
from aicd.cli.tables import table as _table
from aicd.cli.tables import when
from aicd.cli.terminal import clean, clean_lines
from aicd.errors import NotFoundError


def _when(at: float | None) -> str:
    return when(at)


def _json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def resolve_user(client: Client, user: str) -> int:
    """A user id from an id or a name (non-admins can name only themselves)."""
    if user.isdigit():
        return int(user)
    me = client.get("/user")
    if me["name"] == user:
        return int(me["id"])
    for found in client.get("/users"):
        if found["name"] == user:
            return int(found["id"])
    raise NotFoundError(f"server: no user named {user!r}")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


# -- aicd user --------------------------------------------------------------------------------------


@click.group("user")
def user() -> None:
    """Users of an aicd server (admin)."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user an admin (everything, on every project).")
@json_option
@remote_options
def user_add(name: str, admin: bool, as_json: bool, server: str | None, token: str | None) -> None:
    """Create user NAME (then give them a token: aicd token create NAME)."""
    with Client(server, token) as client:
        created = client.post("/users", json={"name": name, "is_admin": admin})
    if as_json:
        _json(created)
    else:
        click.echo(
            clean_lines(f"user {created['name']} created (id {created['id']}{', admin' if admin else ''})")
        )


@user.command("list")
@json_option
@remote_options
def user_list(as_json: bool, server: str | None, token: str | None) -> None:
    """List users."""
    with Client(server, token) as client:
        users = client.get("/users")
    if as_json:
        _json(users)
        return
    _table(
        [(u["id"], u["name"], "yes" if u["is_admin"] else "", _when(u["created_at"])) for u in users],
        ("ID", "NAME", "ADMIN", "CREATED"),
    )


@user.command("remove")
@click.argument("name")
@remote_options
def user_remove(name: str, server: str | None, token: str | None) -> None:
    """Delete user NAME (or id), with their tokens and roles."""
    with Client(server, token) as client:
        user_id = resolve_user(client, name)
        client.delete(f"/users/{user_id}")
    click.echo(clean_lines(f"user {name} removed"))


# -- aicd token -------------------------------------------------------------------------------------


@click.group("token")
def token() -> None:
    """API tokens of an aicd server's users."""


@token.command("create")
@click.argument("user_name", metavar="USER")
@click.option("--name", "token_name", default="cli", show_default=True, help="What the token is for.")
@click.option("--expires-in-days", type=click.FloatRange(min=0, min_open=True), default=None)
@json_option
@remote_options
def token_create(
    user_name: str,
    token_name: str,
    expires_in_days: float | None,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Create an API token for USER (name or id); it is printed once, keep it."""
    body: dict[str, Any] = {"name": token_name}
    if expires_in_days is not None:
        body["expires_in_s"] = expires_in_days * 86400
    with Client(server, token) as client:
        created = client.post(f"/users/{resolve_user(client, user_name)}/tokens", json=body)
    if as_json:
        _json(created)
    else:
        click.echo(
            clean(f"token {created['id']} ({created['name']}) for {user_name}; shown once, keep it:"),
            err=True,
        )
        click.echo(clean(str(created["token"])))


@token.command("list")
@click.argument("user_name", metavar="USER")
@json_option
@remote_options
def token_list(user_name: str, as_json: bool, server: str | None, token: str | None) -> None:
    """List USER's tokens (never the tokens themselves)."""
    with Client(server, token) as client:
        tokens = client.get(f"/users/{resolve_user(client, user_name)}/tokens")
    if as_json:
        _json(tokens)
        return
    rows = [
        (
            t["id"],
            t["name"],
            _when(t["created_at"]),
            _when(t["expires_at"]) or "never",
            _when(t["last_used_at"]),
            "revoked" if t["revoked"] else "active",
        )
        for t in tokens
    ]
    _table(rows, ("ID", "NAME", "CREATED", "EXPIRES", "LAST USED", "STATE"))


@token.command("revoke")
@click.argument("token_id", type=int, metavar="ID")
@remote_options
def token_revoke(token_id: int, server: str | None, token: str | None) -> None:
    """Revoke token ID: it stops working at once."""
    with Client(server, token) as client:
        client.delete(f"/tokens/{token_id}")
    click.echo(clean_lines(f"token {token_id} revoked"))


# -- aicd audit -------------------------------------------------------------------------------------


@click.group("audit")
def audit() -> None:
    """The audit log of an aicd server: who did what, when."""


@audit.command("list")
@click.option("--project", default=None, help="Only this project (maintainers may read their project's).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@remote_options
def audit_list(project: str | None, limit: int, as_json: bool, server: str | None, token: str | None) -> None:
    """List audit entries, newest first."""
    with Client(server, token) as client:
        if project:
            entries = client.get(f"/projects/{segment(project)}/audit", params={"limit": limit})
        else:
            entries = client.get("/audit", params={"limit": limit})
    if as_json:
        _json(entries)
        return
    rows = [
        (
            _when(e["at"]),
            e["actor"],
            e["action"],
            e["target"] or "",
            json.dumps(e["details"], sort_keys=True) if e["details"] else "",
        )
        for e in entries
    ]
    _table(rows, ("AT", "ACTOR", "ACTION", "TARGET", "DETAILS"))
