"""`aicd model`: the model registry (register, list, show, alias, download, lineage, history).

Locally the registry is the one `aicd run` keeps (AICD_HOME, AICD_DATABASE_URL, else ./.aicd/);
with --server (or AICD_SERVER) it is the aicd server's. Inside a pipeline job, `register` takes
the commit, pipeline and job from the CI_* variables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from aicd.cli.model_backends import Json, RegisterRequest, open_backend
from aicd.cli.remote import remote_options
from aicd.cli.terminal import clean_lines
from aicd.delivery.model_uri import check_alias, check_name, check_version, model_ref
from aicd.errors import AicdError, ConfigError

_cwd_option = click.option("--cwd", "-C", default=None, help="Project directory (default: the current one).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def _dir(cwd: str | None) -> Path:
    path = Path(cwd or ".").resolve()
    if not path.is_dir():
        raise AicdError(f"{path}: no such directory (--cwd)")
    return path


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")


@click.group()
def model() -> None:
    """The model registry: named models, numbered versions, movable aliases, lineage."""


@model.command()
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--metrics", "metrics", default=None, help="Metrics file (JSON or OpenMetrics) of this model.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag (repeat).")
@click.option(
    "--dataset", default=None, type=click.Path(path_type=Path), help="Data set file or folder: hashed."
)
@click.option("--dataset-hash", "dataset_hash", default=None, help="Data set hash, e.g. sha256:<hex>.")
@click.option("--description", default=None, help="Description of the model (kept on the model).")
@click.option("--alias", default=None, help="Point this alias at the new version too (e.g. staging).")
@click.option(
    "--project",
    default=None,
    help="With --server: the project a new model belongs to (default: your only project as developer; "
    "in a job: the job's).",
)
@_cwd_option
@remote_options
@_json_option
def register(
    name: str,
    path: Path,
    metrics: str | None,
    tags: tuple[str, ...],
    dataset: Path | None,
    dataset_hash: str | None,
    description: str | None,
    alias: str | None,
    project: str | None,
    cwd: str | None,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Register PATH (a model file or folder) as the next version of model NAME."""
    from aicd.delivery.registry import parse_tags

    if project is not None and not server:
        raise click.UsageError("--project needs --server (a local registry has no projects)")

    base = _dir(cwd)
    request = RegisterRequest(
        name=check_name(name),
        path=base / path,
        metrics=None if metrics is None else base / metrics,
        metrics_display=metrics,
        tags=parse_tags(tags) if tags else None,
        dataset=None if dataset is None else base / dataset,
        dataset_hash=dataset_hash,
        description=description,
        alias=None if alias is None else check_alias(alias),
        project=project,
    )
    with open_backend(base, server, token) as backend:
        version = backend.register(request)
    if as_json:
        _print_json(version)
        return
    click.echo(clean_lines(f"registered {version['uri']}{_artifact_text(version)}{_lineage_text(version)}"))
    for name_ in version.get("aliases") or []:
        click.echo(clean_lines(f"alias {name_} -> version {version['version']}"))


@model.command("list")
@click.argument("name", required=False)
@_cwd_option
@remote_options
@_json_option
def list_(name: str | None, cwd: str | None, server: str | None, token: str | None, as_json: bool) -> None:
    """List the models, or the versions of model NAME (newest first)."""
    with open_backend(_dir(cwd), server, token) as backend:
        rows = backend.list_models() if name is None else backend.list_versions(name)
    if as_json:
        _print_json(rows)
        return
    if name is None:
        _table(
            "models",
            ("model", "latest", "aliases", "created", "description"),
            [
                (
                    m["name"],
                    "" if m["latest_version"] is None else str(m["latest_version"]),
                    ", ".join(f"{a}={v}" for a, v in sorted(m["aliases"].items())),
                    _when(m["created_at"]),
                    m.get("description") or "",
                )
                for m in rows
            ],
        )
        return
    _table(
        f"versions of {name}",
        ("version", "aliases", "created", "commit", "pipeline", "job", "artifact"),
        [
            (
                str(v["version"]),
                ", ".join(v["aliases"]),
                _when(v["created_at"]),
                (v["lineage"]["commit"] or "")[:8],
                _str(v["lineage"]["pipeline_id"]),
                _str(v["lineage"]["job_id"]),
                (v["artifact"] or {}).get("name", ""),
            )
            for v in rows
        ],
    )


@model.command()
@click.argument("ref")
@click.argument("version", required=False)
@_cwd_option
@remote_options
@_json_option
def show(
    ref: str, version: str | None, cwd: str | None, server: str | None, token: str | None, as_json: bool
) -> None:
    """Show a version and its lineage: REF is models:/NAME@ALIAS, models:/NAME/N, or NAME [VERSION|ALIAS]."""
    uri = model_ref(ref, version)
    with open_backend(_dir(cwd), server, token) as backend:
        found = backend.show(uri)
    if as_json:
        _print_json(found)
        return
    _print_version(found)


@model.command()
@click.argument("name")
@click.argument("alias")
@click.argument("version", required=False)
@click.option("--delete", is_flag=True, help="Remove the alias.")
@_cwd_option
@remote_options
@_json_option
def alias(
    name: str,
    alias: str,
    version: str | None,
    delete: bool,
    cwd: str | None,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Point ALIAS of model NAME at VERSION (moving it if it exists), or remove it with --delete."""
    check_name(name)
    check_alias(alias)
    if delete and version is not None:
        raise ConfigError("--delete takes no VERSION: aicd model alias NAME ALIAS --delete")
    if not delete and version is None:
        raise ConfigError(f"which version? aicd model alias {name} {alias} VERSION (or --delete)")
    with open_backend(_dir(cwd), server, token) as backend:
        if delete:
            result = backend.delete_alias(name, alias)
        else:
            result = backend.set_alias(name, alias, check_version(version or ""))
    if as_json:
        _print_json(result)
    elif delete:
        click.echo(clean_lines(f"removed {result['uri']} (it pointed at version {result['version']})"))
    elif result["previous"] is None:
        click.echo(clean_lines(f"{result['uri']} -> version {result['version']} (new alias)"))
    elif result["previous"] == result["version"]:
        click.echo(clean_lines(f"{result['uri']} -> version {result['version']} (unchanged)"))
    else:
        click.echo(clean_lines(f"{result['uri']} moved: version {result['previous']} -> {result['version']}"))


@model.command()
@click.argument("ref")
@click.argument("version", required=False)
@click.option(
    "--output",
    "-o",
    default=".",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder to write to.",
)
@click.option("--force", is_flag=True, help="Replace a file or folder of the same name.")
@_cwd_option
@remote_options
@_json_option
def download(
    ref: str,
    version: str | None,
    output: Path,
    force: bool,
    cwd: str | None,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Write a version's artifact (file or folder, digest verified) into --output."""
    base = _dir(cwd)
    uri = model_ref(ref, version)
    with open_backend(base, server, token) as backend:
        found, path = backend.download(uri, base / output, force)
    if as_json:
        _print_json({"version": found, "path": str(path)})
        return
    click.echo(clean_lines(f"{found['uri']} -> {path} ({found['artifact']['digest'][:19]}..., verified)"))


@model.command()
@click.argument("ref", required=False)
@click.argument("version", required=False)
@click.option("--commit", default=None, metavar="SHA", help="The versions registered from this commit.")
@_cwd_option
@remote_options
@_json_option
def lineage(
    ref: str | None,
    version: str | None,
    commit: str | None,
    cwd: str | None,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Where a version came from (REF), or which versions a commit produced (--commit SHA)."""
    if (ref is None) == (commit is None):
        raise ConfigError("give a model (models:/NAME@ALIAS, NAME [VERSION]) or --commit SHA, not both")
    with open_backend(_dir(cwd), server, token) as backend:
        if commit is not None:
            rows = backend.commit_versions(commit)
        else:
            found = backend.show(model_ref(ref or "", version))
    if commit is None:
        if as_json:
            _print_json(found)
        else:
            _print_lineage(found)
        return
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo(clean_lines(f"no model version was registered from commit {commit}"))
        return
    _table(
        f"model versions from commit {commit}",
        ("version", "aliases", "commit", "ref", "pipeline", "job", "created"),
        [
            (
                v["uri"],
                ", ".join(v["aliases"]),
                (v["lineage"]["commit"] or "")[:12],
                v["lineage"]["ref"] or "",
                _str(v["lineage"]["pipeline_id"]),
                _str(v["lineage"]["job_id"]),
                _when(v["created_at"]),
            )
            for v in rows
        ],
    )


@model.command()
@click.argument("name")
@click.argument("alias", required=False)
@_cwd_option
@remote_options
@_json_option
def history(
    name: str, alias: str | None, cwd: str | None, server: str | None, token: str | None, as_json: bool
) -> None:
    """How the aliases of model NAME (or ALIAS only) moved, newest first."""
    with open_backend(_dir(cwd), server, token) as backend:
        events = backend.history(name, None if alias is None else check_alias(alias))
    if as_json:
        _print_json(events)
        return
    _table(
        f"alias history of {name}",
        ("when", "alias", "change", "by"),
        [
            (
                _when(e["at"]),
                e["alias"],
                _change(e["previous"], e["version"]),
                e["actor"],
            )
            for e in events
        ],
    )


# -- drawing ---------------------------------------------------------------------------------------


def _str(value: object) -> str:
    return "" if value is None else str(value)


def _when(ts: float | None) -> str:
    from datetime import datetime

    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _change(previous: int | None, version: int | None) -> str:
    if version is None:
        return f"{previous} -> (removed)"
    if previous is None:
        return f"(new) -> {version}"
    return f"{previous} -> {version}"


def _size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def _artifact_text(version: Json) -> str:
    artifact = version.get("artifact")
    if not artifact:
        return ""
    return f" ({artifact['name']}, {_size(artifact['size'])}, {artifact['digest'][:19]}...)"


def _lineage_text(version: Json) -> str:
    lin = version["lineage"]
    parts = []
    if lin["commit"]:
        parts.append(f"commit {lin['commit'][:8]}")
    if lin["pipeline_id"] is not None:
        parts.append(f"pipeline {lin['pipeline_id']}")
    if lin["job_id"] is not None:
        parts.append(f"job {lin['job_id']}")
    return f" from {', '.join(parts)}" if parts else ""


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from aicd.cli.terminal import markup, text

    table = Table(title=markup(title), title_justify="left")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(text(cell) for cell in row))
    Console(highlight=False).print(table)


def _lineage_rows(v: Json) -> list[tuple[str, str]]:
    lin = v["lineage"]
    rows = [
        ("commit", lin["commit"] or "(unknown)"),
        ("ref", lin["ref"] or ""),
        ("project", lin["project"] or ""),
        ("pipeline", _str(lin["pipeline_id"])),
        ("job", _str(lin["job_id"])),
        ("pipeline url", lin["pipeline_url"] or ""),
        ("data set", lin["dataset_hash"] or ""),
        ("registered by", lin["created_by"] or ""),
    ]
    run = v.get("pipeline")
    if run:
        job = run.get("job")
        text = f"run {run['id']} (#{run['iid']}) {run['status']} on {run['ref']} in {run['project_dir']}"
        if job:
            text += f"; job {job['name']} {job['status']}"
        rows.append(("run", text))
    return [(k, val) for k, val in rows if val]


def _print_version(v: Json) -> None:
    from rich.console import Console
    from rich.table import Table

    from aicd.cli.terminal import text

    console = Console(highlight=False)
    aliases = f" [{', '.join(v['aliases'])}]" if v["aliases"] else ""
    console.print(text(f"{v['uri']}{aliases}  registered {_when(v['created_at'])}"))
    artifact = v.get("artifact")
    facts = Table(show_header=False, box=None)
    facts.add_column(style="bold")
    facts.add_column()
    if artifact:
        facts.add_row("artifact", text(f"{artifact['name']} ({_size(artifact['size'])})"))
        facts.add_row("digest", text(artifact["digest"]))
    for key, value in _lineage_rows(v):
        facts.add_row(key, text(value))
    for key, value in sorted((v.get("tags") or {}).items()):
        facts.add_row(text(f"tag {key}"), text(value))
    console.print(facts)
    if v.get("metrics"):
        metrics = Table(title="metrics", title_justify="left")
        metrics.add_column("metric")
        metrics.add_column("value", justify="right")
        for key, value in v["metrics"].items():
            metrics.add_row(text(key), f"{value:.6g}")
        console.print(metrics)


def _print_lineage(v: Json) -> None:
    click.echo(clean_lines(f"{v['uri']}" + (f" [{', '.join(v['aliases'])}]" if v["aliases"] else "")))
    width = max((len(k) for k, _ in _lineage_rows(v)), default=0)
    for key, value in _lineage_rows(v):
        click.echo(clean_lines(f"  {key.ljust(width)}  {value}"))
