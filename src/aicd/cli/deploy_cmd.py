"""`aicd deploy`, `aicd promote`, `aicd abort`, `aicd rollback`: rollouts to an environment.

Exit status: 0 when the deployment succeeded (or paused, waiting for `aicd promote`); 1 when it
failed, was rolled back or aborted (the reason is printed); 2 for bad input.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from aicd.cli.tables import echo_json
from aicd.cli.terminal import clean_lines
from aicd.errors import ConfigError

Json = dict[str, Any]
FAILED = ("failed", "rolled_back", "aborted", "rejected")


def _print_event(event: Json) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(float(event.get("at") or time.time())))
    click.echo(clean_lines(f"{stamp}  {event.get('message', '')}"), err=True)


def _finish(result: Json, as_json: bool, verb: str) -> None:
    deployment = result.get("deployment") or {}
    status = deployment.get("status")
    if as_json:
        echo_json(result)
    else:
        number, revision = deployment.get("number"), deployment.get("revision")
        head = f"deployment #{number} ({revision}, {deployment.get('strategy')})"
        if result.get("paused"):
            env = deployment.get("environment")
            click.echo(
                clean_lines(
                    f"{head} is paused: `aicd promote {env}` to go on, `aicd abort {env}` to roll back"
                )
            )
        elif status in FAILED:
            click.echo(
                clean_lines(f"{head} {status.replace('_', ' ')}: {deployment.get('reason')}"), err=True
            )
        else:
            click.echo(clean_lines(f"{head} {verb}: {status}; serving at {result.get('url')}"))
    if status in FAILED and not (verb == "aborted" and status == "aborted"):
        sys.exit(1)


def _environment(env: str | None) -> str:
    from aicd.deploy.client import check_env_name

    name = env or os.environ.get("CI_ENVIRONMENT_NAME", "").strip()
    if not name:
        raise ConfigError(
            "name the environment: `aicd deploy --env staging`, or run it in a job with GitLab's "
            "`environment: staging` keyword (CI_ENVIRONMENT_NAME)"
        )
    return check_env_name(name)


def _config_file(config: str | None, release: Path, cwd: Path) -> Path:
    from aicd.delivery.config import CONFIG_FILE

    if config:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"--config {config}: no such file")
        return path
    for candidate in (release / CONFIG_FILE, cwd / CONFIG_FILE):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_FILE} in {release} or {cwd}: deploying needs its `service:` section "
        "(how to start the service); give it with --config"
    )


@click.command()
@click.argument("release", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--env", "-e", "env", default=None, help="Environment (default: the job's CI_ENVIRONMENT_NAME)."
)
@click.option(
    "--strategy", "-s", default=None,
    type=click.Choice(["recreate", "blue-green", "canary", "shadow", "experiment"]),
    help="Override environments.<env>.strategy of aicd.yml (default there: blue-green).",
)  # fmt: skip
@click.option(
    "--step", "steps", multiple=True, metavar="STEP",
    help="Canary step (repeat, in order): weight=20, pause=30s, pause (wait for promote), analysis, "
         "labels=400, shadow=30s.",
)  # fmt: skip
@click.option(
    "--config", default=None, help="The aicd.yml to use (default: the release's, else the current folder's)."
)
@click.option("--no-wait", is_flag=True, help="Return once the rollout has started.")
@click.option("--json", "as_json", is_flag=True, help="Print the deployment as JSON on stdout.")
def deploy(
    release: Path,
    env: str | None,
    strategy: str | None,
    steps: tuple[str, ...],
    config: str | None,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Deploy RELEASE (a folder: the service's files, e.g. the pipeline's artifacts) to an environment.

    The service spec (start command, port variable, health check, instances) comes from aicd.yml's
    `service:`, the rollout from `environments.<env>:` (strategy, canary steps, rollback window)
    and the canary analysis from `analysis:`.
    """
    from aicd.cli.remote import job_token_from_env, server_from_env
    from aicd.core.deploy_release import load_rollout, start_rollout
    from aicd.deploy import client, control

    name = _environment(env)
    cwd = Path.cwd()
    release_dir = release.resolve()
    client.check_release(release_dir)
    config_path = _config_file(config, release_dir, cwd)
    tier = os.environ.get("CI_ENVIRONMENT_TIER", "").strip() or None
    rollout = load_rollout(name, config_path, strategy=strategy, steps=steps, tier=tier)
    if job_token_from_env() and server_from_env() is not None:
        from aicd.cli.deploy_remote import deploy_through_server

        result = deploy_through_server(
            rollout,
            release_dir,
            strategy=strategy,
            steps=steps,
            no_wait=no_wait,
            on_event=None if as_json else _print_event,
        )
        _finish(result, as_json, "deployed")
        return
    location = client.locate(cwd)
    meta = client.ci_metadata(cwd)
    socket, body = start_rollout(location, rollout, release_dir, meta, wait=not no_wait)
    result = control.request(socket, body, on_event=None if as_json else _print_event)
    _finish(result, as_json, "deployed")


def _send(env: str, body: Json, as_json: bool, verb: str) -> None:
    from aicd.deploy import client, control
    from aicd.deploy.client import check_env_name

    check_env_name(env)
    location = client.locate(Path.cwd())
    _known(location, env)
    socket = client.ensure_agent(location, env)
    body.setdefault("actor", os.environ.get("GITLAB_USER_LOGIN") or os.environ.get("USER") or "local")
    result = control.request(socket, body, on_event=None if as_json else _print_event)
    _finish(result, as_json, verb)


def _known(location: Any, env: str) -> None:
    """NotFoundError (with suggestions) for an environment nothing was ever deployed to."""
    from aicd.store.deployments import open_deploy_store

    with open_deploy_store(location.database_url) as store:
        store.get_environment(env, scope=location.scope)


@click.command()
@click.argument("env")
@click.option("--full", is_flag=True, help="Skip the remaining canary steps and promote now.")
@click.option(
    "--variant", default=None, metavar="NAME",
    help="An experiment: promote this variant (a, b, ...) instead of the verdict's winner.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the deployment as JSON on stdout.")
def promote(env: str, full: bool, variant: str | None, as_json: bool) -> None:
    """Continue a paused rollout of ENV (with --full: finish it now)."""
    request: dict[str, object] = {"op": "promote", "full": full}
    if variant:
        request["variant"] = variant
    _send(env, request, as_json, "promoted")


@click.command()
@click.argument("env")
@click.option("--json", "as_json", is_flag=True, help="Print the deployment as JSON on stdout.")
def abort(env: str, as_json: bool) -> None:
    """Stop the rollout in progress in ENV: all traffic back to the stable revision."""
    _send(env, {"op": "abort"}, as_json, "aborted")


@click.command()
@click.argument("env")
@click.option(
    "--to",
    "to",
    default=None,
    metavar="REVISION",
    help="The revision to go back to (default: the previous one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the deployment as JSON on stdout.")
def rollback(env: str, to: str | None, as_json: bool) -> None:
    """Put ENV back on an earlier revision (instant while the old one is still up)."""
    _send(env, {"op": "rollback", "to": to}, as_json, "rolled back")
