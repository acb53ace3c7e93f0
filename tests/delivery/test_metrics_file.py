"""Reading metrics files: JSON (flattened) and OpenMetrics text; malformed input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from aicd.delivery.metrics_file import MetricsFileError, read_metrics_file


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_json_nested_objects_are_flattened(tmp_path: Path) -> None:
    path = write(tmp_path, "m.json", '{"accuracy": 0.9, "eval": {"f1": 0.8, "n": 3}, "loss": NaN}')
    got = read_metrics_file(path)
    assert got["accuracy"] == 0.9 and got["eval.f1"] == 0.8 and got["eval.n"] == 3.0
    assert math.isnan(got["loss"])


def test_openmetrics_text(tmp_path: Path) -> None:
    text = (
        "# HELP accuracy Accuracy.\n# TYPE accuracy gauge\naccuracy 0.97\n"
        'latency_seconds{quantile="0.95"} 0.012\nlog_loss +Inf\n# EOF\n'
    )
    got = read_metrics_file(write(tmp_path, "metrics.txt", text))
    assert got["accuracy"] == 0.97
    assert got['latency_seconds{quantile="0.95"}'] == 0.012
    assert got["log_loss"] == math.inf


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("m.json", '{"accuracy": 0.9,\n "f1": }', "m.json:2:8: not valid JSON"),
        ("m.json", '{"accuracy": "high"}', 'metric "accuracy" is a string'),
        ("m.json", '{"ok": true}', "a boolean"),
        ("m.json", '{"a": null}', "null"),
        ("m.json", "[1, 2]", "one object"),
        ("m.json", "{}", "holds no metrics"),
        ("m.json", "", "is empty"),
        ("m.txt", "  \n\n", "is empty"),
        ("m.txt", "accuracy 0.9\naccuracy high\n", "m.txt:2: not a 'name value' metric line"),
        ("m.txt", "# only a comment\n", "holds no metrics"),
        ("m.bin", b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_malformed_files_name_file_and_line(
    tmp_path: Path, name: str, content: str | bytes, expected: str
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(MetricsFileError) as info:
        read_metrics_file(path, name)
    assert expected in str(info.value)
    assert info.value.exit_code == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MetricsFileError, match=r"nope\.json: no such metrics file"):
        read_metrics_file(tmp_path / "nope.json", "nope.json")


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(MetricsFileError, match="cannot read"):
        read_metrics_file(tmp_path, "dir")
