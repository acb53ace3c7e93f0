"""`aicd worker`: a worker host's process, for a runner an admin registered.

Today it checks in with the server (POST /runners/verify, with the runner token
in the `RUNNER-TOKEN` header) at start and then every CHECK_IN_S seconds, which
keeps its runner `online` in `aicd runner list` with its version and host.
Taking jobs from the broker is not built yet (docs/workers.md). SIGTERM or
Ctrl-C ends it (exit 0). A server that cannot be reached for a while is retried;
a token the server no longer knows (the runner was deleted) ends it with 1.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click
import httpx

from aicd import __version__
from aicd.cli.remote import check
from aicd.cli.terminal import clean_lines
from aicd.errors import AicdError, AuthError, ConfigError
from aicd.triggers.mirror import redact

CHECK_IN_S = 20.0  # well within the minute that makes a runner "online"
TIMEOUT_S = 10.0


def _check_token(token: str | None) -> str:
    if not token or not token.strip():
        raise ConfigError(
            "no runner token: pass --token or set AICD_RUNNER_TOKEN (aicd runner register makes one)"
        )
    token = token.strip()
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(
            "the runner token contains a space, a control or a non-ASCII character: check how it was copied"
        )
    return token


class CheckIn:
    """One runner's check-ins with the server."""

    def __init__(self, server: str, token: str) -> None:
        server = server.strip().rstrip("/")
        if not server.startswith(("http://", "https://")):
            server = "http://" + server
        self.server = server
        self.shown = redact(server)  # what messages name: no user:password@, no query values
        if not server.isascii() or not server.isprintable():
            raise ConfigError(
                "the server URL has control or non-ASCII characters; give e.g. http://127.0.0.1:8080"
            )
        try:
            self._http = httpx.Client(
                base_url=f"{server}/api/v1", headers={"RUNNER-TOKEN": token}, timeout=TIMEOUT_S
            )
        except (httpx.InvalidURL, ValueError):
            raise ConfigError(f"server URL {self.shown}: not a valid URL") from None

    def close(self) -> None:
        self._http.close()

    def once(self) -> dict[str, Any]:
        """Check in; the runner as the server knows it. AicdError (AuthError: token refused)."""
        body = {"version": __version__, "host": socket.gethostname()}
        try:
            response = self._http.post("/runners/verify", json=body)
        except httpx.HTTPError as exc:
            raise AicdError(f"cannot reach the aicd server at {self.shown}: {type(exc).__name__}") from None
        check(response)
        runner: dict[str, Any] = response.json()
        return runner


def _home(given: str | None) -> Path:
    text = (given or "").strip()
    return Path(text).expanduser().resolve() if text else Path.home() / ".aicd-worker"


@click.command("worker")
@click.option("--server", envvar="AICD_SERVER", help="The aicd server's URL (AICD_SERVER).")
@click.option(
    "--token", envvar="AICD_RUNNER_TOKEN", help="The runner's token (AICD_RUNNER_TOKEN; keep it off `ps`)."
)
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True, help="Jobs at once.")
@click.option(
    "--broker",
    envvar="AICD_BROKER_URL",
    help="The broker the server sends jobs through (AICD_BROKER_URL); without it the worker only checks in.",
)
@click.option(
    "--home",
    envvar="AICD_HOME",
    help="The worker's own folder: builds, cache (AICD_HOME; default ~/.aicd-worker).",
)
@click.option(
    "--unsafe-no-sandbox",
    is_flag=True,
    envvar="AICD_UNSAFE_NO_SANDBOX",
    help="Run jobs unsandboxed as this user (only if every pusher is trusted).",
)
@click.option("--check-in-interval", type=click.FloatRange(min=0.1), default=CHECK_IN_S, hidden=True)
def worker(
    server: str | None,
    token: str | None,
    concurrency: int,
    broker: str | None,
    home: str | None,
    unsafe_no_sandbox: bool,
    check_in_interval: float,
) -> None:
    """Run a worker for a registered runner (aicd runner register): takes its jobs from the broker."""
    if not server or not server.strip():
        raise ConfigError("no aicd server given: pass --server URL or set AICD_SERVER")
    runner_token = _check_token(token)
    client = CheckIn(server, runner_token)
    broker = (broker or "").strip() or None
    try:
        runner = client.once()
        tags = ", ".join(runner["tags"]) or "no tags"
        untagged = "; untagged jobs too" if runner["run_untagged"] else ""
        doing = (
            f"taking jobs from the broker at {redact(broker)}"
            if broker
            else "no broker given (AICD_BROKER_URL): checking in only, taking no job"
        )
        click.echo(
            clean_lines(
                f"runner {runner['id']} ({tags}{untagged}) online at {client.shown}, pid {os.getpid()}, "
                f"concurrency {concurrency}; {doing}"
            ),
            err=True,
        )
        if broker is None:
            _check_in_only(client, check_in_interval)
        else:
            _serve(
                client,
                runner,
                runner_token,
                broker,
                concurrency,
                _home(home),
                unsafe_no_sandbox,
                check_in_interval,
            )
    finally:
        client.close()
    click.echo("worker stopped", err=True)


def _check_in_only(client: CheckIn, interval: float) -> None:
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop.wait(interval):
        try:
            client.once()
        except AuthError:
            raise
        except AicdError as exc:  # the server restarts, the network blinks: try again later
            click.echo(clean_lines(f"warning: check-in failed: {exc}"), err=True)


def _serve(
    client: CheckIn,
    runner: dict[str, Any],
    token: str,
    broker: str,
    concurrency: int,
    home: Path,
    unsafe_no_sandbox: bool,
    interval: float,
) -> None:
    from aicd.executors.sandbox import probe
    from aicd.workers.api import WorkerApi
    from aicd.workers.attempt import WorkerConfig
    from aicd.workers.service import serve

    sandbox = None
    if not unsafe_no_sandbox:
        sandbox = probe()
        if not sandbox.ok:
            raise ConfigError(
                f"jobs cannot be sandboxed here: {sandbox.reason}. Fix that, or start the worker with "
                "--unsafe-no-sandbox if every pusher is trusted"
            )
    else:
        click.echo("warning: UNSAFE: jobs run unsandboxed as this user", err=True)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    stop = threading.Event()
    refused: list[str] = []

    def check_ins() -> None:
        while not stop.wait(interval):
            try:
                client.once()
            except AuthError as exc:
                refused.append(str(exc))
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except AicdError as exc:
                click.echo(clean_lines(f"warning: check-in failed: {exc}"), err=True)

    thread = threading.Thread(target=check_ins, name="aicd-check-in", daemon=True)
    thread.start()
    config = WorkerConfig(home=home, server=client.server, sandbox=sandbox)
    try:
        serve(
            api=WorkerApi(client.server, token),
            broker_url=broker,
            queues=list(runner["queues"]),
            concurrency=concurrency,
            config=config,
            runner_id=int(runner["id"]),
        )
    finally:
        stop.set()
    if refused:
        raise AuthError(refused[0])
