"""`aicd runner`: the workers (runners) of an aicd server (admin, remote mode)."""

from __future__ import annotations

from typing import Any

import click

from aicd.cli.remote import Client, remote_options
from aicd.cli.tables import echo_json, table, when
from aicd.cli.terminal import clean, clean_lines

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group("runner")
def runner() -> None:
    """Runners: the `aicd worker`s that run a server's jobs on other hosts (admin)."""


@runner.command("register")
@click.option("--tags", default="", help="Tags it serves, comma-separated (gpu,cuda): jobs with these tags.")
@click.option("--run-untagged", is_flag=True, help="Also take jobs without tags.")
@click.option("--description", default="", help="What and where it is.")
@json_option
@remote_options
def runner_register(
    tags: str, run_untagged: bool, description: str, as_json: bool, server: str | None, token: str | None
) -> None:
    """Register a runner; its token is printed once (give it to `aicd worker --token`)."""
    body = {"tags": tags, "run_untagged": run_untagged, "description": description}
    with Client(server, token) as client:
        created = client.post("/runners", json=body)
    if as_json:
        echo_json(created)
        return
    what = ", ".join(created["tags"]) or "no tags"
    if created["run_untagged"]:
        what += "; untagged jobs too"
    click.echo(
        clean(f"runner {created['id']} registered ({what}); its token, shown once, keep it:"), err=True
    )
    click.echo(clean(str(created["token"])))


def _row(r: dict[str, Any]) -> tuple[object, ...]:
    tags = ",".join(r["tags"]) + (" (+untagged)" if r["run_untagged"] else "")
    return (
        r["id"],
        "paused" if r["paused"] else r["status"],
        tags.strip(),
        r["description"],
        r["version"] or "",
        r["host"] or "",
        r.get("running_jobs", 0),
        when(r["contacted_at"]),
    )


@runner.command("list")
@json_option
@remote_options
def runner_list(as_json: bool, server: str | None, token: str | None) -> None:
    """List runners: tags, status (online when seen in the last minute), version, host, running jobs."""
    with Client(server, token) as client:
        found = client.get("/runners")
    if as_json:
        echo_json(found)
        return
    table(
        [_row(r) for r in found],
        ("ID", "STATUS", "TAGS", "DESCRIPTION", "VERSION", "HOST", "JOBS", "LAST CONTACT"),
    )


def _action(verb: str, runner_id: int, server: str | None, token: str | None) -> None:
    with Client(server, token) as client:
        if verb == "delete":
            client.delete(f"/runners/{runner_id}")
        else:
            client.post(f"/runners/{runner_id}/{verb}")
    done = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[verb]
    click.echo(clean_lines(f"runner {runner_id} {done}"))


@runner.command("pause")
@click.argument("runner_id", type=click.IntRange(min=1))
@remote_options
def runner_pause(runner_id: int, server: str | None, token: str | None) -> None:
    """Give runner RUNNER_ID no new job (what it runs goes on)."""
    _action("pause", runner_id, server, token)


@runner.command("resume")
@click.argument("runner_id", type=click.IntRange(min=1))
@remote_options
def runner_resume(runner_id: int, server: str | None, token: str | None) -> None:
    """Give runner RUNNER_ID jobs again."""
    _action("resume", runner_id, server, token)


@runner.command("delete")
@click.argument("runner_id", type=click.IntRange(min=1))
@remote_options
def runner_delete(runner_id: int, server: str | None, token: str | None) -> None:
    """Delete runner RUNNER_ID: its token stops working."""
    _action("delete", runner_id, server, token)
