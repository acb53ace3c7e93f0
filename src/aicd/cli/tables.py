"""Plain text tables, times and JSON for the CLI's listings (one shape for every command)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from aicd.cli.terminal import clean


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    """Columns padded to their widest cell; None prints as an empty cell; control characters escaped."""
    cells = [[clean(c) for c in header], *[["" if c is None else clean(c) for c in row] for row in rows]]
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
