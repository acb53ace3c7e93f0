"""`aicd project`: projects of an aicd server and their variables (remote mode: --server/--token)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from aicd.cli.remote import Client, remote_options, segment
from aicd.cli.tables import table as _table
from aicd.cli.terminal import clean_lines
from aicd.errors import ConfigError

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _local_url(url: str) -> str:
    """A path that exists here is sent as an absolute path (the server resolves nothing relative)."""
    if "://" not in url and not url.startswith("-"):
        path = Path(url).expanduser()
        if path.exists():
            return str(path.resolve())
    return url


def _secret(value: str | None, env_var: str | None) -> str | None:
    if value is not None and env_var is not None:
        raise ConfigError("give --webhook-secret or --webhook-secret-env, not both")
    if env_var is not None:
        found = os.environ.get(env_var)
        if not found:
            raise ConfigError(
                f"--webhook-secret-env {env_var}: that environment variable is not set or empty"
            )
        return found
    return value


def _describe(project: dict[str, Any]) -> None:
    poll = f"every {project['poll_interval_s']:g} s" if project.get("poll_interval_s") else "no"
    lines = [
        ("name", project["name"]),
        ("id", project["id"]),
        ("repository", project["repo_url"]),
        ("default branch", project["default_branch"]),
        ("pipeline file", project["pipeline_file"]),
        ("polling", poll),
        ("webhook secret", "set" if project["has_webhook_secret"] else "none (webhooks refused)"),
        ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(project["created_at"]))),
    ]
    if project.get("has_webhook_secret"):
        for provider, path in sorted(project.get("webhook_paths", {}).items()):
            lines.append((f"{provider} webhook", path))
    if project.get("last_poll_error"):
        lines.append(("last poll error", project["last_poll_error"]))
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        click.echo(clean_lines(f"{label.ljust(width)}  {value}"))


@click.group("project")
def project() -> None:
    """Projects of an aicd server: repositories it watches and runs pipelines for."""


@project.command("add")
@click.argument("name")
@click.argument("repo_url")
@click.option("--branch", "-b", default="main", show_default=True, help="Default branch.")
@click.option("--file", "-f", "pipeline_file", default=".gitlab-ci.yml", show_default=True)
@click.option("--poll-interval", type=click.FloatRange(min=0), default=None, help="Poll every N seconds.")
@click.option("--webhook-secret", default=None, help="Webhook secret (visible to `ps`: prefer -env).")
@click.option("--webhook-secret-env", metavar="VAR", default=None, help="Read the webhook secret from $VAR.")
@json_option
@remote_options
def project_add(
    name: str,
    repo_url: str,
    branch: str,
    pipeline_file: str,
    poll_interval: float | None,
    webhook_secret: str | None,
    webhook_secret_env: str | None,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Add project NAME for the repository REPO_URL (a path, file://, https://, ssh://, user@host:path)."""
    body = {
        "name": name,
        "repo_url": _local_url(repo_url),
        "default_branch": branch,
        "pipeline_file": pipeline_file,
        "poll_interval_s": poll_interval or None,
        "webhook_secret": _secret(webhook_secret, webhook_secret_env),
    }
    with Client(server, token) as client:
        created = client.post("/projects", json=body)
    if as_json:
        _json(created)
    else:
        click.echo(clean_lines(f"project {created['name']} added (id {created['id']})"))


@project.command("list")
@json_option
@remote_options
def project_list(as_json: bool, server: str | None, token: str | None) -> None:
    """List the projects you have a role on."""
    with Client(server, token) as client:
        projects = client.get("/projects")
    if as_json:
        _json(projects)
        return
    _table(
        [
            (p["id"], p["name"], p["default_branch"], p["poll_interval_s"] or "", p["repo_url"])
            for p in projects
        ],
        ("ID", "NAME", "BRANCH", "POLL_S", "REPOSITORY"),
    )


@project.command("show")
@click.argument("name")
@json_option
@remote_options
def project_show(name: str, as_json: bool, server: str | None, token: str | None) -> None:
    """Show project NAME."""
    with Client(server, token) as client:
        found = client.get(f"/projects/{segment(name)}")
    if as_json:
        _json(found)
    else:
        _describe(found)


@project.command("update")
@click.argument("name")
@click.option("--repo-url", default=None, help="New repository URL.")
@click.option("--branch", "-b", default=None, help="New default branch.")
@click.option("--file", "-f", "pipeline_file", default=None, help="New pipeline file.")
@click.option("--poll-interval", type=click.FloatRange(min=0), default=None, help="Seconds; 0: stop polling.")
@click.option("--webhook-secret", default=None, help="New webhook secret (visible to `ps`: prefer -env).")
@click.option(
    "--webhook-secret-env", metavar="VAR", default=None, help="Read the new webhook secret from $VAR."
)
@click.option("--no-webhook-secret", is_flag=True, help="Remove the webhook secret (refuse webhooks).")
@json_option
@remote_options
def project_update(
    name: str,
    repo_url: str | None,
    branch: str | None,
    pipeline_file: str | None,
    poll_interval: float | None,
    webhook_secret: str | None,
    webhook_secret_env: str | None,
    no_webhook_secret: bool,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Change project NAME's settings (only those given)."""
    body: dict[str, Any] = {}
    if repo_url is not None:
        body["repo_url"] = _local_url(repo_url)
    if branch is not None:
        body["default_branch"] = branch
    if pipeline_file is not None:
        body["pipeline_file"] = pipeline_file
    if poll_interval is not None:
        body["poll_interval_s"] = poll_interval or None
    secret = _secret(webhook_secret, webhook_secret_env)
    if secret is not None and no_webhook_secret:
        raise ConfigError("give a new webhook secret or --no-webhook-secret, not both")
    if secret is not None or no_webhook_secret:
        body["webhook_secret"] = secret
    if not body:
        raise ConfigError(
            "nothing to change: give --repo-url, --branch, --file, --poll-interval or a secret option"
        )
    with Client(server, token) as client:
        updated = client.patch(f"/projects/{segment(name)}", json=body)
    if as_json:
        _json(updated)
    else:
        click.echo(clean_lines(f"project {updated['name']} updated"))


@project.command("remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@remote_options
def project_remove(name: str, yes: bool, server: str | None, token: str | None) -> None:
    """Remove project NAME with its pipelines, variables and mirror (admin)."""
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"removing project {name!r} deletes its whole history: add --yes to confirm")
        click.confirm(f"Remove project {name!r} and its whole history?", abort=True)
    with Client(server, token) as client:
        client.delete(f"/projects/{segment(name)}")
    click.echo(clean_lines(f"project {name} removed"))


@project.command("poll")
@click.argument("name")
@json_option
@remote_options
def project_poll(name: str, as_json: bool, server: str | None, token: str | None) -> None:
    """Fetch project NAME's repository now and run pipelines for what moved."""
    with Client(server, token) as client:
        result = client.post(f"/projects/{segment(name)}/poll")
    if as_json:
        _json(result)
        return
    pipelines = result["pipelines"]
    if not pipelines:
        click.echo("nothing new")
    for p in pipelines:
        click.echo(
            clean_lines(f"pipeline {p['id']} (#{p['iid']}) for {p['ref']} at {p['sha'][:8]}: {p['status']}")
        )


# -- variables --------------------------------------------------------------------------------


@project.group("variable")
def variable() -> None:
    """Project variables: given to every pipeline of the project, encrypted at rest (maintainer)."""


@variable.command("set")
@click.argument("name")
@click.argument("key")
@click.argument("value", required=False)
@click.option("--value-env", metavar="VAR", default=None, help="Take the value from $VAR.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the value from standard input.")
@click.option("--masked", is_flag=True, help="Mask it in job logs; the API never shows it again.")
@click.option("--protected", is_flag=True, help="Only for pipelines of protected refs.")
@click.option(
    "--file", "is_file", is_flag=True, help="A file variable: jobs get a path to a file holding it."
)
@json_option
@remote_options
def variable_set(
    name: str,
    key: str,
    value: str | None,
    value_env: str | None,
    from_stdin: bool,
    masked: bool,
    protected: bool,
    is_file: bool,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Set variable KEY of project NAME to VALUE (or --value-env VAR, or --stdin)."""
    given = [v for v in (value is not None, value_env is not None, from_stdin) if v]
    if len(given) != 1:
        raise ConfigError("give the value once: as VALUE, --value-env VAR or --stdin")
    if value_env is not None:
        value = os.environ.get(value_env)
        if value is None:
            raise ConfigError(f"--value-env {value_env}: that environment variable is not set")
    elif from_stdin:
        value = sys.stdin.read().removesuffix("\n")
    body = {"value": value, "masked": masked, "protected": protected, "file": is_file}
    with Client(server, token) as client:
        result = client.put(f"/projects/{segment(name)}/variables/{segment(key)}", json=body)
    if as_json:
        _json(result)
    else:
        click.echo(clean_lines(f"variable {key} set{' (masked)' if masked else ''}"))


@variable.command("list")
@click.argument("name")
@json_option
@remote_options
def variable_list(name: str, as_json: bool, server: str | None, token: str | None) -> None:
    """List project NAME's variables (masked values are not shown)."""
    with Client(server, token) as client:
        variables = client.get(f"/projects/{segment(name)}/variables")
    if as_json:
        _json(variables)
        return
    flags = ("masked", "protected", "file")
    _table(
        [
            (v["key"], "[masked]" if v["value"] is None else v["value"], ",".join(f for f in flags if v[f]))
            for v in variables
        ],
        ("KEY", "VALUE", "FLAGS"),
    )


@variable.command("remove")
@click.argument("name")
@click.argument("key")
@remote_options
def variable_remove(name: str, key: str, server: str | None, token: str | None) -> None:
    """Delete variable KEY of project NAME."""
    with Client(server, token) as client:
        client.delete(f"/projects/{segment(name)}/variables/{segment(key)}")
    click.echo(clean_lines(f"variable {key} removed"))


def _add_members() -> None:
    from aicd.cli.member_cmd import member
    from aicd.cli.model_access_cmd import model_readers, protected_aliases

    project.add_command(member)
    project.add_command(model_readers)
    project.add_command(protected_aliases)


_add_members()
