"""`aicd gate` through the real `aicd` process: exit codes, output, report file."""

from __future__ import annotations

import json
from pathlib import Path

from aicd_testing import aicd


def test_pass_writes_report_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.95, "log_loss": 0.2}')
    proc = aicd(tmp_path, "gate", "metrics.json", "--min", "accuracy=0.9", "--max", "log_loss=0.3")
    assert proc.returncode == 0, proc.stderr
    assert "no baseline: checking values only" in proc.stdout
    assert "gate passed" in proc.stdout and "PASS" in proc.stdout
    report = json.loads((tmp_path / "gate-report.json").read_text())
    assert report["passed"] is True and report["baseline"] is None
    assert [c["verdict"] for c in report["checks"]] == ["pass", "pass"]


def test_regression_against_baseline_from_config_exits_1(tmp_path: Path) -> None:
    (tmp_path / "aicd.yml").write_text(
        "gates:\n  - metric: accuracy\n    min: 0.8\n    max_regression_pct: 2\n"
        "  - metric: log_loss\n    direction: lower\n    max_regression: 0.05\n"
    )
    (tmp_path / "metrics.txt").write_text("# TYPE accuracy gauge\naccuracy 0.85\nlog_loss 0.2\n")
    (tmp_path / "prod.json").write_text('{"accuracy": 0.95, "log_loss": 0.3}')
    proc = aicd(tmp_path, "gate", "metrics.txt", "--baseline", "prod.json", "--report", "out/r.json")
    assert proc.returncode == 1, proc.stderr
    assert "no baseline" not in proc.stdout
    assert "FAIL accuracy: accuracy went from 0.95 to 0.85" in proc.stdout
    assert "gate FAILED: 1 of 3 checks failed" in proc.stdout
    report = json.loads((tmp_path / "out" / "r.json").read_text())
    assert report["passed"] is False and report["failed"] == 1
    assert report["baseline"] == {"file": "prod.json", "metrics": {"accuracy": 0.95, "log_loss": 0.3}}
    by_kind = {(c["metric"], c["kind"]): c for c in report["checks"]}
    assert by_kind[("accuracy", "min")]["verdict"] == "pass"
    assert by_kind[("accuracy", "max_regression_pct")]["verdict"] == "fail"
    assert by_kind[("log_loss", "max_regression")]["verdict"] == "pass"  # lower loss is better


def test_json_output_with_nan(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"accuracy": NaN}')
    proc = aicd(tmp_path, "gate", "m.json", "--min", "accuracy=0.5", "--json", "--report", "")
    assert proc.returncode == 1
    payload = json.loads(proc.stdout)
    assert payload["passed"] is False and payload["metrics"] == {"accuracy": "NaN"}
    assert "NaN" in payload["checks"][0]["reason"]
    assert not (tmp_path / "gate-report.json").exists()


def test_missing_metric_is_named(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"accuracy": 0.9}')
    proc = aicd(tmp_path, "gate", "m.json", "--min", "acuracy=0.5")
    assert proc.returncode == 1
    assert 'metric "acuracy" is not in m.json (did you mean "accuracy"?); it has: accuracy' in proc.stdout


def _bad(tmp_path: Path, *args: str) -> str:
    proc = aicd(tmp_path, "gate", *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_bad_inputs_exit_2_with_clear_messages(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"accuracy": 0.9,\n  "f1": oops}')
    assert "m.json:2:9: not valid JSON" in _bad(tmp_path, "m.json", "--min", "accuracy=0.5")
    (tmp_path / "ok.json").write_text('{"accuracy": 0.9}')
    assert "no thresholds to check" in _bad(tmp_path, "ok.json")
    assert "missing.json: no such metrics file" in _bad(tmp_path, "missing.json", "--min", "a=1")
    assert "nope.yml: no such config file" in _bad(tmp_path, "ok.json", "--config", "nope.yml")
    (tmp_path / "aicd.yml").write_text("gates:\n  - metric: accuracy\n    mni: 1\n")
    assert "aicd.yml:3:5: gates[0]: unknown key 'mni'" in _bad(tmp_path, "ok.json")


def test_unwritable_report(tmp_path: Path) -> None:
    (tmp_path / "ok.json").write_text('{"accuracy": 0.9}')
    err = _bad(tmp_path, "ok.json", "--min", "accuracy=0.5", "--report", "ok.json/r.json")
    assert "cannot write the gate report" in err


def test_nan_and_infinite_thresholds_are_refused_from_aicd_yml_and_flags(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"acc": 0.1}')
    (tmp_path / "aicd.yml").write_text("gates:\n  - metric: acc\n    min: .nan\n")
    err = _bad(tmp_path, "m.json")
    assert "aicd.yml:3:5: gates[0].min must be a finite number, not nan" in err
    (tmp_path / "aicd.yml").write_text("gates:\n  - {metric: acc, max: .inf, max_regression: .nan}\n")
    err = _bad(tmp_path, "m.json")
    assert "aicd.yml:2:19: gates[0].max must be a finite number, not inf" in err
    assert "aicd.yml:2:30: gates[0].max_regression must be a finite number, not nan" in err
    (tmp_path / "aicd.yml").unlink()
    assert "the threshold must be a finite number" in _bad(tmp_path, "m.json", "--min", "acc=nan")
    assert "the threshold must be a finite number" in _bad(tmp_path, "m.json", "--max-drop", "acc=inf%")


def test_json_nested_very_deep_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    err = _bad(tmp_path, "deep.json", "--min", "a=0.5")
    assert "deep.json: the JSON is nested more than 32 levels deep" in err
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "deep.json: the JSON is nested more than 32 levels deep" in _bad(
        tmp_path, "deep.json", "--min", "a=1"
    )
    (tmp_path / "ok.json").write_text('{"a": 1}')
    (tmp_path / "base.json").write_text('{"a": ' * 40 + "1" + "}" * 40)  # deep, but under the limit of json
    err = _bad(tmp_path, "ok.json", "--baseline", "base.json", "--max-drop", "a=1")
    assert "base.json: the JSON is nested more than 32 levels deep" in err
