"""`aicd runs`, `aicd show`, `aicd logs`: read the run history."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from aicd.cli.terminal import clean, clean_lines, markup, text
from aicd.core.local_run import open_store
from aicd.core.run_owner import reap_stale_runs
from aicd.errors import NotFoundError
from aicd.suggest import did_you_mean


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _dur(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{b - a:.2f} s"


def runs_command(project_dir: Path, limit: int, as_json: bool) -> None:
    store, home = open_store(project_dir)
    try:
        reap_stale_runs(store, home)  # runs whose aicd run process is gone: failed
        records = store.list_pipelines(project_dir=str(project_dir), limit=limit)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps([r.__dict__ for r in records]) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"runs of {markup(project_dir)}", title_justify="left")
    for col in ("run", "status", "ref", "commit", "created", "duration"):
        table.add_column(col)
    for r in records:
        cells = (r.id, r.status, r.ref, r.sha[:8], _when(r.created_at), _dur(r.started_at, r.finished_at))
        table.add_row(*(text(c) for c in cells))
    Console(highlight=False).print(table)


def show_command(project_dir: Path, run_id: int, as_json: bool) -> None:
    store, _ = open_store(project_dir)
    try:
        record = store.get_pipeline(run_id)
        jobs = store.list_jobs(run_id)
    finally:
        store.close()
    if as_json:
        payload = {"pipeline": record.__dict__, "jobs": [j.__dict__ for j in jobs]}
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(
        text(f"run {record.id} (#{record.iid}) {record.status}: {record.ref} {record.sha[:8]} {record.file}")
    )
    if record.error:
        console.print(clean_lines(record.error), markup=False)
    table = Table(title_justify="left")
    for col in ("job", "stage", "status", "attempt", "exit", "duration", "tests"):
        table.add_column(col)
    for j in jobs:
        tests = "" if j.tests_total is None else f"{j.tests_passed} passed, {j.tests_failed} failed"
        status = j.status + (" (allowed)" if j.status == "failed" and j.allow_failure else "")
        status += " (retried)" if j.retried else ""
        cells = (
            j.name,
            j.stage,
            status,
            j.attempt,
            "" if j.exit_code is None else j.exit_code,
            _dur(j.started_at, j.finished_at),
            tests,
        )
        table.add_row(*(text(c) for c in cells))
    console.print(table)


def logs_command(project_dir: Path, run_id: int, job: str | None) -> None:
    store, _ = open_store(project_dir)
    try:
        jobs = store.list_jobs(run_id)
    finally:
        store.close()
    if job is not None:
        chosen = [j for j in jobs if j.name == job]
        if not chosen:
            hint = did_you_mean(job, [j.name for j in jobs])
            raise NotFoundError(f'run {run_id} has no job "{job}"{hint}')
    else:
        chosen = jobs
    for j in chosen:
        if job is None:
            sys.stdout.write(f"==> {clean(j.name)} (attempt {j.attempt}, {j.status}) <==\n")
        if j.log_path and Path(j.log_path).is_file():
            sys.stdout.write(Path(j.log_path).read_text(encoding="utf-8", errors="replace"))
        elif job is not None:
            raise NotFoundError(f'job "{j.name}" of run {run_id} has no log (it did not run)')
    sys.stdout.flush()
