"""Drawing runs on the terminal: live lines, the summary table, diagnostics.

Plain mode (not a terminal, or --json) prints `JOB $ command` and
`JOB > output` lines, the shape gitlab-ci-local users know, with no colour;
aicd's own notes about a job (artifacts, cache, after_script) are
`JOB | note`, so they are never mistaken for the job's output.
On a terminal, rich colours each job's prefix and draws the final table.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from aicd.cli.terminal import clean, clean_lines, markup, text
from aicd.engine.status import failure_allowed
from aicd.errors import Diagnostic
from aicd.executors.base import JobOutcome
from aicd.executors.script import terminal_view
from aicd.pipeline.ir import Job, Pipeline
from aicd.store.records import PipelineRecord

if TYPE_CHECKING:
    from aicd.core.local_run import RunResult

_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta", "bright_green")
_STATUS_STYLE = {
    "success": "green",
    "failed": "red",
    "canceled": "yellow",
    "skipped": "dim",
    "manual": "blue",
    "created": "dim",
    "pending": "dim",
    "running": "cyan",
}


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


class ConsoleObserver:
    """A RunObserver that prints as the pipeline runs.

    In plain mode, inside the run's event loop, lines are gathered for ``BATCH_S`` and written
    together: one write (and one wake-up of whatever reads the pipe) instead of one per line
    (200 quick jobs print ~1,000 lines in ~0.3 s). :meth:`flush` writes what is gathered; the
    run calls it when the pipeline ends, before the summary."""

    BATCH_S = 0.02

    def __init__(self, *, plain: bool, to_stderr: bool = False) -> None:
        self.plain = plain
        self.stream: TextIO = sys.stderr if to_stderr else sys.stdout
        self._colour: dict[str, str] = {}
        self._width = 0
        self._gathered: list[str] = []
        self._started = time.monotonic()
        self._console = None
        if not plain:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)

    def _line(self, line: str) -> None:
        """Print ``line`` (plain mode): gathered while a run's event loop runs, else at once."""
        asyncio = sys.modules.get("asyncio")  # (not imported: no loop runs)
        loop = None
        if asyncio is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        if loop is None:
            self.flush()
            self.stream.write(line)
            self.stream.flush()
            return
        if not self._gathered:
            loop.call_later(self.BATCH_S, self.flush)
        self._gathered.append(line)

    def flush(self) -> None:
        """Write the lines gathered so far."""
        gathered, self._gathered = self._gathered, []
        if gathered:
            self.stream.write("".join(gathered))
            self.stream.flush()

    def _prefix(self, name: str) -> str:
        if name not in self._colour:
            self._colour[name] = _COLOURS[len(self._colour) % len(_COLOURS)]
        return name

    def _rich(self, markup: str) -> None:
        assert self._console is not None
        self._console.print(markup)

    def info(self, message: str) -> None:
        if self._console is None:
            self._line(f"{clean_lines(message)}\n")
        else:
            from rich.markup import escape

            self._rich(f"[bold]{escape(clean_lines(message))}[/]")

    def pipeline_created(
        self, record: PipelineRecord, pipeline: Pipeline, only: frozenset[str] | None = None
    ) -> None:
        """``only``: the names of the jobs that will run, when some were selected."""
        self._width = max((len(clean(j.name)) for j in pipeline.jobs), default=0)
        for warning in pipeline.warnings:
            self.info(f"warning: {warning}")
        n = len(pipeline.jobs) if only is None else len(only)
        self.info(f"pipeline #{record.id} ({clean(record.ref)} {record.sha[:8]}): {n} job{'s' * (n != 1)}")

    def job_status(
        self, job: Job, job_id: int, attempt: int, status: str, outcome: JobOutcome | None
    ) -> None:
        if status in ("created", "pending"):
            return
        what = {
            "running": "started" + (f" (attempt {attempt})" if attempt > 1 else ""),
            "success": "passed",
            "failed": "failed, allowed to fail" if failure_allowed(job, outcome) else "failed",
            "canceled": "canceled",
            "skipped": "skipped",
            "manual": "is manual: play it with --manual",
        }.get(status, status)
        if outcome is not None:
            what += f" in {_fmt_duration(outcome.finished_at - outcome.started_at)}"
            if outcome.exit_code not in (None, 0):
                what += f" (exit code {outcome.exit_code})"
            if outcome.failure_reason == "job_execution_timeout":
                what += " (timed out)"
        if self._console is None:
            self._line(f"{clean(job.name)} {what}\n")
        else:
            style = _STATUS_STYLE.get(status, "")
            colour = self._colour.get(self._prefix(job.name), "")
            self._rich(f"[{colour} bold]{markup(job.name)}[/] [{style}]{markup(what)}[/]")

    def job_output(self, job: Job, job_id: int, kind: str, text: str) -> None:
        sep = {"cmd": "$", "out": ">"}.get(kind, "|")
        if kind != "out":  # a command or aicd's note (the job's own output is shown as it is)
            text = clean(text)
        else:
            text = terminal_view(text)
        if self._console is None:
            self._line(f"{clean(job.name)} {sep} {text}\n")
        else:
            from rich.text import Text

            colour = self._colour.get(self._prefix(job.name), "")
            line = Text(clean(job.name).ljust(self._width) + " ", style=colour)
            if kind == "cmd":
                line.append(f"$ {text}", style="green")
            elif kind == "info":
                line.append(text, style="dim")
            else:
                line.append_text(Text.from_ansi(text))
            assert self._console is not None
            self._console.print(line)


def print_diagnostics(diagnostics: Sequence[Diagnostic], stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    for d in diagnostics:
        out.write(f"{clean_lines(d)}\n")
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = len(diagnostics) - errors
    if errors:
        out.write(f"{errors} error{'s' * (errors != 1)}")
        out.write(f", {warnings} warning{'s' * (warnings != 1)}\n" if warnings else "\n")
    out.flush()


def print_summary(result: RunResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=f"pipeline #{result.pipeline.id}: {result.status}", title_justify="left")
    for col in ("job", "stage", "status", "duration", "tests"):
        table.add_column(col, justify="right" if col == "duration" else "left")
    for j in result.jobs:
        o = j.outcome
        status = j.status
        if status == "failed" and j.allow_failure:
            status = "failed (allowed)"
        tests = ""
        if o is not None and o.tests is not None:
            tests = f"{o.tests.passed} passed, {o.tests.failed + o.tests.errors} failed"
            if o.tests.skipped:
                tests += f", {o.tests.skipped} skipped"
        style = _STATUS_STYLE.get(j.status, "")
        table.add_row(
            text(j.job.name),
            text(j.job.stage),
            text(status, style),
            _fmt_duration(o.finished_at - o.started_at) if o else "",
            tests,
        )
    console.print(table)
