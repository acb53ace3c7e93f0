from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from app import create_app
from model_io import ModelError

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.8, 2.2]


def test_predict_rows(client: FlaskClient) -> None:
    resp = client.post("/predict", json={"features": [SETOSA, VIRGINICA]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["predictions"] == [0, 2]
    assert body["labels"] == ["setosa", "virginica"]


def test_predict_single_row(client: FlaskClient) -> None:
    resp = client.post("/predict", json={"features": SETOSA})
    assert resp.status_code == 200
    assert resp.get_json()["labels"] == ["setosa"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"rows": [SETOSA]}, 'missing key "features"'),
        ([SETOSA], "JSON object"),
        ({"features": []}, "non-empty list"),
        ({"features": [1.0, 2.0, 3.0]}, "expected 4 numbers"),
        ({"features": [SETOSA, [1.0, 2.0]]}, "row 1: expected 4 numbers"),
        ({"features": [[1.0, "x", 3.0, 4.0]]}, "row 0, value 1: expected a number"),
        ({"features": [[1.0, True, 3.0, 4.0]]}, "expected a number"),
        ({"features": "5.1,3.5,1.4,0.2"}, "non-empty list"),
        ({"features": [[0.0] * 4] * 1001}, "at most 1000"),
    ],
)
def test_predict_rejects_bad_input(client: FlaskClient, body: Any, needle: str) -> None:
    resp = client.post("/predict", json=body)
    assert resp.status_code == 400
    assert needle in resp.get_json()["error"]


def test_predict_rejects_non_finite_and_non_json(client: FlaskClient) -> None:
    resp = client.post("/predict", data='{"features": [1, 2, 3, NaN]}', content_type="application/json")
    assert resp.status_code == 400
    assert "finite" in resp.get_json()["error"]
    resp = client.post("/predict", data="hello", content_type="text/plain")
    assert resp.status_code == 400
    assert "must be JSON" in resp.get_json()["error"]


def test_unknown_route_and_method_are_json_errors(client: FlaskClient) -> None:
    assert client.get("/nope").status_code == 404
    resp = client.get("/predict")
    assert resp.status_code == 405
    assert "error" in resp.get_json()


def test_healthz(client: FlaskClient, model_file: Path) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    body = resp.get_json()
    info = json.loads((model_file.parent / "info.json").read_text())
    assert body["status"] == "ok"
    assert body["model_version"] == info["model_version"]
    assert body["variant"] == "standard"


def test_metrics_count_requests(client: FlaskClient) -> None:
    client.post("/predict", json={"features": [SETOSA, VIRGINICA]})
    client.post("/predict", json={"features": []})
    client.get("/healthz")
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain")
    text = resp.get_data(as_text=True)
    assert 'iris_requests_total{endpoint="/predict",method="POST",status="200"} 1' in text
    assert 'iris_requests_total{endpoint="/predict",method="POST",status="400"} 1' in text
    assert 'iris_requests_total{endpoint="/healthz",method="GET",status="200"} 1' in text
    assert 'iris_request_duration_seconds_count{endpoint="/predict"} 2' in text
    assert "iris_predictions_total 2" in text
    assert "# TYPE iris_request_duration_seconds histogram" in text


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"run `python train\.py` first"):
        create_app(tmp_path / "absent.joblib")
