"""The `aicd` command tree (click). Thin: parse flags, call the core, draw the result.

Imports of heavy modules happen inside commands so that `aicd --help` and
every command start fast. The program's entry point is `aicd.cli.main`: a plain
`aicd run` starts there without importing click (`aicd.cli.run_entry`).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from aicd import __version__
from aicd.cli.run_entry import error_message, fast_start, project_dir, run_pipeline
from aicd.errors import AicdError

# Command groups that live in their own modules, imported only when used:
# name -> "module:attribute" (a click.Command).
_LAZY_COMMANDS = {
    "server": "aicd.cli.server_cmd:server",
    "ui": "aicd.cli.ui_cmd:ui",
    "project": "aicd.cli.project_cmd:project",
    "pipeline": "aicd.cli.pipeline_cmd:pipeline",
    "user": "aicd.cli.user_cmd:user",
    "token": "aicd.cli.user_cmd:token",
    "audit": "aicd.cli.user_cmd:audit",
    "model": "aicd.cli.model_cmd:model",
    "judge": "aicd.cli.judge_cmd:judge",
    "metrics": "aicd.cli.metrics_cmd:metrics",
    "deploy": "aicd.cli.deploy_cmd:deploy",
    "promote": "aicd.cli.deploy_cmd:promote",
    "abort": "aicd.cli.deploy_cmd:abort",
    "rollback": "aicd.cli.deploy_cmd:rollback",
    "env": "aicd.cli.env_cmd:env",
    "demo": "aicd.cli.demo_cmd:demo",
    "monitor": "aicd.cli.monitor_cmd:monitor",
    "incident": "aicd.cli.incident_cmd:incident",
    "runner": "aicd.cli.runner_cmd:runner",
    "worker": "aicd.cli.worker_cmd:worker",
    "hooks": "aicd.cli.hooks_cmd:hooks",
    "daemon": "aicd.cli.daemon.command:daemon",
}


class _Group(click.Group):
    """Turns AicdError into one clear message and an exit code, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_lazy_available()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in _lazy_available():
            return found
        import importlib

        module_name, attribute = _LAZY_COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except AicdError as exc:
            click.echo(error_message(exc), err=True)
            sys.exit(exc.exit_code)


def _lazy_available() -> list[str]:
    """The lazy commands whose module is installed (found without importing it)."""
    import importlib.util

    return [name for name, target in _LAZY_COMMANDS.items() if importlib.util.find_spec(target.split(":")[0])]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aicd")
def cli() -> None:
    """aicd: continuous delivery for AI services.

    Runs a repository's .gitlab-ci.yml pipeline locally with GitLab CI
    semantics, and keeps the history of every run.
    """


_F = TypeVar("_F", bound=Callable[..., Any])


@cli.command()
@click.argument("jobs", nargs=-1)
@click.option("--file", "-f", "file", default=".gitlab-ci.yml", show_default=True, help="Pipeline file.")
@click.option("--cwd", "-C", default=None, help="Project directory (default: the current one).")
@click.option(
    "--variable", "-v", "variables", multiple=True, metavar="KEY=VALUE", help="Pipeline variable (repeat)."
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="Masked pipeline variable; without =VALUE it is read from the environment.",
)
@click.option(
    "--variables-file",
    "variables_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="YAML or .env file of pipeline variables (repeat).",
)
@click.option("--manual", "manual", multiple=True, metavar="JOB", help="Play this manual job (repeat).")
@click.option("--needs", "with_needs", is_flag=True, help="With JOB arguments: also run the jobs they need.")
@click.option("--commit", default=None, help="Run the pipeline of this commit instead of the working tree.")
@click.option("--concurrency", "-j", type=click.IntRange(1, 1024), default=None, help="Jobs at once.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout; job output on stderr."
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Run nothing: list the jobs the pipeline would have (as `aicd lint --list`).",
)
@click.option(
    "--isolate",
    is_flag=True,
    help="Run every job in the sandbox (bubblewrap), as a server does: it sees its workspace, the system "
    "and the project's .aicd store, not your home or other files.",
)
@click.option(
    "--untracked",
    is_flag=True,
    help="Jobs also get the untracked files of the working tree that git does not ignore "
    "(by default a job gets the tracked files, as in GitLab).",
)
def run(
    jobs: tuple[str, ...],
    file: str,
    cwd: str | None,
    variables: tuple[str, ...],
    secrets: tuple[str, ...],
    variables_files: tuple[str, ...],
    manual: tuple[str, ...],
    with_needs: bool,
    commit: str | None,
    concurrency: int | None,
    as_json: bool,
    dry_run: bool,
    isolate: bool,
    untracked: bool,
) -> None:
    """Run the pipeline (or JOBS) of the project here, like GitLab CI would."""
    if not dry_run:
        run_pipeline(
            jobs=jobs,
            file=file,
            cwd=cwd,
            variables=variables,
            secrets=secrets,
            variables_files=variables_files,
            manual=manual,
            with_needs=with_needs,
            commit=commit,
            concurrency=concurrency,
            as_json=as_json,
            isolate=isolate,
            untracked=untracked,
        )
        return
    from aicd.cli.lint_cmd import lint_command
    from aicd.core.variables_input import parse_pipeline_variables
    from aicd.errors import ConfigError

    where = project_dir(cwd)
    pipeline_vars = parse_pipeline_variables(variables, secrets, variables_files, where)
    if jobs or manual or commit:
        raise ConfigError(
            "--dry-run lists the whole pipeline of the working tree: drop JOB, --manual, --commit"
        )
    sys.exit(lint_command(where, file, as_json, list_jobs=True, variables=pipeline_vars))


@cli.command()
@click.option("--file", "-f", "file", default=".gitlab-ci.yml", show_default=True, help="Pipeline file.")
@click.option("--cwd", "-C", default=None, help="Project directory (default: the current one).")
@click.option("--json", "as_json", is_flag=True, help="Print diagnostics and the job list as JSON.")
@click.option(
    "--list",
    "list_jobs",
    is_flag=True,
    help="List the jobs the pipeline would have (stage, when, allow_failure, needs, the rule).",
)
@click.option(
    "--source",
    default="push",
    show_default=True,
    metavar="SOURCE",
    help="CI_PIPELINE_SOURCE: push, merge_request_event, schedule, tag, web, api, parent_pipeline...",
)
@click.option("--branch", default=None, help="A pipeline for this branch (default: the checkout's).")
@click.option("--tag", default=None, help="A pipeline for this tag.")
@click.option(
    "--target-branch",
    default=None,
    help="With --source merge_request_event: the target branch (default: the default branch).",
)
@click.option(
    "--variable", "-v", "variables", multiple=True, metavar="KEY=VALUE", help="Pipeline variable (repeat)."
)
@click.option(
    "--variables-file",
    "variables_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="YAML or .env file of pipeline variables (repeat).",
)
def lint(
    file: str,
    cwd: str | None,
    as_json: bool,
    list_jobs: bool,
    source: str,
    branch: str | None,
    tag: str | None,
    target_branch: str | None,
    variables: tuple[str, ...],
    variables_files: tuple[str, ...],
) -> None:
    """Check the pipeline file and report every problem at once; with --list, list its jobs."""
    from aicd.cli.lint_cmd import lint_command
    from aicd.core.variables_input import parse_pipeline_variables

    where = project_dir(cwd)
    pipeline_vars = parse_pipeline_variables(variables, (), variables_files, where)
    code = lint_command(
        where,
        file,
        as_json,
        list_jobs=list_jobs,
        source=source,
        branch=branch,
        tag=tag,
        target_branch=target_branch,
        variables=pipeline_vars,
    )
    sys.exit(code)


def _remote_history(func: _F) -> _F:
    """--project/--server/--token: read the history of a project of an aicd server instead."""
    func = click.option("--token", envvar="AICD_TOKEN", default=None, help="API token (env AICD_TOKEN).")(
        func
    )
    func = click.option(
        "--server", envvar="AICD_SERVER", default=None, metavar="URL", help="aicd server (env AICD_SERVER)."
    )(func)
    return click.option("--project", "-p", default=None, help="A project of the aicd server.")(func)


def _remote(project: str | None) -> bool:
    """Remote mode: with --project, or with --server on the command line (env alone does not switch)."""
    from click.core import ParameterSource

    given = click.get_current_context().get_parameter_source("server") == ParameterSource.COMMANDLINE
    if given and project is None:
        raise AicdError("--server: give the server's project with --project NAME")
    return project is not None


@cli.command()
@click.option("--cwd", "-C", default=None, help="Project directory (default: the current one).")
@click.option("--limit", "-n", default=20, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True)
@_remote_history
def runs(
    cwd: str | None, limit: int, as_json: bool, project: str | None, server: str | None, token: str | None
) -> None:
    """List recent pipeline runs of the project."""
    if _remote(project):
        from aicd.cli.pipeline_cmd import runs_remote

        return runs_remote(server, token, str(project), limit, as_json)
    from aicd.cli.history_cmd import runs_command

    runs_command(project_dir(cwd), limit, as_json)


@cli.command()
@click.argument("run_id", type=int)
@click.option("--cwd", "-C", default=None, help="Project directory (default: the current one).")
@click.option("--json", "as_json", is_flag=True)
@_remote_history
def show(
    run_id: int, cwd: str | None, as_json: bool, project: str | None, server: str | None, token: str | None
) -> None:
    """Show one run: its jobs, statuses, durations and tests."""
    if _remote(project):
        from aicd.cli.pipeline_cmd import show_remote

        return show_remote(server, token, str(project), run_id, as_json)
    from aicd.cli.history_cmd import show_command

    show_command(project_dir(cwd), run_id, as_json)


@cli.command()
@click.argument("run_id", type=int)
@click.argument("job", required=False)
@click.option("--cwd", "-C", default=None, help="Project directory (default: the current one).")
@_remote_history
def logs(
    run_id: int, job: str | None, cwd: str | None, project: str | None, server: str | None, token: str | None
) -> None:
    """Print the log of JOB in run RUN_ID (every job's log without JOB)."""
    if _remote(project):
        from aicd.cli.pipeline_cmd import logs_remote

        return logs_remote(server, token, str(project), run_id, job)
    from aicd.cli.history_cmd import logs_command

    logs_command(project_dir(cwd), run_id, job)


@cli.command()
@click.argument("metrics_file")
@click.option(
    "--config", "config", default=None, help="Config file with 'gates:' (default: aicd.yml if it exists)."
)
@click.option(
    "--baseline",
    "baseline",
    default=None,
    help="Baseline: a metrics file, or a registered model such as models:/iris@production.",
)
@click.option("--min", "mins", multiple=True, metavar="METRIC=VALUE", help="Lowest allowed value (repeat).")
@click.option("--max", "maxes", multiple=True, metavar="METRIC=VALUE", help="Highest allowed value (repeat).")
@click.option(
    "--max-drop",
    "max_drops",
    multiple=True,
    metavar="METRIC=VALUE[%]",
    help="Largest allowed regression from the baseline, absolute or in % (repeat).",
)
@click.option(
    "--lower-is-better", "lower_is_better", multiple=True, metavar="METRIC", help="A rise is a regression."
)
@click.option(
    "--report", default="gate-report.json", show_default=True, help="Report file to write ('' for none)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def gate(
    metrics_file: str,
    config: str | None,
    baseline: str | None,
    mins: tuple[str, ...],
    maxes: tuple[str, ...],
    max_drops: tuple[str, ...],
    lower_is_better: tuple[str, ...],
    report: str,
    as_json: bool,
) -> None:
    """Check METRICS_FILE (JSON or OpenMetrics) against quality gates: exit 0 ship, 1 do not, 2 bad input."""
    from aicd.cli.gate_cmd import gate_command

    code = gate_command(
        cwd=Path.cwd(),
        metrics_file=metrics_file,
        config=config,
        baseline_file=baseline,
        mins=mins,
        maxes=maxes,
        max_drops=max_drops,
        lower_is_better=lower_is_better,
        report=report or None,
        as_json=as_json,
    )
    sys.exit(code)


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.option("--cwd", "-C", default=None, help="Project directory (default: the current one).")
def db_upgrade(cwd: str | None) -> None:
    """Apply pending migrations to the run-history database."""
    from aicd.config import load_settings
    from aicd.store.migrate import current_revision, upgrade

    settings = load_settings()
    url = settings.database_url_for(settings.home_for(project_dir(cwd)))
    upgrade(url)
    click.echo(f"database at revision {current_revision(url)}")


def main() -> None:
    """The click program (`aicd.cli.main` comes here for every command line it does not run itself)."""
    if sys.argv[1:2] == ["run"]:
        fast_start()  # `run` turns the collector back on once its modules are loaded
    try:
        cli(prog_name="aicd")
    finally:
        gc.enable()
