"""`aicd pipeline`: pipelines and jobs on an aicd server (remote mode: --server/--token).

Also the remote side of `aicd runs`, `aicd show` and `aicd logs` (with --project).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import click
import httpx

from aicd.cli.remote import API_PREFIX, Client, check, check_token, remote_options, segment
from aicd.cli.tables import table as _table
from aicd.cli.terminal import clean_lines
from aicd.errors import AicdError, ConfigError, NotFoundError
from aicd.triggers.mirror import redact

FINAL = frozenset({"success", "failed", "canceled", "skipped", "manual"})
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"


def _p(project: str) -> str:
    return f"/projects/{segment(project)}"


def _parse_variables(pairs: Sequence[str], secrets: Sequence[str]) -> list[dict[str, Any]]:
    import os

    out: list[dict[str, Any]] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--variable {pair!r}: expected KEY=VALUE")
        out.append({"key": key, "value": value})
    for item in secrets:
        key, sep, value = item.partition("=")
        if not sep:
            if key not in os.environ:
                raise ConfigError(f"--secret {key}: give KEY=VALUE, or set {key} in the environment")
            value = os.environ[key]
        out.append({"key": key, "value": value, "masked": True})
    return out


def _pipeline_line(p: dict[str, Any]) -> str:
    line = f"pipeline {p['id']} (#{p['iid']}) {p['status']}: {p['project']} {p['ref']} {p['sha'][:8]}"
    return line + (f" ({p['source']})" if p.get("source") else "")


def _show_jobs(jobs: Sequence[dict[str, Any]]) -> None:
    rows = []
    for j in jobs:
        status = j["status"] + (" (allowed)" if j["status"] == "failed" and j["allow_failure"] else "")
        status += " (retried)" if j.get("retried") else ""
        tests = "" if not j.get("tests") else f"{j['tests']['passed']} passed, {j['tests']['failed']} failed"
        rows.append(
            (
                j["id"],
                j["name"],
                j["stage"],
                status,
                j["attempt"],
                j["exit_code"],
                _secs(j["duration_s"]),
                tests,
            )
        )
    _table(rows, ("id", "job", "stage", "status", "attempt", "exit", "duration", "tests"))


@click.group()
def pipeline() -> None:
    """Pipelines and jobs on an aicd server."""


@pipeline.command("trigger")
@click.argument("project")
@click.option("--ref", default=None, help="Branch or tag (default: the project's default branch).")
@click.option("--sha", default=None, help="Commit to run (default: the ref's head).")
@click.option("--variable", "-v", "variables", multiple=True, metavar="KEY=VALUE", help="Variable (repeat).")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="Masked variable; no VALUE: from the env.",
)
@click.option("--wait", is_flag=True, help="Wait for the end; exit 1 unless it succeeded.")
@json_option
@remote_options
def trigger(
    project: str,
    ref: str | None,
    sha: str | None,
    variables: tuple[str, ...],
    secrets: tuple[str, ...],
    wait: bool,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Run PROJECT's pipeline on a branch or tag."""
    body: dict[str, Any] = {"variables": _parse_variables(variables, secrets)}
    with Client(server, token) as client:
        body["ref"] = ref or client.get(_p(project))["default_branch"]
        if sha:
            body["sha"] = sha
        created = client.post(f"{_p(project)}/pipelines", json=body)
        if wait:
            created = _wait(client, project, int(created["id"]))
    if as_json:
        _json(created)
    else:
        click.echo(_pipeline_line(created))
        if created.get("error"):
            click.echo(clean_lines(created["error"]))
    if wait and created["status"] != "success":
        sys.exit(1)


def _wait(client: Client, project: str, pipeline_id: int) -> dict[str, Any]:
    while True:
        found: dict[str, Any] = client.get(f"{_p(project)}/pipelines/{pipeline_id}")
        if found["status"] in FINAL:
            return found
        time.sleep(0.5)


@pipeline.command("list")
@click.argument("project")
@click.option("--ref", default=None, help="Only this branch or tag.")
@click.option("--status", default=None, help="Only this status.")
@click.option("--limit", "-n", default=20, show_default=True, help="How many.")
@json_option
@remote_options
def list_pipelines(
    project: str,
    ref: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """List PROJECT's pipelines, newest first."""
    with Client(server, token) as client:
        found = client.get(f"{_p(project)}/pipelines", params={"ref": ref, "status": status, "limit": limit})
    if as_json:
        _json(found)
        return
    rows = [
        (
            p["id"],
            p["iid"],
            p["status"],
            p["ref"],
            p["sha"][:8],
            p["source"],
            _when(p["created_at"]),
            _secs(p["duration_s"]),
        )
        for p in found
    ]
    _table(rows, ("id", "#", "status", "ref", "commit", "source", "created", "duration"))


@pipeline.command("show")
@click.argument("project")
@click.argument("pipeline_id", type=int)
@json_option
@remote_options
def show(project: str, pipeline_id: int, as_json: bool, server: str | None, token: str | None) -> None:
    """Show one pipeline of PROJECT and its jobs."""
    with Client(server, token) as client:
        found = client.get(f"{_p(project)}/pipelines/{pipeline_id}")
        jobs = client.get(f"{_p(project)}/pipelines/{pipeline_id}/jobs")
    if as_json:
        _json({"pipeline": found, "jobs": jobs})
        return
    click.echo(_pipeline_line(found))
    if found.get("error"):
        click.echo(clean_lines(found["error"]))
    _show_jobs(jobs)


@pipeline.command("cancel")
@click.argument("project")
@click.argument("pipeline_id", type=int)
@json_option
@remote_options
def cancel(project: str, pipeline_id: int, as_json: bool, server: str | None, token: str | None) -> None:
    """Cancel a pipeline's running and waiting jobs."""
    with Client(server, token) as client:
        found = client.post(f"{_p(project)}/pipelines/{pipeline_id}/cancel")
    _json(found) if as_json else click.echo(_pipeline_line(found))


@pipeline.command("retry")
@click.argument("project")
@click.argument("pipeline_id", type=int)
@json_option
@remote_options
def retry(project: str, pipeline_id: int, as_json: bool, server: str | None, token: str | None) -> None:
    """Run a pipeline's failed and canceled jobs again."""
    with Client(server, token) as client:
        found = client.post(f"{_p(project)}/pipelines/{pipeline_id}/retry")
    _json(found) if as_json else click.echo(_pipeline_line(found))


@pipeline.group("job")
def job() -> None:
    """Act on one job: retry, play, cancel."""


def _job_action(action: str) -> click.Command:
    @job.command(action)
    @click.argument("project")
    @click.argument("job_id", type=int)
    @json_option
    @remote_options
    def command(project: str, job_id: int, as_json: bool, server: str | None, token: str | None) -> None:
        with Client(server, token) as client:
            found = client.post(f"{_p(project)}/jobs/{job_id}/{action}")
        if as_json:
            _json(found)
        else:
            click.echo(
                clean_lines(
                    f"job {found['id']} {found['name']} (attempt {found['attempt']}): {found['status']}"
                )
            )

    command.help = {
        "retry": "Run a finished job again (a new attempt).",
        "play": "Run a manual job.",
        "cancel": "Cancel a pending or running job.",
    }[action]
    return command


for _action in ("retry", "play", "cancel"):
    _job_action(_action)


@pipeline.command("logs")
@click.argument("project")
@click.argument("job_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing lines until the job ends.")
@remote_options
def logs(project: str, job_id: int, follow: bool, server: str | None, token: str | None) -> None:
    """Print a job's log (with --follow: live, until the job ends)."""
    with Client(server, token) as client:
        if not follow:
            sys.stdout.write(client.raw("GET", f"{_p(project)}/jobs/{job_id}/log").text)
            sys.stdout.flush()
            return
        status = "unknown"
        for kind, data in sse_events(client.server, token, f"{_p(project)}/jobs/{job_id}/log/stream"):
            if kind == "log":
                sys.stdout.write(data + "\n")
                sys.stdout.flush()
            elif kind == "end":
                status = json.loads(data).get("status", status)
    click.echo(clean_lines(f"job {job_id}: {status}"), err=True)
    if status != "success":
        sys.exit(1)


def sse_events(server: str, token: str | None, path: str) -> Iterator[tuple[str, str]]:
    """(event, data) of a Server-Sent Events stream of the API, until its `end` event."""
    headers = {"Authorization": f"Bearer {check_token(token)}"} if token and token.strip() else {}
    try:
        with httpx.stream(
            "GET", server + API_PREFIX + path, headers=headers, timeout=httpx.Timeout(30, read=None)
        ) as response:
            if response.status_code >= 400:
                response.read()
                check(response)
            kind, data = "message", list[str]()
            for line in response.iter_lines():
                if line.startswith(":"):
                    continue
                if line == "":
                    if data:
                        yield kind, "\n".join(data)
                        if kind == "end":
                            return
                    kind, data = "message", []
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[6:] if line.startswith("data: ") else line[5:])
    except httpx.HTTPError as exc:
        raise AicdError(
            f"cannot reach the aicd server at {redact(server)}: {redact(str(exc)) or type(exc).__name__}"
        ) from None


# -- remote mode of `aicd runs`, `aicd show`, `aicd logs` ----------------------------------------


def runs_remote(server: str | None, token: str | None, project: str, limit: int, as_json: bool) -> None:
    with Client(server, token) as client:
        found = client.get(f"{_p(project)}/pipelines", params={"limit": limit})
    if as_json:
        sys.stdout.write(json.dumps(found) + "\n")
        return
    rows = [
        (p["id"], p["status"], p["ref"], p["sha"][:8], _when(p["created_at"]), _secs(p["duration_s"]))
        for p in found
    ]
    _table(rows, ("run", "status", "ref", "commit", "created", "duration"))


def show_remote(server: str | None, token: str | None, project: str, run_id: int, as_json: bool) -> None:
    with Client(server, token) as client:
        found = client.get(f"{_p(project)}/pipelines/{run_id}")
        jobs = client.get(f"{_p(project)}/pipelines/{run_id}/jobs", params={"include_retried": True})
    if as_json:
        sys.stdout.write(json.dumps({"pipeline": found, "jobs": jobs}) + "\n")
        return
    click.echo(_pipeline_line(found))
    if found.get("error"):
        click.echo(clean_lines(found["error"]))
    _show_jobs(jobs)


def logs_remote(
    server: str | None, token: str | None, project: str, run_id: int, job_name: str | None
) -> None:
    with Client(server, token) as client:
        jobs = client.get(f"{_p(project)}/pipelines/{run_id}/jobs", params={"include_retried": True})
        if job_name is not None:
            chosen = [j for j in jobs if j["name"] == job_name]
            if not chosen:
                from aicd.suggest import did_you_mean

                hint = did_you_mean(job_name, [j["name"] for j in jobs])
                raise NotFoundError(f'run {run_id} has no job "{job_name}"{hint}')
            chosen = chosen[-1:]  # the latest attempt
        else:
            chosen = jobs
        for j in chosen:
            if job_name is None:
                sys.stdout.write(f"==> {j['name']} (attempt {j['attempt']}, {j['status']}) <==\n")
            sys.stdout.write(client.raw("GET", f"{_p(project)}/jobs/{j['id']}/log").text)
    sys.stdout.flush()


def _add_results() -> None:
    from aicd.cli.pipeline_results_cmd import artifacts, tests

    pipeline.add_command(artifacts)
    pipeline.add_command(tests)


_add_results()
