"""`aicd ui`: the web UI over a local home (what `aicd run`, `aicd deploy`, `aicd model` wrote)."""

from __future__ import annotations

import click


@click.command("ui")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="The local home to show (env AICD_HOME; default: .aicd/ of the current folder, as `aicd run`).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8090, show_default=True, help="Port (0: a free one)."
)
@click.option(
    "--log-level",
    type=click.Choice(("critical", "error", "warning", "info", "debug")),
    default="warning",
    show_default=True,
)
def ui(home: str | None, host: str, port: int, log_level: str) -> None:
    """Show the local history in the browser: pipelines, jobs and logs, environments, models, reliability.

    Prints the address to open: it holds a key made at each launch, which signs you in as the local
    user (another user of this machine cannot act without it).
    """
    import dataclasses
    from pathlib import Path

    from aicd.cli.server_cmd import serve
    from aicd.config import load_settings
    from aicd.server.settings import ServerSettings
    from aicd.web.local import check_home

    local = load_settings()
    where = Path(home).expanduser().resolve() if home else local.home_for(Path.cwd())
    if not local.database_url:  # a database elsewhere (AICD_DATABASE_URL): nothing to check here
        check_home(where)
    settings = ServerSettings.load(
        home=where,
        database_url=local.database_url_for(where),
        host=host,
        port=port,
        poll=False,
        environments=False,
    )
    if host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(
            f"aicd ui: listening on {host}, not only this machine: whoever can reach it and gets the "
            "address it prints acts as you",
            err=True,
        )
    serve(dataclasses.replace(settings, local_ui=True), log_level=log_level)
