"""Reading a metrics file: a JSON object of name -> number, or OpenMetrics text.

JSON: nested objects are flattened with dots (``{"eval": {"f1": 0.9}}`` gives
``eval.f1``); every leaf must be a number (``NaN`` and ``Infinity`` are read,
and the gate fails them). Anything else is OpenMetrics / Prometheus text,
``name{labels} value`` per line, read by :func:`aicd.executors.reports.parse_metrics`.
Any malformed input raises :class:`MetricsFileError` naming the file (and line).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aicd.errors import ConfigError


class MetricsFileError(ConfigError):
    """A metrics file cannot be read (exit code 2)."""


def read_metrics_file(path: Path, display: str | None = None) -> dict[str, float]:
    """The metrics in `path`, by name."""
    name = display or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MetricsFileError(f"{name}: no such metrics file") from None
    except OSError as exc:
        raise MetricsFileError(f"{name}: cannot read the metrics file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MetricsFileError(f"{name}: not UTF-8 text (byte {exc.start}); is it a metrics file?") from None
    return parse_metrics_text(text, name)


def parse_metrics_text(text: str, name: str) -> dict[str, float]:
    """Parse the contents of a metrics file called `name` (JSON or OpenMetrics)."""
    stripped = text.strip()
    if not stripped:
        raise MetricsFileError(f"{name}: the metrics file is empty")
    if stripped[0] in "{[" or name.endswith(".json"):
        return _parse_json(text, name)
    return _parse_openmetrics(text, name)


def _parse_json(text: str, name: str) -> dict[str, float]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetricsFileError(f"{name}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise MetricsFileError(_too_deep(name)) from None
    if not isinstance(doc, dict):
        raise MetricsFileError(
            f"{name}: a JSON metrics file must hold one object of name -> number, not {_kind(doc)}"
        )
    out: dict[str, float] = {}
    _flatten(doc, "", out, name)
    if not out:
        raise MetricsFileError(f"{name}: the metrics file holds no metrics")
    return out


MAX_DEPTH = 32  # objects nested deeper than this are no metrics file


def _too_deep(name: str) -> str:
    return (
        f"{name}: the JSON is nested more than {MAX_DEPTH} levels deep; "
        'a metrics file maps names to numbers (e.g. {"accuracy": 0.93, "eval": {"f1": 0.9}})'
    )


def _flatten(obj: dict[str, Any], prefix: str, out: dict[str, float], name: str) -> None:
    """Leaves of `obj` by dotted name, depth first in file order (iterative: no deep recursion)."""
    stack: list[tuple[str, Any, int]] = [(f"{prefix}{k}", v, 1) for k, v in reversed(obj.items())]
    while stack:
        full, value, depth = stack.pop()
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                raise MetricsFileError(_too_deep(name))
            stack.extend((f"{full}.{k}", v, depth + 1) for k, v in reversed(value.items()))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[full] = float(value)
        else:
            raise MetricsFileError(
                f'{name}: metric "{full}" is {_kind(value)}, not a number; '
                "a metrics file maps names to numbers"
            )


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f'a string ("{value[:40]}")'
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _parse_openmetrics(text: str, name: str) -> dict[str, float]:
    from aicd.executors.reports import parse_metrics

    out, warnings = parse_metrics(text, name)
    if warnings:
        problems = [w.removeprefix("WARNING: ").removesuffix("; ignored") for w in warnings]
        raise MetricsFileError(
            "\n".join(problems) + f"\n{name}: not a metrics file: JSON must be one object; "
            "OpenMetrics text is 'name value' per line"
        )
    if not out:
        raise MetricsFileError(f"{name}: the metrics file holds no metrics (only comments)")
    return out
