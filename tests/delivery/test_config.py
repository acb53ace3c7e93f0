"""aicd.yml `gates:` and merging flags into them."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicd.cli.gate_cmd import merge_thresholds
from aicd.delivery.config import load_config
from aicd.delivery.gate import Threshold
from aicd.errors import ConfigError

GOOD = """\
service: {name: iris}
model: {name: iris}
gates:
  - metric: accuracy
    min: 0.9
    max_regression_pct: 2
    against: production
  - metric: log_loss
    direction: lower
    max: 0.5
    max_regression: 0.05
environments: {staging: {}}
"""


def test_load_gates(tmp_path: Path) -> None:
    (tmp_path / "aicd.yml").write_text(GOOD)
    cfg = load_config(tmp_path / "aicd.yml", "aicd.yml")
    assert cfg.gates == [
        Threshold("accuracy", min=0.9, max_regression_pct=2.0, against="production"),
        Threshold("log_loss", max=0.5, higher_is_better=False, max_regression=0.05),
    ]
    assert cfg.service == {"name": "iris"} and cfg.environments == {"staging": {}}


def test_empty_config_has_no_gates(tmp_path: Path) -> None:
    (tmp_path / "aicd.yml").write_text("\n")
    assert load_config(tmp_path / "aicd.yml", "aicd.yml").gates == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gatez: []\n", "aicd.yml:1:1: unknown key 'gatez' (did you mean \"gates\"?)"),
        ("gates:\n  - metric: a\n    minn: 1\n", "aicd.yml:3:5: gates[0]: unknown key 'minn'"),
        ("gates:\n  - min: 1\n", "aicd.yml:2:5: gates[0]: 'metric'"),
        ("gates:\n  - metric: a\n    min: high\n", "aicd.yml:3:5: gates[0].min must be a number"),
        ("gates:\n  - metric: a\n    direction: up\n    min: 1\n", "direction must be 'higher' or 'lower'"),
        ("gates:\n  - metric: a\n", "checks nothing"),
        ("gates:\n  - metric: a\n    max_regression: -1\n", "must be 0 or more"),
        ("gates: {a: 1}\n", "'gates' must be a list"),
        ("- 1\n", "must be a mapping"),
        ("gates: [\n", "aicd.yml:"),
    ],
)
def test_bad_config(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "aicd.yml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "aicd.yml", "aicd.yml")
    assert expected in str(info.value)


def test_flags_add_and_override_config() -> None:
    config = [Threshold("accuracy", min=0.9, max_regression=0.01), Threshold("f1", min=0.8)]
    merged = merge_thresholds(
        config,
        mins=["accuracy=0.95"],
        maxes=['latency{quantile="0.95"}=0.2'],
        max_drops=["accuracy=2%"],
        lower_is_better=['latency{quantile="0.95"}'],
    )
    assert merged == [
        Threshold("accuracy", min=0.95, max_regression_pct=2.0),
        Threshold("f1", min=0.8),
        Threshold('latency{quantile="0.95"}', max=0.2, higher_is_better=False),
    ]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "no thresholds to check"),
        ({"mins": ["accuracy"]}, "expected METRIC=VALUE"),
        ({"mins": ["accuracy=high"]}, "'high' is not a number"),
        ({"maxes": ["loss=nan"]}, "finite"),
        ({"max_drops": ["accuracy=-1%"]}, "0 or more"),
        ({"lower_is_better": ["loss"]}, "no threshold on loss"),
    ],
)
def test_bad_flags(kwargs: dict[str, list[str]], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        merge_thresholds([], **kwargs)


def test_the_sandbox_section_is_known_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "aicd.yml"
    for ok in ("sandbox:\n  network: none\n", "sandbox:\n  network: on\n", "sandbox:\n  network: off\n"):
        path.write_text(ok)
        assert load_config(path, "aicd.yml").gates == []
    path.write_text("sandbox:\n  netwrok: none\n")
    with pytest.raises(ConfigError, match=r"aicd.yml:2:3: sandbox: unknown key 'netwrok'.*network"):
        load_config(path, "aicd.yml")
    path.write_text("sandbox:\n  network: maybe\n")
    with pytest.raises(ConfigError, match=r"sandbox.network must be 'none' or 'on', not 'maybe'"):
        load_config(path, "aicd.yml")
