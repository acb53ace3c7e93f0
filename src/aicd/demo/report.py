"""What the demo shows at the end: pipelines, deployments, incidents, reliability, traffic.

The figures come from the store the pipelines' deploy jobs wrote (the same one `aicd env` and
`aicd metrics` read); the deployment history and the reliability tables are the real commands'
output, so what the demo prints is what a person would see typing them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from aicd.demo.pipeline import PipelineRun
from aicd.reliability.humanize import format_duration

Echo = Callable[[str], None]
Json = dict[str, Any]
_DEPLOYMENT_FIELDS = (
    "id", "number", "revision", "previous_revision", "strategy", "status", "reason", "commit_sha",
    "pipeline_id", "job_id", "started_at", "finished_at",
)  # fmt: skip


def gather(database_url: str) -> Json:
    """Environments, deployments (oldest first), incidents and the reliability report, as JSON."""
    from aicd.reliability.report import DEFAULT_SINCE, build_report, parse_since, parse_time
    from aicd.store.deployments import open_deploy_store

    until = parse_time(None)
    with open_deploy_store(database_url) as store:
        environments = store.list_environments(scope="")
        deployments = {
            env.name: [
                {k: v for k, v in d.to_json().items() if k in _DEPLOYMENT_FIELDS}
                for d in reversed(store.list_deployments(environment=env.name, scope="", limit=1000))
            ]
            for env in environments
        }
        incidents = [i.to_json() for i in store.list_incidents(scope="")]
        report = build_report(
            store, environments, since=parse_since(DEFAULT_SINCE, until), until=until
        ).to_json()
    return {
        "environments": {
            e.name: {"url": e.url, "status": e.status, "stable_revision": e.stable_revision}
            for e in environments
        },
        "deployments": deployments,
        "incidents": incidents,
        "metrics": report,
    }


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> list[str]:
    cells = [[str(c) for c in header], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def pipelines_table(runs: Sequence[PipelineRun]) -> list[str]:
    rows = []
    for run in runs:
        failed = [name for name, status in run.jobs.items() if status == "failed"]
        outcome = run.status + (f" at {', '.join(failed)}" if failed else "")
        rows.append(
            (f"#{run.pipeline_id}", run.commit[:8], run.title, outcome, run.expected, f"{run.seconds:.1f}s")
        )
    return table(rows, ("PIPELINE", "COMMIT", "CHANGE", "RESULT", "AS EXPECTED", "TOOK"))


def incidents_table(incidents: Sequence[Json]) -> list[str]:
    rows = []
    for i in incidents:
        opened, resolved = i["opened_at"], i.get("resolved_at")
        took = format_duration(resolved - opened) if resolved is not None else "open"
        rows.append(
            (f"#{i['id']}", i["environment"], i["kind"], i["title"], _clock(opened),
             _clock(resolved) if resolved else "-", took, i.get("cause") or "")
        )  # fmt: skip
    return table(rows, ("#", "ENVIRONMENT", "KIND", "TITLE", "OPENED", "RESOLVED", "TO RESTORE", "CAUSE"))


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")


def cli_output(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> list[str]:
    """The lines a real `aicd ARGS` prints in the demo's repository (its error, if it fails)."""
    done = subprocess.run(
        [sys.executable, "-m", "aicd.cli.main", *args],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = done.stdout if done.returncode == 0 else (done.stderr or done.stdout)
    return text.rstrip("\n").splitlines()


def show(echo: Echo, title: str, lines: Sequence[str]) -> None:
    echo("")
    echo(title)
    for line in lines:
        echo(f"  {line}")
