"""Sample files for `aicd judge`: JSON and CSV forms, and clear errors for malformed ones."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from aicd.delivery.samples import SamplesFileError, parse_samples_text, read_samples


def test_json_flat_and_nested_forms() -> None:
    flat = parse_samples_text('{"latency_ms": [12.5, 15, null], "error": [0, 1]}', "s.json")
    assert flat.metrics["latency_ms"][:2] == [12.5, 15.0] and math.isnan(flat.metrics["latency_ms"][2])
    assert flat.metrics["error"] == [0.0, 1.0] and flat.predictions == {}
    nested = parse_samples_text(
        '{"metrics": {"latency_ms": [1, 2]}, "predictions": {"setosa": 4, "virginica": 2.0}}', "s.json"
    )
    assert nested.metrics == {"latency_ms": [1.0, 2.0]}
    assert nested.predictions == {"setosa": 4, "virginica": 2}
    labels = parse_samples_text('{"predictions": ["a", "b", "a", 3]}', "p.json")
    assert labels.predictions == {"a": 2, "b": 1, "3": 1} and labels.metrics == {}


def test_csv_long_wide_and_headerless_forms() -> None:
    long = parse_samples_text("metric,value\nlatency_ms,12.5\nerror,0\nlatency_ms,13\n", "s.csv")
    assert long.metrics == {"latency_ms": [12.5, 13.0], "error": [0.0]}
    headerless = parse_samples_text("# samples\nlatency_ms,12.5\nlatency_ms,NaN\n", "s.csv")
    assert headerless.metrics["latency_ms"][0] == 12.5 and math.isnan(headerless.metrics["latency_ms"][1])
    wide = parse_samples_text("latency_ms,error\n12.5,0\n13,1\n,0\n\n", "s.csv")
    assert wide.metrics == {"latency_ms": [12.5, 13.0], "error": [0.0, 1.0, 0.0]}


def test_read_from_disk_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "stable.csv"
    path.write_bytes(b"\xef\xbb\xbfmetric,value\nlat,1\n")
    assert read_samples(path, "stable.csv").metrics == {"lat": [1.0]}


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ('{"lat": [1, 2],\n "err": oops}', "s.json", "s.json:2:9: not valid JSON"),
        (
            "[1, 2]",
            "s.json",
            "s.json: a JSON sample file is one object of metric -> list of numbers, not a list",
        ),
        (
            '{"lat": 12}',
            "s.json",
            's.json: "lat" is int, not a list of numbers; write e.g. "lat": [12.1, 15.3]',
        ),
        ('{"lat": [1, "fast"]}', "s.json", 's.json: "lat"[1] is a string ("fast"), not a number'),
        (
            '{"metrics": {"lat": [true]}}',
            "s.json",
            's.json: "metrics.lat"[0] is a boolean (true), not a number',
        ),
        ('{"metrics": {"lat": [1]}, "lat": [2]}', "s.json", 's.json: unknown key "lat" next to "metrics"'),
        (
            '{"predictions": {"a": -1}}',
            "s.json",
            's.json: "predictions.a" is -1; a class count is a whole number',
        ),
        (
            '{"predictions": "a"}',
            "s.json",
            's.json: "predictions" is a string ("a"); write the count per class',
        ),
        ("{}", "s.json", "s.json: the sample file holds no samples"),
        ("  \n", "s.csv", "s.csv: the sample file is empty"),
        ("metric,value\nlat,12\nlat,fast\n", "s.csv", "s.csv:3: 'fast' is not a number (metric lat)"),
        ("metric,value\nlat,1,2\n", "s.csv", "s.csv:2: expected 2 cells (metric,value), found 3"),
        ("lat,err\n1,2\n3,4,5\n", "s.csv", "s.csv:3: 3 cells but the header names 2 metrics"),
        ("lat,err\n1,x\n", "s.csv", "s.csv:2: 'x' is not a number (column err)"),
        (
            "1,2,3\n4,5,6\n",
            "s.csv",
            "s.csv:1: the first row must name the metrics, but column 1 is the number 1",
        ),
        ("lat,,err\n1,2,3\n", "s.csv", "s.csv:1: column 2 has no name"),
        ("lat,lat\n1,2\n", "s.csv", "s.csv:1: the column 'lat' appears twice"),
        ('lat\n"1\n', "s.csv", "s.csv:2: not valid CSV: unexpected end of data"),
        (
            "[" * 100_000 + "]" * 100_000,
            "s.json",
            "s.json: the JSON is nested too deeply to be a sample file",
        ),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else None,
)
def test_malformed_files_name_file_line_and_fix(text: str, name: str, message: str) -> None:
    with pytest.raises(SamplesFileError) as err:
        parse_samples_text(text, name)
    assert message in str(err.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SamplesFileError, match=r"nope\.json: no such sample file"):
        read_samples(tmp_path / "nope.json", "nope.json")
    with pytest.raises(SamplesFileError, match="is a directory"):
        read_samples(tmp_path, "dir")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SamplesFileError, match=r"bin.json: not UTF-8 text \(byte 0\)"):
        read_samples(tmp_path / "bin.json", "bin.json")
