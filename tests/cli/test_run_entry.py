"""`aicd run` without click (issue 17): the plain command lines read as click reads them.

`parse_plain_run` must either read a command line exactly as the click command does, or leave
it to click (None). The test compares the two parses on the same lines, and checks end to end
that a line left to click still gets click's help and errors, and that the process's answers
(exit codes, messages) are the same on both paths.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from aicd.cli.commands import cli
from aicd.cli.run_entry import parse_plain_run
from aicd_testing import aicd, make_repo

READ_HERE = [
    [],
    ["--json"],
    ["build", "test"],
    ["--json", "-j", "4", "build", "--needs", "test"],
    ["-C", "sub", "-f", "ci.yml", "--file", "other.yml"],  # the last one wins
    ["--cwd=sub", "--file=ci.yml", "--concurrency=1024", "--commit=HEAD~1"],
    ["-v", "A=1", "--variable", "B=2", "-v", "A=3", "--variable=C=x=y"],
    ["--manual", "deploy", "--manual=release", "--isolate", "--untracked", "--json", "--json"],
    ["-f", "", "job with space", "ünïcode"],
    ["--commit", "abc", "--concurrency", "7"],
]
LEFT_TO_CLICK = [
    ["--help"],
    ["-h"],
    ["build", "--help"],
    ["--dry-run"],
    ["--secret", "TOKEN"],
    ["--variables-file", "vars.yml"],
    ["--bogus"],
    ["--jsn"],
    ["--json=1"],
    ["-j"],
    ["-j", "0"],
    ["-j", "1025"],
    ["-j", "x"],
    ["-j", "+4"],
    ["-j", " 4"],
    ["-j4"],
    ["-fci.yml"],
    ["-f", "--json"],
    ["--", "build"],
    ["-"],
    ["-C"],
    ["-x=1"],
]


def click_reads(args: list[str]) -> dict[str, Any]:
    command = cli.commands["run"]
    ctx = command.make_context("run", list(args))
    return dict(ctx.params)


@pytest.mark.parametrize("args", READ_HERE)
def test_plain_lines_are_read_as_click_reads_them(args: list[str]) -> None:
    plain = parse_plain_run(args)
    assert plain is not None
    expected = click_reads(args)
    assert expected.pop("dry_run") is False
    assert expected.pop("secrets") == () and expected.pop("variables_files") == ()
    assert dict(plain) == expected


@pytest.mark.parametrize("args", LEFT_TO_CLICK)
def test_other_lines_are_left_to_click(args: list[str]) -> None:
    assert parse_plain_run(args) is None


def test_lines_left_to_click_include_every_option_of_the_command() -> None:
    """A new `aicd run` option is left to click until the plain parser learns it."""
    for param in cli.commands["run"].params:
        if not isinstance(param, click.Option):
            continue
        for name in param.opts + param.secondary_opts:
            read = parse_plain_run([name, "x"]) if not param.is_flag else parse_plain_run([name])
            if read is None:
                continue
            assert param.name in read, name


@pytest.mark.slow
def test_both_paths_answer_alike(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p", {".gitlab-ci.yml": "job:\n  script: [echo hi]\n"})
    missing = aicd(repo, "run", "-C", str(tmp_path / "nowhere"))
    assert missing.returncode == 1
    assert missing.stderr == f"aicd: {tmp_path / 'nowhere'}: no such directory (--cwd)\n"
    unknown = aicd(repo, "run", "nojob")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("aicd: ") and "nojob" in unknown.stderr
    bad_var = aicd(repo, "run", "-v", "NOEQUALS")
    assert bad_var.returncode == 2 and bad_var.stderr.startswith("aicd: "), bad_var.stderr
    # left to click: its usage error and its help
    bogus = aicd(repo, "run", "--bogus")
    assert bogus.returncode == 2 and "No such option '--bogus'" in bogus.stderr
    helped = aicd(repo, "run", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: aicd run [OPTIONS] [JOBS]...")
    ran = aicd(repo, "run", "--json", "job")
    assert ran.returncode == 0 and '"status": "success"' in ran.stdout


def test_asyncio_is_imported_without_ssl_and_ssl_stays_importable() -> None:
    probe = (
        "import sys\n"
        "from aicd.cli.run_entry import import_asyncio_without_ssl\n"
        "import_asyncio_without_ssl()\n"
        "print('asyncio' in sys.modules, 'ssl' in sys.modules)\n"
        "import asyncio, ssl\n"
        "print(asyncio.base_events.ssl is None, ssl.PROTOCOL_TLS_CLIENT is not None)\n"
        "print(asyncio.run(asyncio.sleep(0, 'ran')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == ["True False", "True True", "ran"]
