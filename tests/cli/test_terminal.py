"""User strings on the terminal: escapes and control characters shown, never obeyed; rich markup
never read from them (matrix job names keep their brackets)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from aicd.cli.render import ConsoleObserver
from aicd.cli.tables import table
from aicd.cli.terminal import clean, clean_lines, markup
from aicd_testing import aicd, clean_env, make_repo

EVIL = "evil \x1b]0;pwned\x07\x1b[31m[bold]red[/bold]\u202e"
PIPELINE = """\
test:
  parallel:
    matrix:
      - PY: ["3.11", "3.12"]
  script: [echo "$PY"]
"evil \\e]0;pwned\\a\\e[31m[bold]red[/bold]\\u202e":
  stage: build
  script: [echo hi]
"""


def test_clean_shows_controls_and_overrides_as_escapes() -> None:
    assert clean(EVIL) == "evil \\x1b]0;pwned\\x07\\x1b[31m[bold]red[/bold]\\u202e"
    assert clean("a\nb\tc\x7f\x9b") == "a\\x0ab\\x09c\\x7f\\x9b"
    assert clean_lines("a\nb\tc\x1b") == "a\nb\tc\\x1b"
    assert clean("test: [python:3.11] é 日本") == "test: [python:3.11] é 日本"
    assert markup("test: [python:3.11]") == "test: \\[python:3.11]"


def test_plain_tables_escape_cells(capsys: pytest.CaptureFixture[str]) -> None:
    table([["job\x1b[2J", "ok"]], ["name", "status"])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "job\\x1b[2J" in out


def _env() -> dict[str, str]:
    env = clean_env()
    env["COLUMNS"] = "250"  # no wrapping inside the table cells
    return env


def test_run_and_show_print_matrix_names_whole_and_escape_evil_ones(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    run = aicd(project, "run", env=_env())
    assert run.returncode == 0, run.stdout + run.stderr
    show = aicd(project, "show", "1", env=_env())
    for out in (run.stdout + run.stderr, show.stdout):
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
        assert "\\x1b]0;pwned\\x07\\x1b[31m[bold]red[/bold]\\u202e" in out
    table_rows = [line for line in run.stdout.splitlines() if "│ test: [" in line]
    assert len(table_rows) == 2 and "test: [3.11]" in table_rows[0] and "test: [3.12]" in table_rows[1]
    show_rows = [line for line in show.stdout.splitlines() if "│ test: [" in line]
    assert len(show_rows) == 2 and "test: [3.11]" in show_rows[0] and "test: [3.12]" in show_rows[1]
    assert "test: [3.11] > 3.11" in run.stdout  # the live lines, plain mode
    runs = aicd(project, "runs", env=_env())
    assert "\x1b" not in runs.stdout


def test_the_run_header_counts_the_selected_jobs(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    one = aicd(project, "run", "test: [3.11]", env=_env())
    assert one.returncode == 0, one.stderr
    assert ": 1 job\n" in one.stdout and "4 jobs" not in one.stdout and "3 jobs" not in one.stdout
    both = aicd(project, "run", "test", env=_env())  # a base name: both matrix jobs
    assert ": 2 jobs\n" in both.stdout
    everything = aicd(project, "run", env=_env())
    assert ": 3 jobs\n" in everything.stdout


def test_an_error_quoting_a_user_string_is_escaped(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    proc = aicd(project, "run", "nope\x1b[2J", env=_env())
    assert proc.returncode != 0
    assert "\x1b" not in proc.stderr and "nope\\x1b[2J" in proc.stderr


def test_the_live_view_on_a_terminal_escapes_names_and_keeps_brackets() -> None:
    observer = ConsoleObserver(plain=True)
    buffer = io.StringIO()
    observer.plain = False
    observer._console = Console(file=buffer, force_terminal=True, width=250, highlight=False)  # type: ignore[assignment]
    for name in ("test: [python:3.11]", "test: [python:3.12]", EVIL):
        job: Any = SimpleNamespace(name=name, allow_failure=False, allow_failure_exit_codes=())
        observer.job_status(job, 1, 1, "running", None)
        observer.job_output(job, 1, "cmd", "echo \x1b]0;title\x07")
        observer.job_output(job, 1, "out", "\x1b[32mgreen\x1b[0m")  # the job's own colours are kept
    out = buffer.getvalue()
    assert out.count("test: [python:3.11]") == 3 and out.count("test: [python:3.12]") == 3
    assert "\x1b]0;" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b]0;pwned" in out and "echo \\x1b]0;title\\x07" in out
    assert "green" in out


def test_json_output_keeps_names_exact(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    proc = aicd(project, "run", "--json", env=_env())
    names = {j["name"] for j in json.loads(proc.stdout)["jobs"]}
    assert EVIL in names  # JSON is data: exact, escaped by JSON itself
