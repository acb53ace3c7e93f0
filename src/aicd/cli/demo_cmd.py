"""`aicd demo`: the whole delivery loop of the example AI service, from nothing, in one command."""

from __future__ import annotations

import sys

import click

from aicd.cli.tables import echo_json


@click.command()
@click.option("--keep", is_flag=True, help="Leave the services running and the demo's folder in place.")
@click.option(
    "--json", "as_json", is_flag=True, help="Progress on stderr; one JSON summary on stdout at the end."
)
@click.option(
    "--clients", type=click.IntRange(1, 16), default=2, show_default=True,
    help="Threads of generated traffic on production.",
)  # fmt: skip
def demo(keep: bool, as_json: bool, clients: int) -> None:
    """Deliver the example AI service end to end in a temporary folder (under 3 minutes).

    A Git repository from the example iris service; its pipeline (train, test, gate, register,
    deploy to staging, production, promote); generated traffic on production; a better model
    canaried and promoted under that traffic; a worse model stopped by the gate; a faulty service
    caught by canary analysis and rolled back. Then the deployments, the incident and the
    reliability figures. Everything is stopped and deleted at the end unless --keep.
    """
    from aicd.demo.story import DemoOptions, Terminated, run_demo, terminate_on_sigterm

    undo = terminate_on_sigterm()
    try:
        summary = run_demo(DemoOptions(keep=keep, workers=clients), sys.stderr if as_json else sys.stdout)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        click.echo(f"aicd demo: {'terminated' if terminated else 'interrupted'}", err=True)
        sys.exit(143 if terminated else 130)
    finally:
        undo()
    if as_json:
        echo_json(summary)
