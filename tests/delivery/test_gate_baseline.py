"""`aicd gate` with a baseline from the model registry (--baseline models:/..., aicd.yml `against:`),
through the real `aicd` process and a real registry in the project's .aicd/."""

from __future__ import annotations

import json
from pathlib import Path

from aicd_testing import aicd

CONFIG = (
    "model:\n  name: iris\n"
    "gates:\n"
    "  - metric: accuracy\n    min: 0.8\n    max_regression_pct: 2\n    against: production\n"
    "  - metric: log_loss\n    direction: lower\n    max: 0.5\n"
)


def _register(project: Path, accuracy: float, *, alias: str | None = "production") -> None:
    (project / "model.bin").write_bytes(f"model {accuracy}".encode())
    (project / "registered.json").write_text(json.dumps({"accuracy": accuracy, "log_loss": 0.2}))
    extra = ["--alias", alias] if alias else []
    proc = aicd(project, "model", "register", "iris", "model.bin", "--metrics", "registered.json", *extra)
    assert proc.returncode == 0, proc.stderr


def test_no_registry_yet_means_value_checks_only_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "aicd.yml").write_text(CONFIG)
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.85, "log_loss": 0.3}')
    proc = aicd(tmp_path, "gate", "metrics.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no baseline yet: models:/iris@production does not exist" in proc.stdout
    assert "checking values only" in proc.stdout
    report = json.loads((tmp_path / "gate-report.json").read_text())
    assert report["baseline"] is None and "no baseline yet" in report["baseline_note"]
    assert {c["kind"] for c in report["checks"]} == {"min", "max"}
    assert not (tmp_path / ".aicd").exists()  # reading the baseline created no database

    # a registry, but not this model: still its first release
    (tmp_path / "other.bin").write_bytes(b"other")
    assert aicd(tmp_path, "model", "register", "fraud", "other.bin").returncode == 0
    proc = aicd(tmp_path, "gate", "metrics.json", "--json", "--report", "")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["baseline"] is None
    assert payload["baseline_note"] == (
        "no baseline yet: models:/iris@production does not exist "
        "(model 'iris' has no versions yet: its first release); checking values only"
    )


def test_a_mistyped_baseline_is_an_error_not_a_skipped_check(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.85, "log_loss": 0.3}')  # 8 % below production
    _register(tmp_path, 0.93)
    flags = ("--max-drop", "accuracy=2%")
    proc = aicd(tmp_path, "gate", "metrics.json", "--baseline", "models:/iris@prodution", *flags)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        "--baseline models:/iris@prodution: the baseline models:/iris@prodution cannot be resolved: "
        "model 'iris' has version 1 but never had the alias 'prodution' (did you mean \"production\"?); "
        "its aliases: production." in proc.stderr
    )
    proc = aicd(tmp_path, "gate", "metrics.json", "--baseline", "models:/irs@production", *flags)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no model named 'irs' (did you mean \"iris\"?); models: iris." in proc.stderr
    proc = aicd(tmp_path, "gate", "metrics.json", "--baseline", "models:/iris/7", *flags)
    assert proc.returncode == 2 and "model 'iris' has no version 7 (it has version 1)" in proc.stderr
    # from aicd.yml: the error names the file, line and column of `against:`
    (tmp_path / "aicd.yml").write_text(CONFIG.replace("against: production", "against: prodution"))
    proc = aicd(tmp_path, "gate", "metrics.json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(
        "aicd: aicd.yml:7:5: against: prodution: the baseline models:/iris@prodution"
    )
    (tmp_path / "aicd.yml").write_text(CONFIG.replace("name: iris", "name: irris"))
    proc = aicd(tmp_path, "gate", "metrics.json")
    assert proc.returncode == 2 and "no model named 'irris' (did you mean \"iris\"?)" in proc.stderr
    assert not (tmp_path / "gate-report.json").exists()
    # the right names: compared, and the 8 % drop fails
    (tmp_path / "aicd.yml").write_text(CONFIG)
    proc = aicd(tmp_path, "gate", "metrics.json")
    assert proc.returncode == 1 and "FAIL accuracy: accuracy went from 0.93 to 0.85" in proc.stdout


def test_an_alias_that_was_removed_is_no_baseline_and_the_note_says_so(tmp_path: Path) -> None:
    (tmp_path / "aicd.yml").write_text(CONFIG)
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.85, "log_loss": 0.3}')
    _register(tmp_path, 0.93)
    assert aicd(tmp_path, "model", "alias", "iris", "production", "--delete").returncode == 0
    proc = aicd(tmp_path, "gate", "metrics.json", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "model 'iris' has no alias 'production' any more (it was removed)" in proc.stdout


def test_against_production_compares_with_the_version_behind_the_alias(tmp_path: Path) -> None:
    (tmp_path / "aicd.yml").write_text(CONFIG)
    _register(tmp_path, 0.95)
    _register(tmp_path, 0.85, alias=None)  # v2: latest, but not production
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.9, "log_loss": 0.3}')
    proc = aicd(tmp_path, "gate", "metrics.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "baseline: models:/iris@production = models:/iris/1" in proc.stdout
    assert "FAIL accuracy: accuracy went from 0.95 to 0.9" in proc.stdout
    report = json.loads((tmp_path / "gate-report.json").read_text())
    assert report["baseline"] == {
        "model_uri": "models:/iris@production",
        "model": "iris",
        "version": 1,
        "metrics": {"accuracy": 0.95, "log_loss": 0.2},
    }
    # --baseline names another version: it wins over aicd.yml's `against:`
    proc = aicd(tmp_path, "gate", "metrics.json", "--baseline", "models:/iris/2", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["baseline"]["version"] == 2


def test_baseline_flag_with_a_model_uri_and_no_config(tmp_path: Path) -> None:
    _register(tmp_path, 0.95)
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.5}')
    proc = aicd(
        tmp_path,
        "gate",
        "metrics.json",
        "--baseline",
        "models:/iris@production",
        "--max-drop",
        "accuracy=10%",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "a drop of 47.3684%, more than the allowed 10%" in proc.stdout
    proc = aicd(
        tmp_path, "gate", "metrics.json", "--baseline", "models:/wine@production", "--min", "accuracy=0.1"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    note = "models:/wine@production does not exist (model 'wine' has no versions yet: its first release)"
    assert f"no baseline yet: {note}" in proc.stdout


def test_bad_baselines_are_input_errors(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.9}')
    proc = aicd(tmp_path, "gate", "metrics.json", "--baseline", "models:/iris@", "--min", "accuracy=0.5")
    assert proc.returncode == 2 and "the alias after '@' is missing" in proc.stderr
    (tmp_path / "aicd.yml").write_text(
        "gates:\n  - metric: accuracy\n    min: 0.5\n    against: production\n"
    )
    proc = aicd(tmp_path, "gate", "metrics.json")
    assert proc.returncode == 2
    assert "'against: production' needs the model's registered name" in proc.stderr
    assert "models:/NAME@production" in proc.stderr
    (tmp_path / "aicd.yml").write_text(
        "model: {name: iris}\ngates:\n  - {metric: accuracy, min: 0.5, against: production}\n"
        "  - {metric: f1, min: 0.5, against: staging}\n"
    )
    proc = aicd(tmp_path, "gate", "metrics.json")
    assert proc.returncode == 2 and "different baselines (production, staging)" in proc.stderr
    assert not (tmp_path / "gate-report.json").exists()


def test_a_threshold_on_a_missing_metric_fails_and_leaves_the_registry_alone(tmp_path: Path) -> None:
    (tmp_path / "aicd.yml").write_text(CONFIG)
    _register(tmp_path, 0.95)
    (tmp_path / "metrics.json").write_text('{"acuracy": 0.99, "log_loss": 0.1}')
    proc = aicd(tmp_path, "gate", "metrics.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'FAIL accuracy: metric "accuracy" is not in metrics.json (did you mean "acuracy"?)' in proc.stdout
    listed = json.loads(aicd(tmp_path, "model", "list", "iris", "--json").stdout)
    assert [(v["version"], v["aliases"]) for v in listed] == [(1, ["production"])]
