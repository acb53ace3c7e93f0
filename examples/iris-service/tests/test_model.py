from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import joblib  # type: ignore[import-untyped]
import numpy as np
import pytest

from dataset import data_hash, load_split
from evaluate import evaluate, openmetrics
from train import worse_from_env

HERE = Path(__file__).resolve().parent.parent


def majority_baseline_accuracy() -> float:
    split = load_split()
    majority = np.bincount(split.y_train).argmax()
    return float(np.mean(split.y_test == majority))


def test_model_beats_majority_baseline(model_file: Path) -> None:
    metrics = evaluate(joblib.load(model_file), latency_rounds=1)
    baseline = majority_baseline_accuracy()
    assert baseline < 0.4
    assert metrics["accuracy"] >= baseline + 0.5, (metrics, baseline)
    assert metrics["macro_f1"] >= 0.9
    assert 0.0 < metrics["log_loss"] < 0.5
    assert 0.0 < metrics["p95_latency_ms"] < 1000.0


def test_worse_knob_is_really_worse(model_file: Path, worse_model_file: Path) -> None:
    good = evaluate(joblib.load(model_file), latency_rounds=1)
    bad = evaluate(joblib.load(worse_model_file), latency_rounds=1)
    assert bad["accuracy"] <= good["accuracy"] - 0.2, (good, bad)
    assert bad["macro_f1"] < 0.9 <= good["macro_f1"]
    assert bad["log_loss"] > good["log_loss"]
    info = json.loads((worse_model_file.parent / "info.json").read_text())
    assert info["variant"] == "worse"
    assert info["params"]["features"] == ["sepal_width_cm"]


@pytest.mark.parametrize(
    ("value", "worse"), [("1", True), ("true", True), ("0", False), ("", False), ("off", False)]
)
def test_worse_knob_reads_environment(value: str, worse: bool) -> None:
    assert worse_from_env({"IRIS_WORSE_MODEL": value}) is worse
    assert worse_from_env({}) is False


def test_info_records_training_data_hash(model_file: Path) -> None:
    info = json.loads((model_file.parent / "info.json").read_text())
    split = load_split()
    assert info["data"]["train_sha256"] == data_hash(split.x_train, split.y_train)
    assert info["data"]["train_sha256"] != data_hash(split.x_test, split.y_test)
    assert info["data"]["n_train"] + info["data"]["n_test"] == 150
    assert info["target_names"] == ["setosa", "versicolor", "virginica"]


def test_openmetrics_text() -> None:
    text = openmetrics({"accuracy": 0.5, "log_loss": math.inf})
    lines = text.splitlines()
    assert "# TYPE accuracy gauge" in lines
    assert "accuracy 0.5" in lines
    assert "log_loss +Inf" in lines
    assert lines[-1] == "# EOF"


def test_scripts_end_to_end(tmp_path: Path) -> None:
    """train.py --worse, then evaluate.py, as the pipeline runs them (real processes)."""
    model_dir = tmp_path / "model"
    subprocess.run(
        [sys.executable, str(HERE / "train.py"), "--out", str(model_dir), "--worse"], check=True, cwd=HERE
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "evaluate.py"),
            "--model",
            str(model_dir / "model.joblib"),
            "--out",
            str(tmp_path),
        ],
        cwd=HERE,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "macro_f1", "log_loss", "p95_latency_ms"}
    assert metrics["accuracy"] < 0.9
    assert (tmp_path / "metrics.txt").read_text().endswith("# EOF\n")


def test_evaluate_without_model_fails_clearly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(HERE / "evaluate.py"), "--model", str(tmp_path / "none.joblib")],
        cwd=HERE,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "run `python train.py` first" in proc.stderr
    assert "Traceback" not in proc.stderr
