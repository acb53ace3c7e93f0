"""Evaluate the trained model on the held-out split; write metrics.json and metrics.txt.

    python evaluate.py [--model model/model.joblib] [--out .]

Metrics: accuracy, macro_f1, log_loss and p95_latency_ms (95th percentile of the
time one single-row prediction takes). metrics.txt holds the same values as
OpenMetrics text (the format of GitLab's metrics report).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss  # type: ignore[import-untyped]

from dataset import data_hash, load_split
from model_io import ModelError, load_model, model_path_from_env

HELP = {
    "accuracy": "Share of held-out rows classified correctly (higher is better).",
    "macro_f1": "F1 score averaged over the classes (higher is better).",
    "log_loss": "Cross-entropy of the predicted probabilities (lower is better).",
    "p95_latency_ms": "95th percentile of single-row prediction time in milliseconds (lower is better).",
}


def evaluate(model: Any, latency_rounds: int = 3) -> dict[str, float]:
    split = load_split()
    predicted = model.predict(split.x_test)
    proba = model.predict_proba(split.x_test)
    timings: list[float] = []
    for _ in range(latency_rounds):
        for row in split.x_test:
            start = time.perf_counter()
            model.predict(row.reshape(1, -1))
            timings.append((time.perf_counter() - start) * 1000.0)
    return {
        "accuracy": float(accuracy_score(split.y_test, predicted)),
        "macro_f1": float(f1_score(split.y_test, predicted, average="macro")),
        "log_loss": float(log_loss(split.y_test, proba, labels=list(range(proba.shape[1])))),
        "p95_latency_ms": float(np.percentile(timings, 95)),
        "n_test": float(split.x_test.shape[0]),
    }


def openmetrics(metrics: dict[str, float]) -> str:
    lines: list[str] = []
    for name, value in metrics.items():
        if name in HELP:
            lines.append(f"# HELP {name} {HELP[name]}")
        lines.append(f"# TYPE {name} gauge")
        lines.append(f"{name} {_number(value)}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(round(value, 6))


def check_lineage(info: dict[str, Any]) -> str | None:
    """A problem when the model was trained on other data than this split's training part."""
    recorded = info.get("data", {}).get("train_sha256")
    split = load_split()
    actual = data_hash(split.x_train, split.y_train)
    if recorded is not None and recorded != actual:
        return (
            f"the model was trained on data {recorded}, but this split's training data is {actual}: "
            "the held-out rows may have been seen in training; retrain with `python train.py`"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--model", default=None, help="model file (default: $MODEL_PATH or model/model.joblib)"
    )
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for metrics.json and metrics.txt")
    args = parser.parse_args(argv)
    path = model_path_from_env(args.model)
    try:
        model, info = load_model(path)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = check_lineage(info)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    metrics = evaluate(model)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.out / "metrics.txt").write_text(openmetrics(metrics))
    for name, value in metrics.items():
        print(f"{name:>15} {value:.4f}")
    print(
        f"model {info.get('model_version', '?')} ({info.get('variant', '?')}): "
        f"wrote {args.out / 'metrics.json'}, {args.out / 'metrics.txt'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
