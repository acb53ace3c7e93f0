"""`aicd judge` through the real `aicd` process: table, verdicts, exit codes, report, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aicd.cli.judge_cmd import judge_command
from aicd.errors import ConfigError
from aicd_testing import aicd


def _write(path: Path, metrics: dict[str, np.ndarray], predictions: dict[str, int] | None = None) -> None:
    doc: dict[str, object] = {
        "metrics": {k: [round(float(v), 3) for v in values] for k, values in metrics.items()}
    }
    if predictions is not None:
        doc["predictions"] = predictions
    path.write_text(json.dumps(doc))


def _latency(rng: np.random.Generator, factor: float = 1.0, n: int = 200) -> np.ndarray:
    return rng.lognormal(np.log(40.0), 0.4, n) * factor


def _errors(rng: np.random.Generator, rate: float, n: int = 1000) -> np.ndarray:
    return (rng.random(n) < rate).astype(np.float64)


def test_same_versions_pass_with_table_and_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    _write(tmp_path / "stable.json", {"latency_ms": _latency(rng), "error": _errors(rng, 0.01)})
    _write(tmp_path / "canary.json", {"latency_ms": _latency(rng), "error": _errors(rng, 0.01)})
    proc = aicd(tmp_path, "judge", "stable.json", "canary.json", "--report", "out/judge.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == [
        "metric",
        "stable",
        "median",
        "canary",
        "median",
        "effect",
        "p-value",
        "class",
        "weight",
    ]
    assert lines[1].startswith("latency_ms") and lines[1].split()[-2:] == ["Pass", "50"]
    assert "no metrics configured: every metric judged with the defaults" in proc.stdout
    assert lines[-1] == "score 100 (pass >= 95, marginal >= 75): PASS: every metric passed"
    report = json.loads((tmp_path / "out" / "judge.json").read_text())
    assert report["verdict"] == "pass" and report["passed"] is True and report["score"] == 100
    latency = report["metrics"][0]
    assert latency["name"] == "latency_ms" and latency["classification"] == "Pass"
    assert latency["stable"]["count"] == 200 and latency["test"]["method"] == "hodges-lehmann"
    assert 0 <= latency["test"]["p_value"] <= 1 and latency["test"]["confidence"] == 0.98
    assert report["metrics"][1]["test"]["method"] == "proportions"


def test_slower_canary_fails_with_exit_1(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    _write(tmp_path / "stable.json", {"latency_ms": _latency(rng)})
    _write(tmp_path / "canary.json", {"latency_ms": _latency(rng, 1.5)})
    proc = aicd(tmp_path, "judge", "stable.json", "canary.json", "--metric", "latency_ms:increase:critical")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "latency_ms *" in proc.stdout and " High " in proc.stdout
    assert "High latency_ms: the canary is higher: the 98% interval of the shift [" in proc.stdout
    assert (
        proc.stdout.splitlines()[-1]
        == "score 0 (pass >= 95, marginal >= 75): FAIL: critical metric failed: latency_ms"
    )


def test_a_critical_metric_without_data_fails_as_in_kayenta(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    both = {"cpu": _latency(rng), "mem": _latency(rng)}
    _write(tmp_path / "s.json", {"latency_ms": _latency(rng), **both})
    _write(tmp_path / "c.json", both)  # the canary lacks latency_ms
    flags = ("--metric", "latency_ms:critical", "--metric", "cpu", "--metric", "mem")
    proc = aicd(tmp_path, "judge", "s.json", "c.json", *flags, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "fail" and report["score"] == 0
    latency = report["metrics"][0]
    assert latency["classification"] == "NodataFailMetric" and latency["critical_failure"] is True
    assert report["reason"] == "critical metric failed: latency_ms"
    # not critical: Nodata, left out of the score (must_have_data still makes it a failure)
    proc = aicd(tmp_path, "judge", "s.json", "c.json", *flags[2:], "--metric", "latency_ms", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["metrics"][2]["classification"] == "Nodata"


def test_marginal_score_is_not_a_pass(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    names = ["a", "b", "c", "d"]
    _write(tmp_path / "s.json", {n: _latency(rng) for n in names})
    _write(tmp_path / "c.json", {n: _latency(rng, 1.6 if n == "d" else 1.0) for n in names})
    proc = aicd(tmp_path, "judge", "s.json", "c.json", "--pass-threshold", "90", "--marginal-threshold", "70")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "score 75 (pass >= 90, marginal >= 70): MARGINAL: d High"


def test_analysis_section_of_aicd_yml_and_csv_samples(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    (tmp_path / "aicd.yml").write_text(
        "analysis:\n"
        "  groups: {latency: 70}\n"
        "  metrics:\n"
        "    - {name: p99_ms, group: latency, direction: increase}\n"
        "    - {name: error, direction: increase, weight: 30}\n"
    )
    for name, latency, errors in (
        ("stable.csv", _latency(rng), _errors(rng, 0.01)),
        ("canary.csv", _latency(rng), _errors(rng, 0.05)),
    ):
        rows = ["metric,value"] + [f"p99_ms,{v:.3f}" for v in latency] + [f"error,{int(v)}" for v in errors]
        rows.append("cpu,0.5")
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    proc = aicd(tmp_path, "judge", "stable.csv", "canary.csv", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    payload = json.loads(proc.stdout)
    assert [(m["name"], m["classification"], m["weight"]) for m in payload["metrics"]] == [
        ("p99_ms", "Pass", 70),
        ("error", "High", 30),
    ]
    assert payload["score"] == 70 and payload["verdict"] == "fail"
    assert payload["groups"] == {
        "latency": {"score": 100.0, "weight": 70.0},
        "error": {"score": 0.0, "weight": 30.0},
    }
    assert payload["notes"] == ["not judged (not configured): cpu"]
    # a flag overrides the configured metric: with a large allowed increase the errors pass
    proc = aicd(tmp_path, "judge", "stable.csv", "canary.csv", "--metric", "error:allowed_increase=10")
    assert proc.returncode == 0, proc.stdout


def test_prediction_drift_fails_the_canary(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    latency = _latency(rng)
    _write(tmp_path / "s.json", {"latency_ms": latency}, {"setosa": 50, "versicolor": 48, "virginica": 52})
    _write(
        tmp_path / "c.json", {"latency_ms": latency[::-1]}, {"setosa": 50, "versicolor": 5, "virginica": 95}
    )
    proc = aicd(tmp_path, "judge", "s.json", "c.json")
    assert proc.returncode == 1, proc.stdout
    assert "drift (fail): the canary's predictions drifted: PSI" in proc.stdout
    assert "FAIL: every metric passed; the canary's predictions drifted" in proc.stdout.splitlines()[-1]


def _bad(tmp_path: Path, *args: str) -> str:
    proc = aicd(tmp_path, "judge", *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_bad_input_exits_2_with_clear_messages(tmp_path: Path) -> None:
    (tmp_path / "ok.json").write_text('{"lat": [1, 2, 3]}')
    (tmp_path / "bad.json").write_text('{"lat": [1, 2,\n  oops]}')
    assert "aicd: missing.json: no such sample file" in _bad(tmp_path, "missing.json", "ok.json")
    assert "bad.json:2:3: not valid JSON" in _bad(tmp_path, "ok.json", "bad.json")
    (tmp_path / "judge.yml").write_text("metrics:\n  - name: lat\n    direction: sideways\n")
    err = _bad(tmp_path, "ok.json", "ok.json", "--config", "judge.yml")
    assert "judge.yml:3:5: analysis.metrics[0].direction must be one of increase, decrease, either" in err


def _command(tmp_path: Path, *flags: str, **options: object) -> int:
    kwargs: dict[str, object] = {
        "cwd": tmp_path,
        "stable_file": "ok.json",
        "canary_file": "ok.json",
        "config": None,
        "metric_flags": flags,
        "pass_threshold": None,
        "marginal_threshold": None,
        "report": None,
        "as_json": True,
    }
    kwargs.update(options)
    return judge_command(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flags", "options", "message"),
    [
        (("lat:upward",), {}, "--metric 'lat:upward': 'upward' is not a direction"),
        (("lat:measure=mode",), {}, "effect_size.measure must be one of mean_ratio, median_ratio, cles"),
        (("lat:colour=red",), {}, "--metric 'lat:colour=red': unknown key 'colour'"),
        ((":increase",), {}, "the metric name comes first"),
        (("lat:group=x:weight=60", "b:group=x:weight=50"), {}, "the group 'x' has two weights"),
        (
            (),
            {"pass_threshold": 60.0, "marginal_threshold": 80.0},
            "the marginal threshold 80 is above the pass",
        ),
        ((), {"config": "nope.yml"}, "nope.yml: no such config file"),
        ((), {"report": "ok.json/r.json"}, "ok.json/r.json: cannot write the judge report"),
    ],
)
def test_bad_flags_and_options(
    tmp_path: Path, flags: tuple[str, ...], options: dict[str, object], message: str
) -> None:
    """The same command in-process (exit code 2 is the ConfigError's, as the test above shows)."""
    (tmp_path / "ok.json").write_text('{"lat": [1, 2, 3]}')
    with pytest.raises(ConfigError) as err:
        _command(tmp_path, *flags, **options)
    assert message in str(err.value)
