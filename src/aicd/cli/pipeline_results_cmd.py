"""`aicd pipeline artifacts` and `aicd pipeline tests`: a job's artifacts and a pipeline's test
report from an aicd server (remote mode: --server/--token)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import click

from aicd.cli.remote import Client, remote_options, segment
from aicd.cli.tables import table as _table
from aicd.cli.terminal import clean_lines
from aicd.errors import AicdError, ConfigError


def _inside(root: Path, name: str) -> Path:
    """Where archive member `name` goes under `root`; ConfigError for a name that would leave it."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or parts[0] == "/" or ".." in parts:
        raise ConfigError(f"the artifacts archive holds an unsafe path {name!r}: nothing was unpacked")
    return root.joinpath(*parts)


def unpack(archive: Path, output: Path) -> list[str]:
    """Unpack a zip of artifacts into `output` (every path checked first); the files written."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if not m.is_dir()]
            targets = [(_inside(output, m.filename), m) for m in members]
            for target, member in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    except zipfile.BadZipFile as exc:
        raise AicdError(f"the server sent artifacts that are not a zip archive: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot write the artifacts into {output}: {exc.strerror or exc}") from None
    return [m.filename for _, m in targets]


@click.command("artifacts")
@click.argument("project")
@click.argument("job_id", type=int)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to unpack into (default: the current folder). With --path: save the file there.",
)
@click.option("--path", "file_path", default=None, metavar="FILE", help="Only this file (to stdout).")
@remote_options
def artifacts(
    project: str,
    job_id: int,
    output: Path | None,
    file_path: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Download job JOB_ID's artifacts and unpack them, or print one file of them (--path)."""
    base = f"/projects/{segment(project)}/jobs/{job_id}/artifacts"
    with Client(server, token) as client:
        if file_path is not None:
            clean = file_path.strip("/")
            if not clean:
                raise ConfigError("--path: give the path of a file in the artifacts, e.g. dist/app.txt")
            remote = base + "/" + "/".join(segment(p) for p in clean.split("/"))
            if output is None:
                client.download(remote, sys.stdout.buffer)
                sys.stdout.buffer.flush()
                return
            target = _inside(output, clean)
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".aicd-", delete=False) as sink:
                scratch = Path(sink.name)
                try:
                    client.download(remote, sink)
                except BaseException:
                    sink.close()
                    scratch.unlink(missing_ok=True)
                    raise
            scratch.replace(target)
            click.echo(clean_lines(f"saved {target}"), err=True)
            return
        folder = Path(".") if output is None else output
        with tempfile.TemporaryDirectory(prefix="aicd-artifacts-") as scratch_dir:
            archive = Path(scratch_dir) / "artifacts.zip"
            with open(archive, "wb") as sink:
                client.download(base, sink)
            folder.mkdir(parents=True, exist_ok=True)
            written = unpack(archive, folder)
    plural = "" if len(written) == 1 else "s"
    click.echo(
        clean_lines(f"job {job_id}: {len(written)} artifact file{plural} unpacked into {folder}"), err=True
    )


@click.command("tests")
@click.argument("project")
@click.argument("pipeline_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@remote_options
def tests(project: str, pipeline_id: int, as_json: bool, server: str | None, token: str | None) -> None:
    """Show pipeline PIPELINE_ID's test report: one line per job with JUnit results, then the
    tests that failed."""
    with Client(server, token) as client:
        report: dict[str, Any] = client.get(
            f"/projects/{segment(project)}/pipelines/{pipeline_id}/test_report"
        )
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    suites = report["test_suites"]
    if not suites:
        click.echo(
            clean_lines(f"pipeline {pipeline_id} has no test report (no job with artifacts:reports:junit)")
        )
        return
    header = ("job", "job id", "total", "passed", "failed", "errors", "skipped", "time")
    rows: list[tuple[object, ...]] = [
        (
            s["name"],
            s["job_id"],
            s["total_count"],
            s["success_count"],
            s["failed_count"],
            s["error_count"],
            s["skipped_count"],
            f"{s['total_time']:.2f} s",
        )
        for s in suites
    ]
    rows.append(
        (
            "total",
            "",
            report["total_count"],
            report["success_count"],
            report["failed_count"],
            report["error_count"],
            report["skipped_count"],
            f"{report['total_time']:.2f} s",
        )
    )
    _table(rows, header)
    for suite in suites:
        for case in suite["test_cases"]:
            if case["status"] in ("failed", "error"):
                name = f"{case['classname']}.{case['name']}" if case["classname"] else case["name"]
                click.echo(clean_lines(f"{case['status'].upper()} {suite['name']}: {name}"))


__all__ = ["artifacts", "tests", "unpack"]
