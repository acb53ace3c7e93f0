"""Sample files for `aicd judge`: per metric, the values measured on one version.

JSON, either form::

    {"latency_ms": [12.1, 15.3, ...], "error": [0, 0, 1, ...]}
    {"metrics": {"latency_ms": [...], "error": [...]}, "predictions": {"setosa": 40, "virginica": 38}}

Values are numbers; ``null`` (and ``NaN``) is a missing value, handled by the metric's
``nan_strategy``. ``predictions`` (optional, for the model-aware drift check) maps each
predicted class to its count, or is the list of predicted labels.

CSV, either form (a header row is required for the wide form)::

    metric,value            latency_ms,error
    latency_ms,12.1         12.1,0
    error,0                 15.3,0
                            ,1        <- an empty cell: this column has fewer values

A malformed file raises :class:`SamplesFileError` (exit 2) naming the file, the line (or the
JSON path) and what to write instead.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.errors import ConfigError


class SamplesFileError(ConfigError):
    """A sample file cannot be read (exit code 2)."""


@dataclass(frozen=True)
class Samples:
    file: str
    metrics: dict[str, list[float]] = field(default_factory=dict)
    predictions: dict[str, int] = field(default_factory=dict)


JSON_EXAMPLE = '{"latency_ms": [12.1, 15.3], "error": [0, 1]}'


def read_samples(path: Path, display: str | None = None) -> Samples:
    """The samples in `path` (JSON or CSV, by content)."""
    name = display or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SamplesFileError(f"{name}: no such sample file") from None
    except IsADirectoryError:
        raise SamplesFileError(f"{name}: is a directory, not a sample file") from None
    except OSError as exc:
        raise SamplesFileError(f"{name}: cannot read the sample file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SamplesFileError(
            f"{name}: not UTF-8 text (byte {exc.start}); a sample file is JSON or CSV"
        ) from None
    return parse_samples_text(text, name)


def parse_samples_text(text: str, name: str) -> Samples:
    stripped = text.strip()
    if not stripped:
        raise SamplesFileError(f"{name}: the sample file is empty; write e.g. {JSON_EXAMPLE}")
    if stripped[0] in "{[" or name.lower().endswith(".json"):
        samples = _parse_json(text, name)
    else:
        samples = _parse_csv(text, name)
    if not samples.metrics and not samples.predictions:
        raise SamplesFileError(f"{name}: the sample file holds no samples; write e.g. {JSON_EXAMPLE}")
    return samples


# --- JSON ----------------------------------------------------------------------------------------


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f'a string ("{value[:40]}")'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _parse_json(text: str, name: str) -> Samples:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SamplesFileError(f"{name}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise SamplesFileError(
            f"{name}: the JSON is nested too deeply to be a sample file; write e.g. {JSON_EXAMPLE}"
        ) from None
    return samples_from_doc(doc, name)


def samples_from_doc(doc: Any, name: str) -> Samples:
    """Samples from parsed JSON (a sample file's object, or one inside a request body)."""
    if not isinstance(doc, dict):
        raise SamplesFileError(
            f"{name}: a JSON sample file is one object of metric -> list of numbers, not {_kind(doc)}; "
            f"write e.g. {JSON_EXAMPLE}"
        )
    predictions: dict[str, int] = {}
    if "predictions" in doc:
        predictions = _predictions(doc["predictions"], name)
    if "metrics" in doc and isinstance(doc["metrics"], dict):
        extra = sorted(set(doc) - {"metrics", "predictions"})
        if extra:
            raise SamplesFileError(
                f'{name}: unknown key "{extra[0]}" next to "metrics"; '
                'the file holds "metrics" and optionally "predictions"'
            )
        raw = doc["metrics"]
        prefix = "metrics."
    else:
        raw = {k: v for k, v in doc.items() if k != "predictions"}
        prefix = ""
    metrics: dict[str, list[float]] = {}
    for key, values in raw.items():
        where = f"{prefix}{key}"
        if not isinstance(values, list):
            raise SamplesFileError(
                f'{name}: "{where}" is {_kind(values)}, not a list of numbers; '
                f'write e.g. "{key}": [12.1, 15.3]'
            )
        out: list[float] = []
        for i, value in enumerate(values):
            if value is None:
                out.append(math.nan)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(float(value))
            else:
                raise SamplesFileError(
                    f'{name}: "{where}"[{i}] is {_kind(value)}, not a number; '
                    "samples are numbers (null for a missing one)"
                )
        metrics[str(key)] = out
    return Samples(name, metrics, predictions)


def _predictions(value: Any, name: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    if isinstance(value, list):
        for i, label in enumerate(value):
            if isinstance(label, bool) or not isinstance(label, (str, int)):
                raise SamplesFileError(
                    f'{name}: "predictions"[{i}] is {_kind(label)}; a prediction is a class label '
                    "(a string or a whole number)"
                )
            counts[str(label)] = counts.get(str(label), 0) + 1
        return counts
    if not isinstance(value, dict):
        raise SamplesFileError(
            f'{name}: "predictions" is {_kind(value)}; write the count per class, '
            'e.g. {"setosa": 40, "virginica": 38}, or the list of predicted labels'
        )
    for label, count in value.items():
        whole = isinstance(count, int) or (isinstance(count, float) and count.is_integer())
        if isinstance(count, bool) or not whole or count < 0:
            raise SamplesFileError(
                f'{name}: "predictions.{label}" is {_kind(count) if isinstance(count, bool) else count!r}; '
                "a class count is a whole number, 0 or more"
            )
        counts[str(label)] = int(count)
    return counts


# --- CSV -----------------------------------------------------------------------------------------


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _parse_csv(text: str, name: str) -> Samples:
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        for row in reader:
            cells = [c.strip() for c in row]
            if cells and any(cells) and not cells[0].startswith("#"):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise SamplesFileError(f"{name}:{reader.line_num}: not valid CSV: {exc}") from None
    if not rows:
        raise SamplesFileError(f"{name}: the sample file holds no rows")
    _, header = rows[0]
    is_long_header = [c.lower() for c in header] == ["metric", "value"]
    headerless_long = len(header) == 2 and _number(header[0]) is None and _number(header[1]) is not None
    if is_long_header or headerless_long:
        return _parse_long(rows[1:] if is_long_header else rows, name)
    return _parse_wide(rows, name)


def _parse_long(rows: list[tuple[int, list[str]]], name: str) -> Samples:
    metrics: dict[str, list[float]] = {}
    for line, cells in rows:
        if len(cells) != 2:
            raise SamplesFileError(
                f"{name}:{line}: expected 2 cells (metric,value), found {len(cells)}; "
                "one sample per row, e.g. latency_ms,12.1"
            )
        metric, cell = cells
        if not metric:
            raise SamplesFileError(f"{name}:{line}: the metric name is empty; write e.g. latency_ms,12.1")
        value = _number(cell) if cell else math.nan
        if value is None:
            raise SamplesFileError(f"{name}:{line}: {cell!r} is not a number (metric {metric})")
        metrics.setdefault(metric, []).append(value)
    return Samples(name, metrics)


def _parse_wide(rows: list[tuple[int, list[str]]], name: str) -> Samples:
    header_line, header = rows[0]
    for i, column in enumerate(header):
        if not column:
            raise SamplesFileError(
                f"{name}:{header_line}: column {i + 1} has no name; the first row names the metrics "
                "(or write metric,value rows)"
            )
        if _number(column) is not None:
            raise SamplesFileError(
                f"{name}:{header_line}: the first row must name the metrics, but column {i + 1} is the "
                f"number {column}; add a header row such as latency_ms,error"
            )
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise SamplesFileError(f"{name}:{header_line}: the column {column!r} appears twice")
        seen.add(column)
    metrics: dict[str, list[float]] = {column: [] for column in header}
    for line, cells in rows[1:]:
        if len(cells) > len(header):
            raise SamplesFileError(
                f"{name}:{line}: {len(cells)} cells but the header names {len(header)} metrics"
            )
        for column, cell in zip(header, cells, strict=False):
            if not cell:
                continue  # this column has fewer values
            value = _number(cell)
            if value is None:
                raise SamplesFileError(f"{name}:{line}: {cell!r} is not a number (column {column})")
            metrics[column].append(value)
    return Samples(name, metrics)
