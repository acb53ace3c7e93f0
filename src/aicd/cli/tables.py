"""Plain text tables, times and JSON for the CLI's listings (one shape for every command)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str, *, newlines: bool = False) -> str:
    """Text from a server or a file, safe to print on a terminal: control characters (newline
    unless `newlines`, ESC of ANSI sequences, NUL...) and lone surrogates shown escaped (\\x1b)."""
    return _CONTROL.sub(_escaped_but_newline if newlines else _escaped, text)


def _escaped(match: re.Match[str]) -> str:
    return ascii(match.group(0))[1:-1]


def _escaped_but_newline(match: re.Match[str]) -> str:
    return "\n" if match.group(0) == "\n" else ascii(match.group(0))[1:-1]


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    """Columns padded to their widest cell; None prints as an empty cell; control characters escaped."""
    cells = [
        [printable(str(c)) for c in header],
        *[["" if c is None else printable(str(c)) for c in row] for row in rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def when(ts: float | None) -> str:
    """A local date and time, or empty."""
    if ts is None:
        return ""
    try:
        return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):  # a date no calendar holds (e.g. 1e308 s)
        return "far future" if ts > 0 else "far past"


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))
