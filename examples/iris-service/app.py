"""The iris service: a Flask app serving the trained model.

    POST /predict  {"features": [[5.1, 3.5, 1.4, 0.2], ...]} or {"features": [5.1, 3.5, 1.4, 0.2]}
                   -> {"predictions": [0, ...], "labels": ["setosa", ...], "model_version": "..."}
    GET  /healthz  -> {"status": "ok", "model_version": "...", ...}
    GET  /metrics  -> Prometheus text: request counts, latency, predictions

Environment: MODEL_PATH (default model/model.joblib), PORT (default 8000), HOST (default 127.0.0.1).
Fault knobs, for showing canary analysis at work (aicd.yml's service env sets them in a bad
release): IRIS_FAULT_RATE (0-1: that share of /predict requests fail with 500),
IRIS_EXTRA_LATENCY_MS (added to every /predict answer) and IRIS_WRONG_SHARE (0-1: on that share
of inputs, chosen by a hash of the row so the same input always gets the same answer, the
prediction is the next class instead: a less accurate model, for live accuracy and shadow demos).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from model_io import ModelError, load_model, model_path_from_env
from telemetry import CONTENT_TYPE, Telemetry

N_FEATURES = 4
MAX_ROWS = 1000


class BadInput(ValueError):
    """The request body is not a valid prediction request; the message says why."""


def parse_features(body: Any) -> list[list[float]]:
    """The rows of a /predict body, checked: 1 to MAX_ROWS rows of N_FEATURES finite numbers."""
    if not isinstance(body, dict):
        raise BadInput('the body must be a JSON object like {"features": [[5.1, 3.5, 1.4, 0.2]]}')
    if "features" not in body:
        raise BadInput('missing key "features": send {"features": [[5.1, 3.5, 1.4, 0.2]]}')
    features = body["features"]
    if not isinstance(features, list) or not features:
        raise BadInput('"features" must be a non-empty list: one row of 4 numbers, or a list of such rows')
    rows = features if all(isinstance(r, list) for r in features) else [features]
    if len(rows) > MAX_ROWS:
        raise BadInput(f'"features" has {len(rows)} rows; at most {MAX_ROWS} per request')
    out: list[list[float]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != N_FEATURES:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise BadInput(
                f"row {i}: expected {N_FEATURES} numbers (sepal length, sepal width, petal length, "
                f"petal width in cm), got {got}"
            )
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadInput(f"row {i}, value {j}: expected a number, got {value!r}")
            if not math.isfinite(value):
                raise BadInput(f"row {i}, value {j}: must be a finite number")
        out.append([float(v) for v in row])
    return out


def _knob(name: str) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else 0.0
    except ValueError:
        raise ModelError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ModelError(f"{name}={raw!r} must be 0 or more")
    return value


def wrong_for(row: list[float], share: float) -> bool:
    """Whether IRIS_WRONG_SHARE picks this input (the same answer every time for the same row)."""
    if share <= 0:
        return False
    digest = hashlib.sha256(repr([round(v, 6) for v in row]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def create_app(model_path: str | Path | None = None) -> Flask:
    """The app serving the model at ``model_path`` (default: $MODEL_PATH or model/model.joblib)."""
    fault_rate = min(1.0, _knob("IRIS_FAULT_RATE"))
    extra_latency = _knob("IRIS_EXTRA_LATENCY_MS") / 1000.0
    wrong_share = min(1.0, _knob("IRIS_WRONG_SHARE"))
    path = model_path_from_env(model_path)
    model, info = load_model(path)
    version = str(info.get("model_version", "unknown"))
    target_names = [str(n) for n in info.get("target_names", [])]
    telemetry = Telemetry()
    app = Flask(__name__)

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        telemetry.observe(endpoint, request.method, response.status_code, elapsed)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.description or exc.name), exc.code or 500

    @app.post("/predict")
    def predict() -> tuple[Response, int]:
        body = request.get_json(silent=True)
        if body is None:
            return jsonify(error="the body must be JSON (Content-Type: application/json)"), 400
        try:
            rows = parse_features(body)
        except BadInput as exc:
            return jsonify(error=str(exc)), 400
        if extra_latency:
            time.sleep(extra_latency)
        if fault_rate and random.random() < fault_rate:
            return jsonify(error="injected fault (IRIS_FAULT_RATE)"), 500
        predictions = [int(p) for p in model.predict(rows)]
        if wrong_share:
            classes = max(len(target_names), 2)
            predictions = [
                (p + 1) % classes if wrong_for(row, wrong_share) else p
                for p, row in zip(predictions, rows, strict=True)
            ]
        telemetry.predicted(len(rows))
        labels = [target_names[p] if p < len(target_names) else str(p) for p in predictions]
        return jsonify(predictions=predictions, labels=labels, model_version=version), 200

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify(
            status="ok", model_version=version, variant=info.get("variant"), model_path=str(path)
        ), 200

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(telemetry.render(version), content_type=CONTENT_TYPE)

    return app


def main() -> int:
    try:
        app = create_app()
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raw_port = os.environ.get("PORT", "8000")
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        print(f"error: PORT={raw_port!r} is not a port number (1-65535)", file=sys.stderr)
        return 2
    port = int(raw_port)
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
